"""Issue 16's defences one by one, without Ray: the safe CIFAR-10 reader, the validation layer's
edges, sweep names and locks, the store lock, Tune-state checks on resume, the parent run a
failed resume leaves, corrupt checkpoints, interrupt bookkeeping and the local Ray settings."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fakedata import fake_cifar, write_fake_cifar10  # noqa: F401
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


# ---- the CIFAR-10 reader ----------------------------------------------------------------------

def test_safe_reader_gives_the_arrays_written_and_the_same_45k5k_split(fake_cifar):  # noqa: F811
    from trainables.data.cifar import build_cifar10, load_cifar10_uint8, split_45k5k

    root, written = fake_cifar
    x, y = load_cifar10_uint8(str(root), train=True)
    assert np.array_equal(np.asarray(x), written["x_train"]) and np.array_equal(np.asarray(y), written["y_train"])
    xt, yt = load_cifar10_uint8(str(root), train=False)
    assert np.array_equal(np.asarray(xt), written["x_test"]) and np.array_equal(np.asarray(yt), written["y_test"])
    b = build_cifar10({"data_root": str(root), "split": "45k5k"})
    tr, va = split_45k5k(len(written["y_train"]), 42)
    assert np.array_equal(np.asarray(b.y_train), written["y_train"][tr.numpy()])
    assert np.array_equal(np.asarray(b.x_val), written["x_train"][va.numpy()])


def test_safe_reader_matches_torchvision_on_the_same_files(fake_cifar):  # noqa: F811
    from torchvision.datasets import CIFAR10

    from trainables.data.cifar import FOLDER, read_batch

    root, _ = fake_cifar

    class Files(CIFAR10):  # the files are ours (trusted): skip torchvision's md5 check
        def _check_integrity(self):
            return True

        def _load_meta(self):
            self.classes = []

    ds = Files(str(root), train=True, download=False)
    ours = [read_batch(root / FOLDER / f"data_batch_{i}") for i in range(1, 6)]
    assert np.array_equal(np.concatenate([x for x, _ in ours]), ds.data.transpose(0, 3, 1, 2))
    assert np.concatenate([y for _, y in ours]).tolist() == list(ds.targets)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_reads_every_protocol_of_the_format(tmp_path, protocol):
    from trainables.data.safe_pickle import load_restricted

    batch = {b"batch_label": b"x", "labels": [1, 2], "data": np.arange(6, dtype=np.uint8).reshape(2, 3),
             "filenames": ["a.png", "b.png"], "ba": bytearray(b"12")}
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=protocol))
    out = load_restricted(tmp_path / "b")
    assert out["labels"] == [1, 2] and np.array_equal(out["data"], batch["data"])


class _Mkdir:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_restricted_unpickler_runs_nothing(tmp_path, protocol):
    from trainables.data.safe_pickle import UnsafePickle, load_restricted

    marker = tmp_path / "pwned"
    (tmp_path / "b").write_bytes(pickle.dumps({"data": [_Mkdir(str(marker))]}, protocol=protocol))
    with pytest.raises(UnsafePickle, match=r"posix\.mkdir"):
        load_restricted(tmp_path / "b")
    assert not marker.exists()
    pickle.loads((tmp_path / "b").read_bytes())  # proof the file is hostile
    assert marker.is_dir()


# ---- the validation layer's edges --------------------------------------------------------------

def test_sweep_size_limit_and_yes():
    from cluster.planning.validate import MAX_TRIALS, check_sweep_size

    check_sweep_size(MAX_TRIALS, False)
    check_sweep_size(MAX_TRIALS * 8, True)
    with pytest.raises(ConfigError, match="--yes"):
        check_sweep_size(MAX_TRIALS + 1, False)


def test_yes_flag_reaches_the_options():
    from cluster.cli import build_parser

    assert build_parser().parse_args(["run", "x", "--yes"]).allow_large
    assert build_parser().parse_args(["run", "x", "--allow-large"]).allow_large
    assert not build_parser().parse_args(["run", "x"]).allow_large


def test_every_dataset_has_a_memory_estimate():
    """Each dataset declares its peak memory in the registry; only file- or feature-backed ones may say None."""
    from trainables.data import DATASETS

    assert {n for n, s in DATASETS.items() if s.peak_bytes is None} <= {n for n, s in DATASETS.items()
                                                                       if s.kind != "synthetic"}
    assert all(s.peak_bytes is None or callable(s.peak_bytes) for s in DATASETS.values())


def test_memory_estimate_tracks_what_edges_really_allocate():
    """The estimate is an upper bound of the tensors built (generation overhead included) and not absurd."""
    from trainables.data import DATASETS, build_data
    from trainables.data.edges import EdgeDataConfig

    cfg = {"data_per_class": 200, "valid_per_class": 50}
    b = build_data("edges", cfg)
    tensors = sum(t.element_size() * t.nelement() for t in (b.x_train, b.y_train, b.x_val, b.y_val))
    est = DATASETS["edges"].peak_bytes(EdgeDataConfig.from_config(cfg))
    assert tensors < est < 20 * tensors


def test_resources_must_be_finite_also_without_the_cli():
    from cluster.flow.options import RunOptions

    for field in ("gpus_per_trial", "cpus_per_trial"):
        for bad in (float("nan"), float("inf"), -float("inf"), "2"):
            with pytest.raises(ConfigError, match="finite number"):
                RunOptions(experiment="edge-data-per-class", **{field: bad})


def test_device_cuda_on_a_cluster_without_gpus():
    from cluster.planning.plan import make_plan
    from cluster.planning.validate import check_device_cluster
    from search_spaces import get_experiment

    plan = make_plan(get_experiment("edge-data-per-class"), {"device": "cuda"}, smoke=True)
    with pytest.raises(ConfigError, match="Ray cluster has no GPUs"):
        check_device_cluster(plan, 0.0)
    check_device_cluster(plan, 4.0)
    check_device_cluster(make_plan(get_experiment("edge-data-per-class"), smoke=True), 0.0)


# ---- names and locks ---------------------------------------------------------------------------

def test_default_names_are_unique_within_one_second(tmp_path):
    from cluster.folder.record import claim_sweep

    names = set()
    for _ in range(30):
        name, lock = claim_sweep(str(tmp_path), None, "edge-data-per-class")
        lock.release()
        names.add(name)
    assert len(names) == 30 and len(list(tmp_path.iterdir())) == 30


def test_explicit_name_taken_is_refused(tmp_path):
    from cluster.folder.record import claim_sweep

    _, lock = claim_sweep(str(tmp_path), "mine", "x")
    with pytest.raises(ConfigError, match="already exists"):
        claim_sweep(str(tmp_path), "mine", "x")
    lock.release()


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from cluster.folder.locks import SweepLock
    SweepLock(Path({folder!r}), "s").acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


def _hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), folder=str(folder))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_names_the_running_pid_and_a_dead_holder_is_taken_over(tmp_path):
    from cluster.folder.locks import SweepLock

    proc = _hold_lock(tmp_path)
    try:
        with pytest.raises(ConfigError, match=rf"sweep s is running \(pid {proc.pid} on "):
            SweepLock(tmp_path, "s").acquire()
    finally:
        proc.kill()
        proc.wait()
    lock = SweepLock(tmp_path, "s").acquire()  # the stale lock of a SIGKILLed holder
    assert f"pid {os.getpid()}" in (tmp_path / "sweep.lock").read_text()
    lock.release()


def test_store_lock_waits_for_its_holder_and_refuses_after_the_timeout(tmp_path):
    """The lock beside a sqlite store (file_lock): a second taker waits while it is held, gets it
    when the holder lets go, and after its timeout gets a message instead of waiting forever."""
    import threading

    from cluster.folder.locks import file_lock

    path = tmp_path / "mlflow.db.lock"
    results: dict[str, str] = {}

    def contend(timeout: float, key: str) -> None:
        try:
            with file_lock(path, timeout=timeout):
                results[key] = "locked"
        except ConfigError as exc:
            results[key] = str(exc)

    with file_lock(path):
        short = threading.Thread(target=contend, args=(0.3, "short"), daemon=True)
        short.start()
        short.join(15)
        assert not short.is_alive(), "a held lock was waited on past the taker's timeout"
        assert results == {"short": f"{path} has been locked by another process for 0 s"}
        long = threading.Thread(target=contend, args=(60.0, "long"), daemon=True)
        long.start()
        time.sleep(0.3)
        assert long.is_alive() and "long" not in results  # still waiting for the holder
    long.join(15)
    assert results["long"] == "locked"


STORE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from cluster.infra import tracking
    tracking.create_store({uri!r})
""")


