"""Faults injected and survived: every trial in MLflow exactly once, with its full history.

Each test injects one fault into a real sweep (local Ray, sqlite or a real `mlflow server`):
a trial that raises (fail_at_epoch), a SIGKILLed trial worker, a SIGKILLed driver followed by
`sweep resume`, a tracking server that goes away (briefly, or for good), and a trial that
fails for good among healthy ones. Only processes these tests started are ever signalled:
they are found as descendants of this process or members of a session the test created.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cluster.cli import main
from conftest import mlflow_runs
from trainables.trainable import run_trial

FAULT_ENV = {"SWEEP_ALLOW_FAULT_INJECTION": "1"}
HISTORY_KEYS = ("train_loss", "val_acc")


# ---- helpers -------------------------------------------------------------------------------

def _steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _assert_each_epoch_once(client, runs, epochs: int) -> None:
    for run in runs:
        for key in HISTORY_KEYS:
            assert _steps(client, run.info.run_id, key) == list(range(1, epochs + 1)), (run.info.run_name, key)


def _assert_one_run_per_trial(children, n_trials: int) -> None:
    ids = [c.data.tags.get("trial_id") for c in children]
    assert len(children) == n_trials and len(set(ids)) == n_trials and None not in ids, ids


def _reference(client, run, tmp_path: Path) -> dict:
    """The same trial run uninterrupted in this process, from the config.json the run logged."""
    d = tmp_path / "ref" / run.info.run_id
    d.mkdir(parents=True)
    cfg = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json", str(d))).read_text())
    cfg = {k: v for k, v in cfg.items() if k != "fail_at_epoch"}
    return run_trial({**cfg, "log_to_mlflow": False})


def _assert_matches_reference(client, runs, tmp_path: Path) -> None:
    for run in runs:
        ref = _reference(client, run, tmp_path)
        for key in ("train_loss", "val_loss", "val_acc", "train_acc"):
            assert run.data.metrics[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key


def _resumed_trials(sweep_dir: Path) -> int:
    """Trials whose Tune results show a restore from a checkpoint (not a restart from scratch)."""
    n = 0
    for results in sweep_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        n += any(1 < r["training_iteration"] and r["iterations_since_restore"] < r["training_iteration"]
                 for r in rows)
    return n


def _procs() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command line) of every live process we can read (no zombies)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if fields[0] == "Z":
            continue  # already dead, waiting to be reaped
        out[int(entry)] = (int(fields[1]), int(fields[3]), cmd)
    return out


def _descendants(root: int) -> dict[int, str]:
    procs, found, frontier = _procs(), {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, cmd) in procs.items():
            if ppid == parent and pid not in found:
                found[pid] = cmd
                frontier.append(pid)
    return found


def _kill_session(sid: int, tree: dict[int, str], wait: float = 20.0) -> list[int]:
    """SIGKILL every process of session `sid` (one this test created) and of `tree` (pid -> command
    line of its descendants, recorded earlier; matched on the command line too, so a reused pid is
    left alone); return those still alive after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        procs = _procs()
        alive = [pid for pid, (_, s, cmd) in procs.items() if s == sid or tree.get(pid) == cmd]
        if not alive or time.monotonic() > deadline:
            return alive
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _sweep(tmp_path: Path, uri: str, name: str, *extra: str) -> list[str]:
    return ["run", *extra, "--name", name, "--tracking-uri", uri, "--storage-path", str(tmp_path / "rr")]


# ---- 1. a trial raises mid-training: retried from its checkpoint -----------------------------

