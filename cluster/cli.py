"""`sweep`: a thin CLI; each subcommand maps to one function elsewhere."""
from __future__ import annotations

import argparse
import sys

from cluster.flow.options import RunOptions, StudyOptions, add_flags, finite_float, flag_values
from core.errors import ConfigError
from cluster.infra.argv import MLFLOW_HTTP_DEFAULTS, NO_PROGRESS_BAR, closed_console, end_process, parse_args

import os

DEFAULT_URI = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
EPILOG = ("Defaults: local Ray (the head of `sweep up` when one is up, else started per sweep), MLflow at "
          "sqlite:///mlflow.db. A cluster is one flag away: --address, --tracking-uri.")


_float = finite_float


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
    add_flags(run, RunOptions)  # every flag from RunOptions' one declaration
    run.set_defaults(tracking_uri=DEFAULT_URI)

    stu = sub.add_parser("study", help="run a named set of experiments as one resumable job, then one study report")
    stu.add_argument("study", nargs="?", help="study name (see --list), FILE.py (all its experiments) or FILE.py:STUDY")
    stu.add_argument("--list", action="store_true", help="list the studies")
    add_flags(stu, StudyOptions)  # the flags it shares with `run` come from the same declaration
    stu.set_defaults(tracking_uri=DEFAULT_URI)

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
    from core import phases

    phases.mark("run_imported")
    # The flags' values as given; cluster.api parses them as RunOptions declares (options.from_kwargs)
    return api.run(args.experiment, progress="console", **flag_values(RunOptions, args)).exit_code


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
    return api.study(args.study, progress="console", **flag_values(StudyOptions, args)).exit_code


def cmd_resume(args) -> int:
    from cluster.flow.resume import resume_sweep

    return resume_sweep(args.name, args.storage_path, args.address, verbose=args.verbose)


def cmd_up(args) -> int:
    from cluster.infra import ray_head, warm_server

    if args.num_cpus is not None and args.num_cpus < 1:
        raise ConfigError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    head, started = ray_head.start_or_join(args.num_cpus)
    verb = "up" if started else "already up"
    warm = " and its warm driver (libraries imported)" if warm_server.answers(ray_head.warm_socket()) else ""
    print(f"{head.describe()}: {verb}. `sweep run` uses it{warm}; `sweep down` stops it (state: {ray_head.state_file()})")
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
# Of those, the commands that run one sweep: Ray is stopped as soon as its fit returns, while the
# results table prints (study and confirm run several sweeps on one Ray).
STOP_RAY_AFTER_FIT = frozenset({"run", "resume"})


def main(argv: list[str] | None = None) -> int:
    import os

    closed = closed_console()
    if closed:
        other = sys.stderr if closed == "stdout" else sys.stdout
        redirect = ">" if closed == "stdout" else "2>"
        try:
            print(f"sweep: {closed} is closed (`{redirect}&-`); send it to a file or to /dev/null instead "
                  f"(`{redirect}/dev/null`)", file=other, flush=True)
        except (OSError, ValueError, AttributeError):
            pass
        return 2
    os.environ.setdefault(*NO_PROGRESS_BAR)
    unset = [key for key in MLFLOW_HTTP_DEFAULTS if key not in os.environ]
    for key in unset:  # for this command only: a caller's own process (the tests) keeps its environment
        os.environ[key] = MLFLOW_HTTP_DEFAULTS[key]
    try:
        if argv is None:  # the program (never a caller such as the tests): `sweep up`'s warm driver may run it
            from cluster.infra.warm_client import run_warm

            code = run_warm(sys.argv[1:])
            if code is not None:
                return code
        return _main(argv)
    finally:
        if argv is not None:
            for key in unset:
                os.environ.pop(key, None)


def _main(argv: list[str] | None) -> int:
    from core import phases

    phases.mark("cli_imported")
    args = parse_args(build_parser(), sys.argv[1:] if argv is None else list(argv))
    outcome = {"code": 1}  # an exception escaping main exits 1, as Python's own exit would
    if argv is None and args.command in FAST_EXIT:  # the program, never a caller such as the tests
        import atexit

        atexit.register(_fast_exit, outcome)  # registered before Ray and MLflow load: runs after their hooks
        if args.command in STOP_RAY_AFTER_FIT:
            from cluster.flow.finish import STOP_RAY_AFTER_FIT as stop_after_fit

            stop_after_fit["on"] = True  # Ray stops while the results table prints (cluster.flow.finish)
    if phases.enabled():
        import atexit

        atexit.register(phases.mark, "exit")
    try:
        code = _dispatch(args)
    except SystemExit as exc:
        outcome["code"] = exc.code  # end_process maps it as Python does
        raise
    outcome["code"] = code
    return code


def _dispatch(args) -> int:
    import os
    import signal

    from cluster.flow.finish import console_closed, describe, silence_stdout
    from cluster.infra.interrupts import Interrupted

    def terminate(signum, frame):  # SIGTERM before the sweep's own guard (imports, Ray's start-up)
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, terminate) if _main_thread() else None
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"sweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # cluster.infra.interrupts.Interrupted carries SIGINT or SIGTERM
        print(f"sweep {args.command}: interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)
    except Exception as exc:  # noqa: BLE001 - a fault of the machine or a service: one line, no traceback
        if os.environ.get("SWEEP_DEBUG"):
            raise
        if console_closed(exc):
            silence_stdout()
        try:
            print(f"sweep {args.command}: stopped: {describe(exc)} (SWEEP_DEBUG=1 shows the traceback)",
                  file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _fast_exit(outcome: dict) -> None:
    """The last atexit hook: flush what Python still buffers, then end the process with its code."""
    import logging

    logging.shutdown()
    end_process(outcome["code"])


if __name__ == "__main__":
    sys.exit(main())