@pytest.mark.slow  # ~30 s: two fresh interpreters importing MLflow on 2 cores
def test_two_processes_creating_one_new_sqlite_store(tmp_path):
    """Schema creation serialized by the lock beside the database: every process succeeds."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-c", STORE.format(root=str(ROOT), uri=uri)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    from mlflow.tracking import MlflowClient

    assert MlflowClient(uri).get_experiment_by_name("Default") is not None


# ---- resume: Tune state, lock, parent status ---------------------------------------------------

@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables (creating one takes seconds: copied per test)."""
    from cluster.infra.tracking import create_store

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    create_store(f"sqlite:///{db}")
    return db


@pytest.fixture
def fake_sweep(tmp_path, empty_store):
    """A sweep folder as `sweep run` leaves it (sweep.json, tuner.pkl, experiment state), with its
    parent run FINISHED in a real sqlite store; no Ray."""
    import shutil

    from mlflow.tracking import MlflowClient

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"

    from cluster.folder import tune_state
    from cluster.folder.record import SWEEP_FILE, SweepRecord

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("edge-data-per-class")
    parent = client.create_run(exp_id, tags={"role": "sweep", "sweep": "fs"}).info.run_id
    client.set_terminated(parent, "FINISHED")
    storage = tmp_path / "rr"
    folder = storage / "fs"
    folder.mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"harmless": 1}))
    (folder / "experiment_state-x.json").write_text("{}")
    meta = {"name": "fs", "experiment": "edge-data-per-class", "tracking_uri": tracking_uri, "experiment_id": exp_id,
            "parent_run_id": parent, "resources": {"cpu": 1, "gpu": 0}, "storage_path": str(storage),
            "git_sha": "x", "swept_keys": [], "n_trials": 1, "options": {"experiment": "edge-data-per-class"}}
    digest = tune_state.tuner_hash(folder)
    meta[tune_state.TAG_TUNER_SHA] = digest
    record = SweepRecord.from_json(dict(meta))
    record.record_exit_state()  # the manifest of every file, as the driver writes it at exit
    meta = record.to_json()
    client.set_tag(parent, tune_state.TAG_TUNER_SHA, digest)
    assert (folder / SWEEP_FILE).exists()
    return SimpleNamespace(folder=folder, storage=storage, client=client, parent=parent, meta=meta)


