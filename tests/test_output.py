"""Output: the progress display, a quiet console (libraries' logs in driver.log), MLflow UI tag, loss label."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

pytest.importorskip("ray", reason="the progress display is a Ray Tune callback")

from cluster.tuner.callbacks import ProgressDisplay

ROOT = Path(__file__).resolve().parents[1]
CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _trial(pairing: str, seed: int, status: str = "RUNNING", **last):
    return SimpleNamespace(config={"pairing": pairing, "seed": seed, "data_per_class": 10}, status=status,
                           last_result=last, trial_id=f"{pairing}-{seed}")


def _display(tty: bool, total: int = 4, **kw):
    clock, out = Clock(), io.StringIO()
    return ProgressDisplay(total, ["pairing", "data_per_class", "seed"], stream=out, tty=tty, clock=clock,
                           interval_s=10, **kw), clock, out


def test_plain_progress_lines_at_each_tenth_with_a_heartbeat():
    d, clock, out = _display(tty=False)
    trials = [_trial(CNN, 1), _trial(MLP, 1), _trial(CNN, 2, "PENDING")]
    d.on_step_end(0, trials)
    assert out.getvalue() == ""  # not every step
    clock.t = 4
    d.on_trial_complete(0, trials, _trial(CNN, 1, "TERMINATED", val_acc=0.75, epochs_completed=3))
    clock.t = 11
    d.on_step_end(0, trials)  # 7 s since the last line, nothing new: quiet
    clock.t = 15
    d.on_step_end(0, trials)  # 11 s: a heartbeat
    clock.t = 16
    d.on_trial_error(0, trials, _trial(MLP, 1, "ERROR"))
    d.on_trial_complete(0, trials, _trial(MLP, 2, "TERMINATED", val_acc=0.9, epochs_completed=3))
    d.on_trial_complete(0, trials, _trial(CNN, 2, "TERMINATED", val_acc=0.5, epoch=1))  # stopped early
    d.on_experiment_end(trials)
    lines = out.getvalue().splitlines()
    assert "1/4 trials done (1 running, 0 failed)" in lines[0] and "ETA 12s" in lines[0]
    assert "best val_acc 0.75 (simple_cnn/edges data_per_class=10 seed=1)" in lines[0]
    assert lines[1].startswith("[   15s] 1/4 trials done")
    assert "FAILED" in lines[2] and "three_layer_mlp/edges" in lines[2]
    assert "3/4 trials done" in lines[3]
    assert "4/4 trials done (0 running, 1 stopped early, 1 failed)" in lines[-1]
    assert "best val_acc 0.9 (three_layer_mlp/edges data_per_class=10 seed=2)" in lines[-1]
    assert "ETA" not in lines[-1] and len(lines) == 5  # the end is not repeated
    assert "\r" not in out.getvalue()


def test_plain_progress_stays_short_for_long_sweeps():
    d, clock, out = _display(tty=False, total=200)
    d.interval_s = 60
    trials = [_trial(CNN, 1)]
    for i in range(200):  # a trial every 5 s for 1000 s, a step every second
        for _ in range(5):
            clock.t += 1
            d.on_step_end(0, trials)
        d.on_trial_complete(0, trials, _trial(CNN, i, "TERMINATED", val_acc=0.5, epochs_completed=1))
    d.on_experiment_end(trials)
    assert len(out.getvalue().splitlines()) <= 12


def test_tty_progress_is_one_line_redrawn_in_place_within_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    d, clock, out = _display(tty=True, mode="min", metric="val_loss")
    trials = [_trial(CNN, 1), _trial(MLP, 1)]
    for i in range(50):
        clock.t = i
        d.on_step_end(i, trials)
    d.on_trial_complete(0, trials, _trial(CNN, 1, "TERMINATED", val_loss=0.4, epochs_completed=3))
    d.on_trial_complete(0, trials, _trial(MLP, 1, "TERMINATED", val_loss=0.2, epochs_completed=3))
    d.on_experiment_end(trials)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # a single line, ended once
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) > 10 and all(len(f) <= 79 for f in frames)
    assert "2/4 trials done" in frames[-1] and "best val_loss 0.2" in frames[-1]


def test_packed_trials_count_each_member():
    d, clock, out = _display(tty=False, total=2)
    members = [{"pairing": CNN, "seed": 1}, {"pairing": CNN, "seed": 2}]
    packed = SimpleNamespace(config={"members": members}, status="TERMINATED", trial_id="p",
                             last_result={"m0/val_acc": 0.6, "m0/epochs_completed": 2, "m1/val_acc": 0.8,
                                          "m1/epochs_completed": 2})
    d.on_trial_complete(0, [packed], packed)
    d.on_experiment_end([packed])
    assert "2/2 trials done" in out.getvalue() and "best val_acc 0.8" in out.getvalue()


def test_new_experiments_open_on_the_runs_table_and_old_ones_are_tagged(tracking_uri):
    from mlflow.tracking import MlflowClient

    from cluster.infra import tracking

    client = MlflowClient(tracking_uri=tracking_uri)
    new = tracking.get_or_create_experiment(client, "fresh", tracking_uri)
    assert client.get_experiment(new).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    old = client.create_experiment("made-before")
    assert tracking.EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert tracking.get_or_create_experiment(client, "made-before", tracking_uri) == old
    assert client.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    chosen = client.create_experiment("chosen", tags={tracking.EXPERIMENT_KIND_TAG: "genai_development"})
    tracking.get_or_create_experiment(client, "chosen", tracking_uri)
    assert client.get_experiment(chosen).tags[tracking.EXPERIMENT_KIND_TAG] == "genai_development"
    assert tracking.ui_url(new) == f"http://127.0.0.1:5000/#/experiments/{new}/runs"


def _cells(**metrics) -> pd.DataFrame:
    row = {"pairing": CNN, "n": 3, "n_stopped": 0, "n_failed": 0}
    for m, v in metrics.items():
        row.update({f"{m}_mean": v, f"{m}_median": v, f"{m}_std": 0.0, f"{m}_ci_low": v, f"{m}_ci_high": v})
    return pd.DataFrame([row])


def test_results_table_says_which_loss_it_shows():
    from analysis.results import format_results

    notebook_only = format_results(_cells(val_acc=0.7, val_loss=0.006), "table")
    assert "val_loss (notebook scale)" in notebook_only
    both = format_results(_cells(val_acc=0.7, val_loss=0.006, val_loss_mean=0.77), "table")
    assert "val_loss (per-sample mean)" in both and "0.77" in both and "notebook scale" not in both


def _smoke(tmp_path: Path, *extra: str) -> tuple[str, Path]:
    # A fresh HOME (no ~/.ray token) and no auth/address variables: Ray then always logs its
    # token-authentication warning at start, whatever earlier tests or `sweep up` left behind.
    (tmp_path / "userhome").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_HOME": str(tmp_path / "home"),
           "HOME": str(tmp_path / "userhome")}
    for leaked in ("MLFLOW_CONFIGURE_LOGGING", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS"):
        env.pop(leaked, None)
    argv = [sys.executable, "-m", "cluster.cli", "run", "edge-data-per-class", "--seeds", "1", "--set", "epochs=1",
            "--set", "data_per_class=10", "--name", "quiet", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
            "--storage-path", str(tmp_path / "rr"), "--cpus-per-trial", "1", *extra]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr, tmp_path / "rr" / "quiet" / "driver.log"


def test_smoke_sweep_console_is_quiet_and_ray_logs_go_to_driver_log(tmp_path):
    out, log = _smoke(tmp_path)
    lines = out.splitlines()
    assert not [ln for ln in lines if "WARNING" in ln or "INFO" in ln], out
    assert len(lines) < 16, out  # header, progress, 2-row table, footers
    assert "2/2 trials done" in out and "Results of quiet" in out
    assert log.is_file() and "Token authentication" in log.read_text()  # Ray's warning, kept in the file


@pytest.mark.slow
def test_verbose_sweep_shows_the_libraries_logs(tmp_path):
    out, log = _smoke(tmp_path, "--verbose")
    assert "WARNING" in out and "Token authentication" in out


def test_progress_display_pickles_without_its_stream():
    """Tune pickles callbacks with its experiment state; a captured stream must not travel."""
    import pickle

    d, clock, out = _display(tty=False)
    d.best = (0.5, "x")
    back = pickle.loads(pickle.dumps(d))
    assert back.best == (0.5, "x") and back.stream is sys.stdout
