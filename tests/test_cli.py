"""The thin CLI: listings, the analytic experiment, argument errors."""
from __future__ import annotations

import pytest

from cluster.cli import build_parser, main
from conftest import mlflow_runs
from search_spaces import EXPERIMENTS


def test_list_experiments_names_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)


def test_list_models_shows_spec_parameter_counts(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    for count in ("606", "39,793", "820,874", "268,650", "61,706", "11,175,370", "5,130"):
        assert count in out


def test_list_keys(capsys):
    assert main(["list", "keys"]) == 0
    out = capsys.readouterr().out
    assert "data_per_class" in out and "lr" in out and "report_every" in out


def test_analytic_experiment_prints_and_logs(tracking_uri, capsys):
    assert main(["run", "mlp-param-explosion", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    for count in ("820,874", "50,366,090", "707,823,242", "6,370,133,642"):
        assert count in out
    parents, children = mlflow_runs(tracking_uri, "mlp-param-explosion")
    assert len(parents) == 1 and not children
    assert parents[0].data.metrics["mlp_params"] == 6_370_133_642


@pytest.mark.parametrize("flags, named", [(["--set", "lr=0.1"], "--set"), (["--seeds", "3"], "--seeds"),
                                          (["--grid", "epochs=1,2", "--pack", "2"], "--grid, --pack")])
def test_analytic_experiment_refuses_settings_it_cannot_apply(flags, named, tmp_path, capsys):
    """mlp-param-explosion trains nothing: a --set (or any trial setting) would be logged as applied but not be."""
    db = tmp_path / "mlflow.db"
    assert main(["run", "mlp-param-explosion", "--tracking-uri", f"sqlite:///{db}", *flags]) == 2
    err = capsys.readouterr().err
    assert "is analytic" in err and named in err
    assert not db.exists()


@pytest.mark.parametrize("given, named", [({}, None), ({"search": "hyperopt"}, "--search"),
                                          ({"until_decided": True}, "--until-decided"),
                                          ({"target_halfwidth": 0.05}, "--target-halfwidth"),
                                          ({"pack": 2, "max_failures": 5}, "--pack")])
def test_analytic_refusals_read_the_options_declaration(given, named):
    """Each option's flag and its "not given" value come from RunOptions' declaration: the defaults
    are accepted, any other value is named by its flag (max_failures applies to nothing: ignored)."""
    import dataclasses

    from cluster.flow.analytic import check_analytic_options
    from cluster.flow.options import RunOptions
    from core.errors import ConfigError
    from search_spaces import get_experiment

    exp = get_experiment("mlp-param-explosion")
    opts = dataclasses.replace(RunOptions("mlp-param-explosion"), **given)
    if named is None:
        check_analytic_options(exp, opts)
        return
    with pytest.raises(ConfigError, match=f"is analytic.*{named}") as info:
        check_analytic_options(exp, opts)
    assert "--max-failures" not in str(info.value)


def test_results_without_target_is_refused(tracking_uri, capsys):
    assert main(["results", "--tracking-uri", tracking_uri]) == 2
    assert "EXPERIMENT" in capsys.readouterr().err


def test_parser_rejects_non_numeric_gpus():
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "edge-wider", "--gpus-per-trial", "lots"])
    assert info.value.code == 2


# --- --pack refused before Ray or MLflow start ------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["run", "edge-hpo", "--smoke", "--pack", "4"], "--scheduler asha"),  # the experiment's own ASHA
    (["run", "edge-hpo", "--smoke", "--pack", "4", "--scheduler", "none"], "grid sweeps"),  # sampled values
    (["run", "edge-data-per-class", "--smoke", "--pack", "4", "--scheduler", "asha"], "--scheduler asha"),
    (["run", "edge-data-per-class", "--smoke", "--pack", "4", "--search", "optuna"], "--search optuna"),
    (["run", "edge-data-per-class", "--smoke", "--pack", "4", "--num-samples", "2"], "--num-samples 1"),
    (["run", "edge-data-per-class", "--smoke", "--pack", "4", "--sample", "lr=loguniform(1e-3,1e-1)"],
     "grid sweeps"),
], ids=["edge-hpo-default-asha", "sampled", "asha", "searcher", "num-samples", "sample"])
def test_pack_refused_before_ray_and_mlflow(argv, fragment, tmp_path, monkeypatch, capsys):
    import ray

    from cluster.infra import ray_setup

    def no_ray(*a, **kw):
        raise AssertionError("Ray was started")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ray_setup, "init_ray", no_ray)
    code = main(argv + ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage-path", str(tmp_path / "rr"),
                        "--name", "packed"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--pack" in err and fragment in err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "rr" / "packed").exists()
    assert not ray.is_initialized()


# --- every documented flag reaches the function it configures ------------------------------------------

# flag -> (argv value or None for a switch, keyword/field, expected value)
RUN_FLAGS = {
    "--seeds": ("3", "seeds", 3), "--set": ("lr=0.1", "sets", {"lr": 0.1}),
    "--grid": ("lr=0.1,0.2", "grids", {"lr": [0.1, 0.2]}), "--smoke": (None, "smoke", True),
    "--num-samples": ("5", "num_samples", 5), "--scheduler": ("asha", "scheduler", "asha"),
    "--grace-period": ("2", "grace_period", 2), "--reduction-factor": ("3", "reduction_factor", 3),
    "--search": ("optuna", "search", "optuna"), "--address": ("auto", "address", "auto"),
    "--tracking-uri": ("sqlite:///x.db", "tracking_uri", "sqlite:///x.db"),
    "--cpus-per-trial": ("2", "cpus_per_trial", 2.0), "--gpus-per-trial": ("0.5", "gpus_per_trial", 0.5),
    "--max-concurrent": ("4", "max_concurrent", 4), "--max-failures": ("0", "max_failures", 0),
    "--name": ("n1", "name", "n1"), "--storage-path": ("/tmp/rr", "storage_path", "/tmp/rr"),
    "--data-root": ("/tmp/d", "data_root", "/tmp/d"), "--pack": ("4", "pack", 4),
    "--no-ship-code": (None, "ship_code", False),
    "--sample": ("lr=loguniform(1e-3,1e-1)", "samples", {"lr": "loguniform(0.001, 0.1)"}),
    "--yes": (None, "allow_large", True), "--allow-large": (None, "allow_large", True),
    "--until-decided": (None, "until_decided", True), "--max-seeds": ("12", "max_seeds", 12),
    "--target-halfwidth": ("0.05", "target_halfwidth", 0.05), "--verbose": (None, "verbose", True),
}
CONFIRM_FLAGS = {
    "--seeds": ("7", "seeds", 7), "--top": ("2", "top", 2), "--name": ("c1", "name", "c1"),
    "--storage-path": ("/tmp/rr", "storage_path", "/tmp/rr"), "--max-concurrent": ("3", "max_concurrent", 3),
    "--cpus-per-trial": ("2", "cpus_per_trial", 2.0), "--gpus-per-trial": ("0.5", "gpus_per_trial", 0.5),
    "--address": ("auto", "address", "auto"), "--tracking-uri": ("sqlite:///x.db", "tracking_uri", "sqlite:///x.db"),
}
RESUME_FLAGS = {"--storage-path": ("/tmp/rr", "storage_path", "/tmp/rr"), "--address": ("auto", "address", "auto"),
                "--verbose": (None, "verbose", True)}
UP_FLAGS = {"--num-cpus": ("2", "num_cpus", 2)}
SERVER_FLAGS = {
    "--host": ("0.0.0.0", "host", "0.0.0.0"), "--port": ("5001", "port", 5001),
    "--backend-store-uri": ("sqlite:///s.db", "backend_store_uri", "sqlite:///s.db"),
    "--artifacts-destination": ("/tmp/a", "artifacts_destination", "/tmp/a"),
    "--app-name": ("basic-auth", "app_name", "basic-auth"), "--workers": ("3", "workers", 3),
    "--allowed-hosts": ("a.example,b.example", "allowed_hosts", "a.example,b.example"),
}
READ_FLAGS = {"--sweep": ("s1", "sweep", "s1"), "--tracking-uri": ("sqlite:///x.db", "tracking_uri", "sqlite:///x.db")}
TABLES = {"run": RUN_FLAGS, "confirm": CONFIRM_FLAGS, "resume": RESUME_FLAGS, "server": SERVER_FLAGS, "up": UP_FLAGS,
          "results": {**READ_FLAGS, "--format": ("csv", "format", "csv")},
          "report": {**READ_FLAGS, "--out": ("/tmp/out", "out_dir", "/tmp/out")}}


def _options(command: str) -> set[str]:
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"}


@pytest.mark.parametrize("command", sorted(TABLES))
def test_every_flag_of_the_parser_is_in_the_table(command):
    assert _options(command) == set(TABLES[command])


def _capture(monkeypatch, command: str) -> dict:
    """Replace the function `command` calls with one that records its arguments."""
    seen: dict = {}
    if command == "run":
        import cluster.flow.run as mod

        monkeypatch.setattr(mod, "run_sweep", lambda opts, **kw: seen.update(vars(opts)) or 0)
    elif command == "resume":
        import cluster.flow.resume as mod

        monkeypatch.setattr(mod, "resume_sweep", lambda name, storage_path, address, **kw:
                            seen.update(name=name, storage_path=storage_path, address=address, **kw) or 0)
    elif command == "up":
        import cluster.infra.ray_head as mod
        from cluster.infra.ray_head import HeadState

        # (the CLI asks start_or_join, which decides "up" / "already up" under the project's lock)
        monkeypatch.setattr(mod, "start_or_join", lambda num_cpus=None: seen.update(num_cpus=num_cpus)
                            or (HeadState("127.0.0.1:1", 1, num_cpus or 1, "/tmp/x", "/tmp", 0.0), True))
    elif command == "confirm":
        import cluster.flow.confirm as mod

        monkeypatch.setattr(mod, "confirm_sweep", lambda sweep, **kw: seen.update(sweep=sweep, **kw) or 0)
    elif command == "server":
        import cluster.infra.server as mod

        monkeypatch.setattr(mod, "serve", lambda **kw: seen.update(kw) or 0)
    else:
        import analysis.report as rep
        import analysis.results as res
        import cluster.infra.tracking as trk

        monkeypatch.setattr(trk, "check_tracking_uri", lambda uri: seen.update(tracking_uri=uri) or uri)
        monkeypatch.setattr(res, "results_table", lambda uri, **kw: seen.update(kw) or [])
        monkeypatch.setattr(res, "format_results", lambda table, fmt: seen.update(format=fmt) or "")
        monkeypatch.setattr(rep, "write_report", lambda uri, **kw: seen.update(kw) or "r.html")
        monkeypatch.setattr(rep, "build_report", lambda uri, **kw: seen.update(kw) or ("r.html", []))
    return seen


POSITIONAL = {"run": ["edge-data-per-class"], "confirm": ["s0"], "resume": ["s0"], "server": [], "up": [],
              "results": ["edge-data-per-class"], "report": ["edge-data-per-class"]}


@pytest.mark.parametrize("command, flag", [(c, f) for c in sorted(TABLES) for f in sorted(TABLES[c])])
def test_flag_reaches_its_function(command, flag, monkeypatch):
    value, key, expected = TABLES[command][flag]
    seen = _capture(monkeypatch, command)
    argv = [command, *POSITIONAL[command], flag] + ([] if value is None else [value])
    if command == "run" and flag == "--search":
        monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    assert main(argv) == 0
    got = seen[key]
    if key == "samples":
        got = {k: v.describe() for k, v in got.items()}
    assert got == expected


# --- exit codes: 0 done, 1 some trials failed, 2 bad input, 130 interrupted ------------------------------

def test_exit_code_2_for_bad_input_and_130_for_an_interrupt(monkeypatch, capsys):
    import cluster.flow.run as mod

    assert main(["run", "edge-data-per-class", "--set", "lr=0"]) == 2
    assert "lr must be > 0" in capsys.readouterr().err

    def interrupted(opts, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "run_sweep", interrupted)
    assert main(["run", "edge-data-per-class"]) == 130
    assert "interrupted" in capsys.readouterr().err



def test_sigint_to_a_running_sweep_exits_130_and_leaves_no_run_running(tmp_path):
    """Ctrl-C on a running `sweep run`: exit code 130, and the parent run is not left RUNNING."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(root), "RAY_DEDUP_LOGS": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    argv = [sys.executable, "-m", "cluster.cli", "run", "edge-data-per-class", "--smoke", "--seeds", "1",
            "--set", "epochs=2000", "--set", "report_every=50", "--max-concurrent", "1", "--name", "intr",
            "--tracking-uri", uri, "--storage-path", str(tmp_path / "rr")]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline, out = time.time() + 120, ""
        while time.time() < deadline:  # the first line names the sweep once the parent run exists
            line = proc.stdout.readline()
            out += line
            if line.startswith("sweep intr:") or not line:
                break
        assert "sweep intr:" in out, out
        time.sleep(3)  # trials are running
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
        out += rest
        assert proc.returncode == 130, out[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    parents, children = mlflow_runs(uri, "edge-data-per-class")
    assert len(parents) == 1 and parents[0].info.status != "RUNNING"
    assert all(c.info.status != "RUNNING" for c in children)


def test_run_and_study_flags_come_from_one_declaration():
    """Each option is declared once (a RunOptions field with its flag); `sweep run` and `sweep study` flags
    are generated from it, so a flag they share has the same spelling, help and default in both."""
    import argparse
    import dataclasses

    from cluster.flow.options import RunOptions, StudyOptions, cli_fields

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    actions = {cmd: {a.dest: a for a in sub[cmd]._actions} for cmd in ("run", "study")}
    declared = {f.name: spec for f, spec in cli_fields(RunOptions)}
    # quiet and progress have no flag: set by `sweep study` and cluster.api (progress="notebook" redraws
    # the progress line in a Jupyter cell), not typed by a user of `sweep run`
    assert set(declared) == {f.name for f in dataclasses.fields(RunOptions)} - {"experiment", "quiet", "progress"}
    for name, spec in declared.items():
        assert tuple(actions["run"][name].option_strings) == spec["names"]
    shared = {f.name for f in dataclasses.fields(StudyOptions)} & set(declared) - {"name"}
    assert len(shared) >= 9
    for name in shared:
        run, study = actions["run"][name], actions["study"][name]
        assert (run.option_strings, run.help, run.default) == (study.option_strings, study.help, study.default)