def _resume(fs, capsys, *extra) -> tuple[int, str]:
    from cluster.cli import main

    code = main(["resume", "fs", "--storage-path", str(fs.storage), *extra])
    return code, capsys.readouterr().err


def _payload(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_Mkdir(str(marker))))


@pytest.mark.parametrize("tamper, message", [
    ("tuner-replaced", "tuner.pkl changed since the sweep started"),
    ("state-replaced", "experiment_state-x.json changed after the sweep's driver exited"),
    ("state-added", "searcher-state.pkl appeared after the sweep's driver exited"),
    ("group-writable", "writable by group or others"),
    ("other-owner", "belongs to another user"),
    ("symlinked-tuner", "is a symbolic link"),
    ("hash-record-edited", "differs from the one in the MLflow parent run"),
])
def test_resume_refuses_tampered_tune_state(fake_sweep, tamper, message, capsys, tmp_path, ray_shutdown):
    import ray

    from cluster.folder.record import write_meta

    fs, marker = fake_sweep, tmp_path / "pwned"
    if tamper == "tuner-replaced":
        _payload(fs.folder / "tuner.pkl", marker)
    elif tamper == "state-replaced":
        (fs.folder / "experiment_state-x.json").write_text('{"trial_data": []}')
    elif tamper == "state-added":
        _payload(fs.folder / "searcher-state.pkl", marker)
    elif tamper == "group-writable":
        os.chmod(fs.folder / "tuner.pkl", 0o664)
    elif tamper == "other-owner":
        if os.getuid() != 0:
            pytest.skip("only root can give a file away")
        os.chown(fs.folder / "experiment_state-x.json", 12345, 12345)
    elif tamper == "symlinked-tuner":
        _payload(tmp_path / "elsewhere.pkl", marker)
        (fs.folder / "tuner.pkl").unlink()
        (fs.folder / "tuner.pkl").symlink_to(tmp_path / "elsewhere.pkl")
    elif tamper == "hash-record-edited":
        _payload(fs.folder / "tuner.pkl", marker)
        from cluster.folder import tune_state

        write_meta(fs.folder, {**fs.meta, tune_state.TAG_TUNER_SHA: tune_state.tuner_hash(fs.folder),
                               "tune_state_at_exit": None})
    code, err = _resume(fs, capsys)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not marker.exists()
    assert not ray.is_initialized()
    assert fs.client.get_run(fs.parent).info.status == "FINISHED"


