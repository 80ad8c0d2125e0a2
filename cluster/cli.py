"""`sweep`: a thin CLI; each subcommand maps to one function elsewhere."""
from __future__ import annotations

import argparse
import sys

from core.errors import ConfigError

import os

DEFAULT_URI = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
EPILOG = ("Defaults: local Ray (the head of `sweep up` when one is up, else started per sweep), MLflow at "
          "sqlite:///mlflow.db. A cluster is one flag away: --address, --tracking-uri.")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so recipes and tests can check their commands against it)."""
    p = argparse.ArgumentParser(prog="sweep", description="Ray Tune + MLflow sweeps of inductive-bias experiments",
                                epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list experiments (default), models, pairings, datasets or config keys")
    ls.add_argument("what", nargs="?", default="experiments",
                    choices=["experiments", "models", "pairings", "datasets", "keys"])
    ls.add_argument("--module", "-m", dest="modules", action="append", metavar="FILE.py",
                    help="also list what this user module registers (repeatable; installed plugins always are)")

    run = sub.add_parser("run", help="run an experiment as a Ray Tune sweep logged to MLflow")
    run.add_argument("experiment", help="a registered name, or FILE.py:NAME / MODULE:NAME (an Experiment defined there)")
    run.add_argument("--seeds", type=int, help="replicates per cell (default: the experiment's, 3 for most)")
    run.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    run.add_argument("--grid", dest="grids", action="append", metavar="KEY=V1,V2",
                     help="sweep a key over values (repeatable)")
    run.add_argument("--smoke", action="store_true", help="tiny epochs/data: any experiment in < 2 min on 2 cores")
    run.add_argument("--num-samples", type=int,
                     help="Tune num_samples: samples of a search (default: the experiment's, else 1)")
    run.add_argument("--sample", dest="samples", action="append", metavar="KEY=DOMAIN",
                     help="search a key: loguniform(LO,HI), uniform(LO,HI), randint(LO,HI), choice(V1,V2,...)")
    run.add_argument("--scheduler", choices=["asha", "none"], help="trial scheduler (default: the experiment's)")
    run.add_argument("--grace-period", type=int, help="ASHA: epochs before the first stop (default: the experiment's)")
    run.add_argument("--reduction-factor", type=int, help="ASHA: keep 1/N of the trials at each rung")
    run.add_argument("--search", default="random", help="search algorithm: random (Tune's), hyperopt, optuna")
    _add_common(run)
    run.add_argument("--cpus-per-trial", type=_float)
    run.add_argument("--gpus-per-trial", type=_float, help="fractional GPUs per trial (default 0.25 if GPUs)")
    run.add_argument("--max-concurrent", type=int)
    run.add_argument("--max-failures", type=int, default=2, help="retries per trial (FailureConfig)")
    run.add_argument("--name", help="sweep name (default EXPERIMENT-YYYYmmdd-HHMMSS-xxxx, xxxx random)")
    run.add_argument("--storage-path", help="Tune storage: local/shared path or cloud URI (default ./ray_results)")
    run.add_argument("--data-root", help="where CIFAR-10/MNIST files live (config key data_root)")
    run.add_argument("--pack", type=int, default=1, metavar="K",
                     help="train up to K trials of one architecture as one vmapped model per Tune trial "
                          "(README, Performance; conv models stay unpacked on CPU)")
    run.add_argument("--yes", "--allow-large", dest="allow_large", action="store_true",
                     help="run a sweep of more than 10,000 trials (refused otherwise)")
    run.add_argument("--until-decided", action="store_true",
                     help="add seeds, wave by wave, to cells whose hypotheses are still open (cluster/flow/adaptive.py)")
    run.add_argument("--max-seeds", type=int, metavar="N", help="--until-decided: at most N seeds per cell (default 12)")
    run.add_argument("--target-halfwidth", type=_float, metavar="H",
                     help="--until-decided: also add seeds while a cell's accuracy interval is wider than ±H (e.g. 0.05)")
    run.add_argument("--no-ship-code", action="store_true",
                     help="with --address: use the project installed on the nodes instead of shipping this dir")
    run.add_argument("--verbose", action="store_true",
                     help="Ray's, Tune's and MLflow's own logs on the console (default: <storage>/<sweep>/driver.log)")

    stu = sub.add_parser("study", help="run a named set of experiments as one resumable job, then one study report")
    stu.add_argument("study", nargs="?", help="study name (see --list), FILE.py (all its experiments) or FILE.py:STUDY")
    stu.add_argument("--list", action="store_true", help="list the studies")
    stu.add_argument("--smoke", action="store_true", help="every experiment with --smoke")
    stu.add_argument("--only", help="comma-separated experiments of the study to run (default: all)")
    stu.add_argument("--name", help="study name on disk (default study-NAME[-smoke]); the same name resumes")
    stu.add_argument("--until-decided", action="store_true", help="adaptive replicates in every experiment with hypotheses")
    stu.add_argument("--max-seeds", type=int, metavar="N")
    stu.add_argument("--target-halfwidth", type=_float, metavar="H")
    stu.add_argument("--storage-path", help="Tune storage and the study state (default ./ray_results)")
    stu.add_argument("--max-concurrent", type=int)
    stu.add_argument("--cpus-per-trial", type=_float)
    stu.add_argument("--data-root")
    stu.add_argument("--out", help="study report folder (default reports/<study name>)")
    _add_common(stu)

    res = sub.add_parser("resume", help="resume an interrupted sweep (Tuner.restore) into the same MLflow runs")
    res.add_argument("name")
    res.add_argument("--storage-path")
    res.add_argument("--address")
    res.add_argument("--verbose", action="store_true", help="Ray's and MLflow's logs on the console")

    up = sub.add_parser("up", help="start a local Ray head that later `sweep run`s reuse (no Ray start per sweep)")
    up.add_argument("--num-cpus", type=int, help="CPUs the head offers (default: all of this machine's)")
    sub.add_parser("down", help="stop the Ray head of `sweep up`")

    out = sub.add_parser("results", help="per-cell mean and 95%% CI over seeds, read back from MLflow")
    out.add_argument("experiment", nargs="?")
    out.add_argument("--sweep")
    out.add_argument("--format", choices=["table", "csv", "json"], default="table")
    out.add_argument("--tracking-uri", default=DEFAULT_URI)

    con = sub.add_parser("confirm", help="rerun a search's best config per model with fresh seeds (mean ± CI)")
    con.add_argument("sweep", help="name of the search sweep")
    con.add_argument("--seeds", type=int, default=5, help="fresh seeds per configuration (default 5)")
    con.add_argument("--top", type=int, default=1, help="best configurations per model (default 1)")
    con.add_argument("--name", help="confirmation sweep name (default SWEEP-confirm)")
    con.add_argument("--storage-path", help="Tune storage (default: the search's)")
    con.add_argument("--max-concurrent", type=int)
    con.add_argument("--cpus-per-trial", type=_float)
    con.add_argument("--gpus-per-trial", type=_float)
    _add_common(con)

    rep = sub.add_parser("report", help="write the HTML report of a sweep and attach it to the parent run")
    rep.add_argument("experiment", nargs="?")
    rep.add_argument("--sweep")
    rep.add_argument("--out")
    rep.add_argument("--tracking-uri", default=DEFAULT_URI)

    srv = sub.add_parser("server", help="start an MLflow tracking server (loopback unless --host)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=5000)
    srv.add_argument("--backend-store-uri", default="sqlite:///mlflow.db")
    srv.add_argument("--artifacts-destination", default="./mlartifacts")
    srv.add_argument("--app-name", choices=["basic-auth"])
    srv.add_argument("--workers", type=int)
    srv.add_argument("--allowed-hosts", help="comma-separated Host headers the server accepts (MLflow 3 checks them)")
    return p


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster: auto | ray://HOST:10001 (default: start local Ray)")
    p.add_argument("--tracking-uri", default=DEFAULT_URI,
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def cmd_list(args) -> int:
    from cluster.flow import listing, user_code
    from core import user_modules

    user_code.load_plugins()
    for module in args.modules or ():
        user_modules.load(module)
    print(listing.render(args.what))
    return 0


def cmd_run(args) -> int:
    from cluster import api
    from cluster.tuner.search import parse_samples
    from cluster.planning.values import parse_grids, parse_sets
    from core import phases

    phases.mark("run_imported")
    return api.run(args.experiment, seeds=args.seeds, set=parse_sets(args.sets), grid=parse_grids(args.grids),
                   smoke=args.smoke, num_samples=args.num_samples, address=args.address,
                   tracking_uri=args.tracking_uri, cpus_per_trial=args.cpus_per_trial,
                   gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent, name=args.name,
                   storage_path=args.storage_path, data_root=args.data_root, max_failures=args.max_failures,
                   scheduler=args.scheduler, search=args.search, ship_code=not args.no_ship_code,
                   samples=parse_samples(args.samples), grace_period=args.grace_period,
                   reduction_factor=args.reduction_factor, pack=args.pack, allow_large=args.allow_large,
                   until_decided=args.until_decided, max_seeds=args.max_seeds,
                   target_halfwidth=args.target_halfwidth, verbose=args.verbose, progress="console").exit_code


def cmd_confirm(args) -> int:
    from cluster.flow.confirm import confirm_sweep

    return confirm_sweep(args.sweep, seeds=args.seeds, top=args.top, tracking_uri=args.tracking_uri,
                         storage_path=args.storage_path, name=args.name, address=args.address,
                         max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
                         gpus_per_trial=args.gpus_per_trial)


def cmd_study(args) -> int:
    from cluster import api
    from cluster.flow.study import list_studies

    if args.list or not args.study:
        print(list_studies())
        return 0
    only = tuple(x.strip() for x in (args.only or "").split(",") if x.strip())
    return api.study(args.study, smoke=args.smoke, only=only, name=args.name, until_decided=args.until_decided,
                     max_seeds=args.max_seeds, target_halfwidth=args.target_halfwidth, tracking_uri=args.tracking_uri,
                     storage_path=args.storage_path, address=args.address, max_concurrent=args.max_concurrent,
                     cpus_per_trial=args.cpus_per_trial, data_root=args.data_root, out=args.out,
                     progress="console").exit_code


def cmd_resume(args) -> int:
    from cluster.flow.resume import resume_sweep

    return resume_sweep(args.name, args.storage_path, args.address, verbose=args.verbose)


def cmd_up(args) -> int:
    from cluster.infra import ray_head

    if args.num_cpus is not None and args.num_cpus < 1:
        raise ConfigError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    before = ray_head.live_head()
    head = ray_head.up(args.num_cpus)
    verb = "already up" if before is not None else "up"
    print(f"{head.describe()}: {verb}. `sweep run` uses it; `sweep down` stops it (state: {ray_head.state_file()})")
    return 0


def cmd_down(args) -> int:
    from cluster.infra import ray_head

    print("Ray head stopped" if ray_head.down() else "no Ray head was up")
    return 0


def cmd_results(args) -> int:
    from analysis.results import format_results
    from cluster import api

    _need_target(args)
    table = api.results(args.experiment, sweep=args.sweep, tracking_uri=args.tracking_uri)
    print(format_results(table, args.format))
    return 0


def cmd_report(args) -> int:
    from analysis.reproduction import console_lines
    from cluster import api

    _need_target(args)
    report = api.report(args.experiment, sweep=args.sweep, tracking_uri=args.tracking_uri, out=args.out, display=False)
    for note in report.notes:
        if note.startswith("user module"):
            print(f"sweep report: note: {note}", file=sys.stderr)
    if report.claims:  # the source's claims with their status: counts, then each one not reproduced
        lines = console_lines(report.claims, limit=12)
        print("source claims: " + lines[0], *lines[1:], sep="\n")
    print(f"report written: {report.path}")
    return 0


def cmd_server(args) -> int:
    from cluster.infra.server import serve

    return serve(host=args.host, port=args.port, backend_store_uri=args.backend_store_uri,
                 artifacts_destination=args.artifacts_destination, app_name=args.app_name, workers=args.workers,
                 allowed_hosts=args.allowed_hosts) or 0


def _need_target(args) -> None:
    if not args.experiment and not args.sweep:
        raise ConfigError("name an EXPERIMENT or pass --sweep NAME")


COMMANDS = {"list": cmd_list, "run": cmd_run, "study": cmd_study, "resume": cmd_resume, "up": cmd_up, "down": cmd_down, "confirm": cmd_confirm, "results": cmd_results,
            "report": cmd_report, "server": cmd_server}


# Commands that start or join Ray in this process. Run as the `sweep` program, they end with
# os._exit once every atexit hook has run (Ray's shutdown, MLflow's flush, logging's): the
# interpreter's own finalization then only runs Ray's and torch's C++ destructors, which took
# seconds after the last byte was written (measured with core.phases: "exit" -> process end).
FAST_EXIT = frozenset({"run", "resume", "study", "confirm"})


def main(argv: list[str] | None = None) -> int:
    import os

    from core import phases

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    phases.mark("cli_imported")
    args = build_parser().parse_args(argv)
    outcome = {"code": 1}  # an exception escaping main exits 1, as Python's own exit would
    if argv is None and args.command in FAST_EXIT:  # the program, never a caller such as the tests
        import atexit

        atexit.register(_fast_exit, outcome)  # registered before Ray and MLflow load: runs after their hooks
    if phases.enabled():
        import atexit

        atexit.register(phases.mark, "exit")
    try:
        code = _dispatch(args)
    except SystemExit as exc:
        outcome["code"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    outcome["code"] = code
    return code


def _dispatch(args) -> int:
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"sweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # cluster.infra.interrupts.Interrupted carries SIGINT or SIGTERM
        print(f"sweep {args.command}: interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)


def _fast_exit(outcome: dict) -> None:
    """The last atexit hook: flush what Python still buffers, then end the process with its code."""
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    code = outcome["code"]
    os._exit(code if isinstance(code, int) and not isinstance(code, bool) else int(bool(code)))


if __name__ == "__main__":
    sys.exit(main())
