"""Trust nothing in a sweep folder the driver did not write (issue 24, case 1), without Ray: the
manifest recorded at exit (every file by name and hash), symlinks anywhere (sweep.lock, sweep.json,
driver.log, trial folders), non-plain files, damaged sweep.json; each refused with exit 2, no
traceback, nothing unpickled, no link target written, Ray not started and the parent run's
status as it was."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="reads and writes MLflow stores")
from test_hostile_units import _Mkdir, _resume, empty_store, fake_sweep  # noqa: E402,F401


def _trial(fs) -> Path:
    """A trial folder with a checkpoint, as Tune leaves it, recorded in the exit manifest."""
    from cluster.folder.record import SweepRecord

    trial = fs.folder / "train_abc_00000_0_2026-01-01"
    (trial / "checkpoint_000000").mkdir(parents=True)
    (trial / "checkpoint_000000" / "trial_state.pt").write_bytes(b"weights")
    (trial / "params.pkl").write_bytes(pickle.dumps({"lr": 0.1}))
    (trial / "result.json").write_text("{}\n")
    SweepRecord.load(fs.folder).record_exit_state()
    return trial


def _refused(fs, capsys, marker: Path | None = None, *needles: str) -> str:
    import ray

    code, err = _resume(fs, capsys)
    assert code == 2, err
    for needle in needles:
        assert needle in err, err
    assert "Traceback" not in err and not ray.is_initialized()
    assert marker is None or not marker.exists()
    assert fs.client.get_run(fs.parent).info.status == "FINISHED"
    return err


@pytest.mark.parametrize("where", ["basic-variant-state-zzzz.json", "train_abc_00000_0_2026-01-01/params.pkl",
                                   "train_abc_00000_0_2026-01-01/checkpoint_000000/extra.pkl",
                                   "new_trial/anything"])
def test_a_file_the_driver_did_not_record_is_refused(fake_sweep, capsys, tmp_path, where, ray_shutdown):
    fs, marker = fake_sweep, tmp_path / "pwned"
    _trial(fs)
    target = fs.folder / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pickle.dumps(_Mkdir(str(marker))))
    verb = "changed" if where.endswith("params.pkl") else "appeared"
    _refused(fs, capsys, marker, f"{target} {verb} after the sweep's driver exited")


def test_a_removed_state_file_is_refused_a_changed_checkpoint_payload_is_not(fake_sweep, monkeypatch):
    from cluster.folder.record import SweepRecord
    from core.errors import ConfigError

    fs = fake_sweep
    trial = _trial(fs)
    (trial / "checkpoint_000000" / "trial_state.pt").write_bytes(b"garbage")  # read weights_only, corrupt-tolerant
    SweepRecord.load(fs.folder).verify({})
    (trial / "result.json").unlink()
    with pytest.raises(ConfigError, match="result.json was removed after the sweep's driver exited"):
        SweepRecord.load(fs.folder).verify({})


def test_planted_sweep_lock_symlink_is_refused_and_its_target_kept(fake_sweep, capsys, tmp_path, ray_shutdown):
    fs = fake_sweep
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = fs.folder / "sweep.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    _refused(fs, capsys, None, "sweep.lock is a symbolic link")
    assert victim.read_text() == "precious"


def test_lock_symlink_refused_by_the_lock_itself(tmp_path):
    from cluster.folder.locks import SweepLock, file_lock
    from core.errors import ConfigError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "sweep.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        SweepLock(tmp_path, "s").acquire()
    (tmp_path / "db.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        with file_lock(tmp_path / "db.lock"):
            pass
    assert victim.read_text() == "precious"
    (tmp_path / "d.lock").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a lock file"):
        with file_lock(tmp_path / "d.lock"):
            pass


def test_sweep_lock_a_directory_is_a_message(fake_sweep, capsys, ray_shutdown):
    fs = fake_sweep
    (fs.folder / "sweep.lock").unlink(missing_ok=True)
    (fs.folder / "sweep.lock").mkdir()
    _refused(fs, capsys, None, "sweep.lock")


@pytest.mark.parametrize("what", ["trial-folder", "driver.log", "sweep.json", "sweep-folder"])
def test_symlinks_anywhere_are_refused(fake_sweep, capsys, tmp_path, what, ray_shutdown):
    fs = fake_sweep
    trial = _trial(fs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if what == "trial-folder":  # Tune's trial folder replaced by a link to a world-writable folder
        os.chmod(elsewhere, 0o777)
        for p in trial.rglob("*"):
            if p.is_file():
                (elsewhere / p.relative_to(trial)).parent.mkdir(parents=True, exist_ok=True)
                (elsewhere / p.relative_to(trial)).write_bytes(p.read_bytes())
        import shutil

        shutil.rmtree(trial)
        trial.symlink_to(elsewhere)
        needle = f"{trial} is a symbolic link"
    elif what == "driver.log":
        (elsewhere / "victim").write_text("keep")
        (fs.folder / "driver.log").symlink_to(elsewhere / "victim")
        needle = "driver.log is a symbolic link"
    elif what == "sweep.json":
        (elsewhere / "sweep.json").write_bytes((fs.folder / "sweep.json").read_bytes())
        (fs.folder / "sweep.json").unlink()
        (fs.folder / "sweep.json").symlink_to(elsewhere / "sweep.json")
        needle = "sweep.json is a symbolic link"
    else:
        real = fs.storage / "real-fs"
        fs.folder.rename(real)
        fs.folder.symlink_to(real)
        needle = "is a symbolic link"
    _refused(fs, capsys, None, needle)
    if what == "driver.log":
        assert (elsewhere / "victim").read_text() == "keep"


def test_a_fifo_in_the_folder_is_refused(fake_sweep, capsys, ray_shutdown):
    os.mkfifo(fake_sweep.folder / "experiment_state-y.json")
    _refused(fake_sweep, capsys, None, "not a plain file or folder")


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "a JSON list, not an object"),
    ('{"name": "fs"}', "'tracking_uri' missing"),
    ("\xff\xfe", "not JSON"),
    ("{" * 100_000, "not JSON"),
])
def test_damaged_sweep_json_names_the_path_and_what_to_do(fake_sweep, capsys, content, needle, ray_shutdown):
    path = fake_sweep.folder / "sweep.json"
    path.write_bytes(content.encode("latin1"))
    err = _refused(fake_sweep, capsys, None, needle, str(path), "start the sweep again")
    assert "is damaged" in err


def test_manifest_records_every_file_not_a_list_of_names(fake_sweep):
    fs = fake_sweep
    _trial(fs)
    meta = json.loads((fs.folder / "sweep.json").read_text())
    recorded = set(meta["tune_state_at_exit"])
    assert {"tuner.pkl", "experiment_state-x.json", "train_abc_00000_0_2026-01-01/params.pkl",
            "train_abc_00000_0_2026-01-01/result.json",
            "train_abc_00000_0_2026-01-01/checkpoint_000000/trial_state.pt"} == recorded