def test_resume_while_the_sweep_runs_is_refused(fake_sweep, capsys, ray_shutdown):
    import ray

    proc = _hold_lock(fake_sweep.folder)
    try:
        code, err = _resume(fake_sweep, capsys)
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and f"sweep fs is running (pid {proc.pid}" in err, err
    assert not ray.is_initialized()
    assert fake_sweep.client.get_run(fake_sweep.parent).info.status == "FINISHED"


@pytest.mark.parametrize("before", ["FINISHED", "KILLED", "FAILED"])
def test_failed_resume_gives_the_parent_its_status_back(fake_sweep, monkeypatch, before):
    from ray import tune

    from cluster.flow import resume
    from cluster.infra import ray_setup

    fs = fake_sweep
    fs.client.set_terminated(fs.parent, before)
    seen = []

    def fit(tuner, client, record, opts, guard):
        seen.append(client.get_run(record.parent_run_id).info.status)
        raise RuntimeError("the cluster went away")

    monkeypatch.setattr(ray_setup, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: True))
    monkeypatch.setattr(tune.Tuner, "restore", staticmethod(lambda *a, **k: object()))
    monkeypatch.setattr(resume, "fit_and_close", fit)
    with pytest.raises(RuntimeError, match="went away"):
        resume.resume_sweep("fs", str(fs.storage))
    assert seen == ["RUNNING"]  # RUNNING only once the resume really started
    assert fs.client.get_run(fs.parent).info.status == before


def test_resume_refused_before_restore_leaves_the_parent_alone(fake_sweep, monkeypatch):
    from ray import tune

    from cluster.flow import resume
    from cluster.infra import ray_setup

    monkeypatch.setattr(ray_setup, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: False))
    with pytest.raises(ConfigError, match="no Tune state"):
        resume.resume_sweep("fs", str(fake_sweep.storage))
    assert fake_sweep.client.get_run(fake_sweep.parent).info.status == "FINISHED"


def test_resume_honours_storage_path_of_a_moved_sweep(fake_sweep, tmp_path):
    import shutil

    from cluster.folder.record import find_sweep

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(str(fake_sweep.folder), moved / "fs")
    record = find_sweep("fs", str(moved))
    assert record.folder == moved / "fs" and record.parent_run_id == fake_sweep.parent
    with pytest.raises(ConfigError, match="no sweep named 'fs'"):
        find_sweep("fs", str(fake_sweep.storage))


@pytest.mark.parametrize("content, message", [
    ("{not json", "is damaged"), ('{"name": "fs"}', "is damaged"), ("", "is damaged")])