@pytest.mark.slow
def test_failed_trial_resumes_from_checkpoint_into_the_same_run(tmp_path, monkeypatch, ray_shutdown):
    """fail_at_epoch=6 with checkpoints every 3 epochs: MLflow already holds epochs 4-5 when the
    retry restarts from epoch 3; they are recomputed but not logged twice."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("SWEEP_ALLOW_FAULT_INJECTION", "1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main(_sweep(tmp_path, uri, "f1", "edge-overfit-small", "--smoke", "--seeds", "1", "--set", "epochs=8",
                       "--set", "report_every=1", "--set", "checkpoint_every=3", "--set", "fail_at_epoch=6"))
    assert code == 0  # would be 1 if a retry started from scratch: it would fail at epoch 6 again
    client = MlflowClient(uri)
    parents, children = mlflow_runs(uri, "edge-overfit-small")
    assert len(parents) == 1
    _assert_one_run_per_trial(children, 2)
    assert all(c.info.status == "FINISHED" for c in children)
    _assert_each_epoch_once(client, children, 8)
    assert _resumed_trials(tmp_path / "rr" / "f1") == 2
    _assert_matches_reference(client, children, tmp_path)


# ---- 2. a trial worker is SIGKILLed --------------------------------------------------------

@pytest.mark.slow
def test_sigkilled_trial_worker_resumes_from_checkpoint(tmp_path, ray_shutdown):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    killed: list[int] = []
    done = threading.Event()

    def killer():
        """Once the trial has checkpointed a few times, SIGKILL its worker (a descendant of this process)."""
        deadline = time.monotonic() + 240
        while not done.is_set() and time.monotonic() < deadline:
            ckpts = [int(p.name.split("_")[1]) for p in (tmp_path / "rr" / "f2").glob("*/checkpoint_*")]
            workers = [pid for pid, cmd in _descendants(os.getpid()).items() if "ImplicitFunc" in cmd]
            if ckpts and max(ckpts) >= 3 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        code = main(_sweep(tmp_path, uri, "f2", "edge-deeper", "--smoke", "--seeds", "1", "--set", "epochs=100",
                           "--set", "report_every=1"))
    finally:
        done.set()
        thread.join()
    assert killed, "the trial finished before its worker could be killed"
    assert code == 0
    client = MlflowClient(uri)
    parents, children = mlflow_runs(uri, "edge-deeper")
    assert len(parents) == 1
    _assert_one_run_per_trial(children, 1)
    assert children[0].info.status == "FINISHED"
    _assert_each_epoch_once(client, children, 100)
    assert _resumed_trials(tmp_path / "rr" / "f2") == 1
    _assert_matches_reference(client, children, tmp_path)


# ---- 3. the driver is SIGKILLed; `sweep resume` finishes the sweep -----------------------------

@pytest.mark.slow
def test_sigkilled_driver_then_resume_runs_every_trial_exactly_once(tmp_path, ray_shutdown):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = _sweep(tmp_path, uri, "f3", "edge-data-per-class", "--smoke", "--seeds", "1", "--set", "epochs=120",
                  "--set", "report_every=5")
    log = open(tmp_path / "driver.log", "wb")
    # Its own session: the driver's Ray processes can be found (and cleaned up) by session id.
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", *args], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    finished_before: dict[str, tuple] = {}
    tree: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            # Open the store only once the driver has set it up and opened its parent run (its header
            # names it): MlflowClient() creates a missing store's tables, racing the driver's schema check.
            if b"parent run" in (tmp_path / "driver.log").read_bytes():
                _, children = mlflow_runs(uri, "edge-data-per-class")
                states = [c.info.status for c in children]
                if "FINISHED" in states and "RUNNING" in states:
                    break
            time.sleep(0.25)
        assert proc.poll() is None, "the sweep ended before the driver could be killed"
        tree = _descendants(proc.pid)  # Ray's processes started by this driver
        assert any("raylet" in cmd for cmd in tree.values())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        client = MlflowClient(uri)
        _, children = mlflow_runs(uri, "edge-data-per-class")
        finished_before = {c.info.run_id: (c.info.start_time, c.info.end_time,
                                           len(client.get_metric_history(c.info.run_id, "train_loss")))
                           for c in children if c.info.status == "FINISHED"}
        assert finished_before and len(finished_before) < 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = _kill_session(proc.pid, tree)
        log.close()
    assert not left, f"processes of the killed driver still alive: {left}"

    code = main(["resume", "f3", "--storage-path", str(tmp_path / "rr")])
    assert code == 0
    parents, children = mlflow_runs(uri, "edge-data-per-class")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    _assert_one_run_per_trial(children, 4)
    assert all(c.info.status == "FINISHED" for c in children)
    _assert_each_epoch_once(client, children, 120)
    for c in children:  # finished before the kill: not rerun, not relogged
        if c.info.run_id in finished_before:
            now = (c.info.start_time, c.info.end_time, len(client.get_metric_history(c.info.run_id, "train_loss")))
            assert now == finished_before[c.info.run_id]


def test_trial_finished_before_driver_died_is_not_rerun(tracking_uri):
    """Tune restarts a trial it did not see finish from an older checkpoint: MLflow stays as it was."""
    from mlflow.tracking import MlflowClient

    from trainables.tracking import TrackingInfo

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s", "t")
    cfg = {"pairing": "simple_cnn/edges", "data_per_class": 5, "valid_per_class": 5, "epochs": 4, "report_every": 1}
    states = {}
    first = run_trial(cfg, tracking=info, trial_id="t1", report=lambda m, s: states.setdefault(m["epoch"], s))
    rid = first["mlflow_run_id"]
    before = client.get_run(rid)
    n_hist = {k: len(client.get_metric_history(rid, k)) for k in before.data.metrics}
    reports = []
    again = run_trial(cfg, tracking=info, trial_id="t1", restore=states[2], report=lambda m, s: reports.append(m))
    after = client.get_run(rid)
    assert after.info.status == "FINISHED" and after.info.end_time == before.info.end_time
    assert {k: len(client.get_metric_history(rid, k)) for k in after.data.metrics} == n_hist
    assert len(reports) == 1 and reports[0]["epochs_completed"] == 4 and again["val_acc"] == first["val_acc"]
    # Without MLflow, a restore from the final checkpoint reports the final metrics again.
    local = run_trial({**cfg, "log_to_mlflow": False}, restore=states[4])
    assert local["epoch"] == 4 and local["val_acc"] == pytest.approx(first["val_acc"])


# ---- 4. the tracking server: unreachable, a short outage, a long one ---------------------------

@pytest.mark.slow
@pytest.mark.cluster
def test_short_tracking_outage_mid_sweep_loses_no_metric(tmp_path, ray_shutdown):
    from mlflow.tracking import MlflowClient

    from cluster.infra.server import TrackingServer

    (tmp_path / "server").mkdir()
    with TrackingServer(root=tmp_path / "server") as server:
        uri = server.uri
        outage: dict[str, float] = {}
        done = threading.Event()

        def interrupt():
            """When trials are logging, stop the server for 4 s, then start it on the same port."""
            client = MlflowClient(uri)
            deadline = time.monotonic() + 240
            while not done.is_set() and time.monotonic() < deadline:
                try:
                    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                              "tags.role = 'trial' and attributes.status = 'RUNNING'")
                except Exception:
                    runs = []
                if any(client.get_metric_history(r.info.run_id, "train_loss") for r in runs):
                    outage["start"] = time.monotonic()
                    server.stop()
                    time.sleep(4)
                    server.start()
                    outage["end"] = time.monotonic()
                    outage["sweep_running"] = not done.is_set()
                    return
                time.sleep(0.2)

        thread = threading.Thread(target=interrupt, daemon=True)
        thread.start()
        try:
            code = main(_sweep(tmp_path, uri, "f4", "edge-overfit-small", "--smoke", "--seeds", "1",
                               "--set", "epochs=300", "--set", "report_every=5"))
        finally:
            done.set()
            thread.join()
        assert outage.get("sweep_running"), f"no outage during training: {outage}"
        assert code == 0
        client = MlflowClient(uri)
        parents, children = mlflow_runs(uri, "edge-overfit-small")
        assert len(parents) == 1
        _assert_one_run_per_trial(children, 2)
        assert all(c.info.status == "FINISHED" for c in children)
        _assert_each_epoch_once(client, children, 300)


@pytest.mark.cluster
def test_long_tracking_outage_fails_the_trial_with_a_clear_message(tmp_path):
    """The server dies for good at epoch 2: the trial gives up after retry_s, it does not hang."""
    from mlflow.tracking import MlflowClient

    from cluster.infra.server import TrackingServer
    from trainables.tracking import TrackingInfo

    (tmp_path / "server").mkdir()
    with TrackingServer(root=tmp_path / "server") as server:
        client = MlflowClient(server.uri)
        exp_id = client.create_experiment("outage")
        parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
        info = TrackingInfo(server.uri, exp_id, parent, "s", "outage", retry_s=3.0)
        stopped: list[float] = []

        def report(metrics, state):
            if metrics["epoch"] == 2 and not stopped:
                server.stop()
                stopped.append(time.monotonic())

        cfg = {"pairing": "simple_cnn/edges", "data_per_class": 5, "valid_per_class": 5, "epochs": 6,
               "report_every": 1}
        with pytest.raises(RuntimeError, match=r"MLflow tracking at http://127\.0\.0\.1:\d+ failed for 3 s"):
            run_trial(cfg, tracking=info, report=report, trial_id="t0")
        assert stopped and time.monotonic() - stopped[0] < 60


def test_retry_window_comes_from_the_environment(monkeypatch):
    from core.errors import ConfigError
    from trainables.tracking import RETRY_ENV, TrackingInfo, default_retry_s

    monkeypatch.setenv(RETRY_ENV, "7.5")
    assert TrackingInfo("sqlite:///x.db", "1", "p", "s", "e").retry_s == 7.5
    monkeypatch.setenv(RETRY_ENV, "soon")
    with pytest.raises(ConfigError, match="'soon'"):
        default_retry_s()


# ---- 5. one trial fails for good; the others finish ------------------------------------------

@pytest.mark.slow
def test_one_failing_trial_does_not_stop_the_others(tmp_path, monkeypatch, ray_shutdown, capsys):
    from mlflow.tracking import MlflowClient

    from analysis.results import results_table

    monkeypatch.setenv("SWEEP_ALLOW_FAULT_INJECTION", "1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main(_sweep(tmp_path, uri, "f5", "edge-overfit-small", "--smoke", "--seeds", "1", "--set", "epochs=4",
                       "--grid", "fail_at_epoch=None,2", "--max-failures", "0"))
    assert code == 1
    client = MlflowClient(uri)
    parents, children = mlflow_runs(uri, "edge-overfit-small")
    assert len(parents) == 1 and parents[0].data.tags["n_errors"] == "2"
    _assert_one_run_per_trial(children, 4)
    failed = [c for c in children if c.data.params.get("fail_at_epoch") == "2"]
    healthy = [c for c in children if c not in failed]
    assert len(failed) == 2 and all(c.info.status == "FINISHED" for c in healthy)
    _assert_each_epoch_once(client, healthy, 4)
    for c in failed:
        assert c.info.status == "FAILED" and c.data.tags["status_reason"] == "failed"
        assert "injected failure at epoch 2" in c.data.tags["error"]
        path = client.download_artifacts(c.info.run_id, "error.txt", str(tmp_path))
        assert "injected failure at epoch 2" in Path(path).read_text()
        assert _steps(client, c.info.run_id, "train_loss") == [1]
    table = results_table(uri, sweep="f5")
    assert table["n_failed"].sum() == 2
    assert "n_failed" in capsys.readouterr().out