def test_damaged_sweep_json_is_a_message(tmp_path, content, message):
    from cluster.folder.record import find_sweep

    (tmp_path / "fs").mkdir()
    (tmp_path / "fs" / "sweep.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        find_sweep("fs", str(tmp_path))


# ---- corrupt checkpoints -----------------------------------------------------------------------

def _checkpoints(trial_dir: Path, states: dict[int, object]) -> None:
    import torch

    for i, state in states.items():
        d = trial_dir / f"checkpoint_{i:06d}"
        d.mkdir(parents=True)
        if isinstance(state, bytes):
            (d / "trial_state.pt").write_bytes(state)
        else:
            torch.save(state, d / "trial_state.pt")


@pytest.mark.parametrize("garbage", [b"", b"garbage" * 100, b"PK\x03\x04" + b"\x00" * 60])
def test_corrupt_latest_checkpoint_falls_back_to_an_older_one(tmp_path, garbage, capsys):
    from trainables.checkpoint import _NOTES, restore_state

    trial = tmp_path / "trial"
    _checkpoints(trial, {0: {"epoch": 3, "trainer": {}}, 1: {"epoch": 6, "trainer": {}}, 2: garbage})
    state = restore_state(SimpleNamespace(path=str(trial / "checkpoint_000002"), filesystem=None),
                          "trial_state.pt", "t1")
    assert state["epoch"] == 6
    assert "older checkpoint checkpoint_000001 (epoch 6)" in _NOTES.pop("t1")
    assert "corrupt checkpoint" in capsys.readouterr().err


def test_all_checkpoints_corrupt_or_hostile_start_over_without_running_anything(tmp_path):
    import torch

    from trainables.checkpoint import _NOTES, restore_state

    marker = tmp_path / "pwned"
    trial = tmp_path / "trial"
    _checkpoints(trial, {0: b"junk", 1: [1, 2, 3]})
    d = trial / "checkpoint_000002"
    d.mkdir()
    torch.save({"epoch": 1, "trainer": _Mkdir(str(marker))}, d / "trial_state.pt")
    assert restore_state(SimpleNamespace(path=str(d), filesystem=None), "trial_state.pt", "t2") is None
    assert not marker.exists()
    assert "no checkpoint" in _NOTES.pop("t2")


def test_fallback_is_tagged_on_the_trials_run(tracking_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    from trainables.checkpoint import TAG_CORRUPT, restore_state, tag_fallback
    from trainables.tracking import TrackingInfo

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("c")
    parent = client.create_run(exp_id).info.run_id
    child = client.create_run(exp_id, tags={"trial_id": "t3", "mlflow.parentRunId": parent}).info.run_id
    _checkpoints(tmp_path / "trial", {0: b"junk"})
    restore_state(SimpleNamespace(path=str(tmp_path / "trial" / "checkpoint_000000"), filesystem=None),
                  "trial_state.pt", "t3")
    tag_fallback(TrackingInfo(tracking_uri, exp_id, parent, "s", "c"), "t3")
    assert "corrupt checkpoint" in client.get_run(child).data.tags[TAG_CORRUPT]


# ---- interrupts --------------------------------------------------------------------------------

def test_mark_killed_leaves_no_run_running(tracking_uri):
    from mlflow.tracking import MlflowClient

    from cluster.infra.interrupts import mark_killed

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("k")
    parent = client.create_run(exp_id).info.run_id
    runs = {}
    for name, status, error in [("a", "RUNNING", None), ("b", "FINISHED", None), ("c", "FAILED", "KeyboardInterrupt"),
                                ("d", "FAILED", "RuntimeError: real"), ("e", "RUNNING", None)]:
        rid = client.create_run(exp_id, tags={"mlflow.parentRunId": parent, **({"error": error} if error else {})}).info.run_id
        if status != "RUNNING":
            client.set_terminated(rid, status)
        runs[name] = rid
    assert mark_killed(client, exp_id, parent, signal.SIGTERM) == 3
    status = {k: client.get_run(r).info.status for k, r in runs.items()}
    assert status == {"a": "KILLED", "b": "FINISHED", "c": "KILLED", "d": "FAILED", "e": "KILLED"}
    p = client.get_run(parent)
    assert p.info.status == "KILLED" and p.data.tags["stop_reason"] == "interrupted by SIGTERM"


def test_a_later_interrupt_or_driver_error_leaves_runs_an_earlier_interrupt_closed(tracking_uri):
    """After `sweep resume`, runs still carry the error tag of the attempt the first interrupt stopped
    ("KeyboardInterrupt..."). A second interrupt, or a driver error, must not touch them: a trial
    that then completed stays FINISHED, one the first interrupt marked KILLED keeps its reason and
    end time; only what is RUNNING now is marked."""
    from mlflow.tracking import MlflowClient

    from cluster.infra.interrupts import mark_killed, mark_unfinished
    from core import store_schema as S

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("k2")
    parent = client.create_run(exp_id).info.run_id
    runs = {}
    for name, status, stop in [("completed-on-resume", "FINISHED", None),
                               ("killed-first-time", "KILLED", "interrupted by SIGINT"), ("running", "RUNNING", None)]:
        tags = {S.TAG_PARENT_RUN_ID: parent, S.TAG_ERROR: "KeyboardInterrupt: SIGINT"}
        rid = client.create_run(exp_id, tags={**tags, **({S.TAG_STOP_REASON: stop} if stop else {})}).info.run_id
        if status != "RUNNING":
            client.set_terminated(rid, status, end_time=1_000)
        runs[name] = rid

    def state():
        return {k: (client.get_run(r).info.status, client.get_run(r).info.end_time,
                    client.get_run(r).data.tags.get(S.TAG_STOP_REASON)) for k, r in runs.items() if k != "running"}
    before = state()
    assert mark_killed(client, exp_id, parent, signal.SIGTERM) == 1
    assert client.get_run(runs["running"]).info.status == "KILLED"
    assert state() == before == {"completed-on-resume": ("FINISHED", 1_000, None),
                                 "killed-first-time": ("KILLED", 1_000, "interrupted by SIGINT")}
    assert mark_unfinished(client, exp_id, parent, "driver stopped: disk full", status="FAILED",
                           status_reason="driver_error") == 0
    assert state() == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_outside_fit_raises_with_its_number(sig):
    from cluster.infra.interrupts import Interrupted, SignalGuard

    def signal_interrupt_tune_run(signum, frame):  # Tune leaves its handler installed after a fit
        raise AssertionError("a signal outside fit must not go to Tune's stop")

    old = signal.signal(signal.SIGUSR1, signal_interrupt_tune_run)
    try:
        with pytest.raises(Interrupted) as info, SignalGuard() as guard:
            os.kill(os.getpid(), sig)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert info.value.signum == sig and guard.exit_code == 128 + sig
    assert os.environ.get("TUNE_DISABLE_SIGINT_HANDLER") is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_during_fit_asks_tune_to_stop_the_second_aborts(sig):
    from cluster.infra.interrupts import Interrupted, SignalGuard

    asked = []

    def signal_interrupt_tune_run(signum, frame):  # the name Tune's handler has
        asked.append(signum)

    old = signal.getsignal(signal.SIGUSR1)
    try:
        with SignalGuard() as guard, guard.fitting():
            signal.signal(signal.SIGUSR1, signal_interrupt_tune_run)  # what Tune's fit installs
            os.kill(os.getpid(), sig)
            time.sleep(0.5)
            assert asked == [signal.SIGUSR1] and guard.signum == sig
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            with pytest.raises(Interrupted):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
        assert guard.exit_code == 128 + sig
    finally:
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_before_this_fits_tune_handler_is_not_lost_to_the_last_fits(sig):
    """Ctrl-C right after a fit starts, before Tune installs its handler: the handler an earlier fit
    of this process left (an adaptive wave, a study's sweep) must not take the signal (its event is
    watched by nobody, the trials would run to the end); the signal stops the sweep at once."""
    from cluster.infra.interrupts import Interrupted, SignalGuard

    stale = []

    def signal_interrupt_tune_run(signum, frame):  # the earlier fit's handler, left installed
        stale.append(signum)

    old = signal.signal(signal.SIGUSR1, signal_interrupt_tune_run)
    try:
        with pytest.raises(Interrupted) as info, SignalGuard() as guard, guard.fitting():
            os.kill(os.getpid(), sig)
            time.sleep(1)
        assert stale == [] and info.value.signum == sig and guard.exit_code == 128 + sig
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_signal_during_fit_with_a_foreign_sigusr1_handler_is_not_taken_for_tunes():
    """Only Tune's own handler (by its name) gets the graceful stop; any other SIGUSR1 handler
    installed during a fit is not called and the signal stops the sweep at once."""
    from cluster.infra.interrupts import Interrupted, SignalGuard

    called = []

    def user_handler(signum, frame):  # a name that is not Tune's (and sorts after it)
        called.append(signum)

    old = signal.getsignal(signal.SIGUSR1)
    try:
        with pytest.raises(Interrupted), SignalGuard() as guard, guard.fitting():
            signal.signal(signal.SIGUSR1, user_handler)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert called == [] and guard.signum == signal.SIGINT
    finally:
        signal.signal(signal.SIGUSR1, old)


# ---- local Ray settings ------------------------------------------------------------------------

def test_local_ray_gets_no_runtime_env_and_binds_loopback(monkeypatch):
    import ray
    from ray._private import ray_constants

    from cluster.infra import ray_setup

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-123")
    calls = []

    def init(*a, **kw):
        calls.append((kw, ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(ray_setup.LOOPBACK_ENV)))

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_setup.init_ray(None)
    kw, enabled, env = calls[0]
    assert kw.get("runtime_env") is None and "pw-123" not in repr(kw)
    assert enabled is False and env == "0"
    assert ray_constants.ENABLE_RAY_CLUSTER == before and os.environ.get(ray_setup.LOOPBACK_ENV) is None


def test_remote_cluster_still_gets_credentials_as_env_vars(monkeypatch):
    import ray

    from cluster.infra import ray_setup

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-123")
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: calls.append(kw))
    ray_setup.init_ray("10.0.0.1:6379", ship_code=False)
    assert calls[0]["runtime_env"] == {"env_vars": {"MLFLOW_TRACKING_PASSWORD": "pw-123"}}


def test_a_real_mlflow_server_is_recognised(tmp_path):
    """The not-MLflow check accepts MLflow's own answers (found, not found, auth required)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cluster.infra.tracking import check_tracking_uri

    answers = iter([(200, {"experiment": {"name": "Default"}}), (404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}),
                    (401, {"error_code": "UNAUTHENTICATED"})])

    class Mlflowish(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            code, body = (200, "OK") if self.path == "/health" else next(answers)
            raw = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Mlflowish)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        for _ in range(3):
            assert check_tracking_uri(uri) == uri
    finally:
        server.shutdown()
        server.server_close()


def test_a_driver_error_leaves_its_traceback_in_the_driver_log(tmp_path):
    """A bug or library error stopping the driver: the console gets one line naming the log, the
    driver log gets the whole traceback; faults of the machine (full disk, closed console) keep
    their one line only."""
    import errno
    from types import SimpleNamespace

    from cluster.flow.finish import _traceback_to_log

    log = tmp_path / "driver.log"
    log.write_text("ray says hello\n")
    record = SimpleNamespace(name="s1", driver_log=str(log))
    try:
        {}["val_acc"]
    except KeyError as exc:
        said = _traceback_to_log(record, exc)
    assert said == f" (the traceback is in {log})"
    text = log.read_text()
    assert text.startswith("ray says hello\nsweep s1: stopped by this error:\nTraceback")
    assert "KeyError: 'val_acc'" in text and 'in test_a_driver_error_leaves' in text
    full = OSError(errno.ENOSPC, "No space left on device")
    assert _traceback_to_log(record, full) == "" and log.read_text() == text
    assert _traceback_to_log(SimpleNamespace(name="s2", driver_log=None), KeyError("x")) == ""
    assert _traceback_to_log(SimpleNamespace(name="s3", driver_log=str(tmp_path / "gone" / "d.log")), KeyError("x")) == ""


def test_a_cut_short_tune_experiment_state_is_refused_by_name(tmp_path):
    """Ray writes experiment_state-*.json in place; a disk that filled meanwhile cuts it short.
    The newest one (the one Tune restores) must parse; an older damaged one does not matter."""
    from cluster.folder.tune_state import check_experiment_state

    old = tmp_path / "experiment_state-2026-12-04_10-00-00.json"
    new = tmp_path / "experiment_state-2026-12-04_11-00-00.json"
    old.write_text('{"trial_data": [')
    new.write_text('{"trial_data": []}')
    check_experiment_state(tmp_path)  # the newest is whole
    new.write_bytes(b'{"trial_data": [["{\\"config\\": ')  # cut at 16384 bytes in the real case
    with pytest.raises(ConfigError, match=f"{new.name} is cut short or damaged .*sweep run EXPERIMENT --name NEW"):
        check_experiment_state(tmp_path)
    check_experiment_state(tmp_path / "empty-folder")  # no state at all: nothing to check


def test_a_tune_error_on_a_full_storage_is_reported_as_the_full_disk(tmp_path, monkeypatch):
    """Tune fails on its own files the full disk truncated (EOFError from an empty error pickle):
    the driver says the disk is full, naming the sweep folder, and keeps the original as cause."""
    import shutil
    from types import SimpleNamespace

    from cluster.flow import finish

    record = SimpleNamespace(name="s1", storage_path=str(tmp_path), folder=tmp_path / "s1")
    record.folder.mkdir()
    tune_error = EOFError("Ran out of input")
    usage = SimpleNamespace(total=64 << 20, used=64 << 20, free=4096)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)
    full = finish.full_storage(record, tune_error)
    assert finish.describe(full) == f"no space left on the device writing {record.folder} (disk full or quota reached)"
    assert full.__cause__ is tune_error
    usage.free = finish.FULL_BELOW  # room left: the error is what it says
    assert finish.full_storage(record, tune_error) is tune_error
    cloud = SimpleNamespace(name="s2", storage_path="s3://bucket/rr", folder=None)
    usage.free = 0
    assert finish.full_storage(cloud, tune_error) is tune_error
