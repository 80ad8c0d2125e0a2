"""Faults of the machine in a real sweep (issue 24, case 3): an injected ENOSPC while Tune saves its
state, a real small filesystem (a 64 MiB tmpfs) filled mid-sweep, and a console that closes after
the header (`| head -1`). Each ends with exit 1, one message without a traceback, no run left
RUNNING, and a `sweep resume` that finishes the sweep with every epoch logged exactly once (after
the real full filesystem too, when Tune's state was cut short: from the driver's last good copy)."""
from __future__ import annotations

import errno
import io
import time
from pathlib import Path

import pytest

from cluster.cli import main
from conftest import mlflow_runs
from search_spaces import EXPERIMENTS
from search_spaces.experiment import Experiment
from test_resume_fast import MLP, TINY, _each_epoch_once, local_ray  # noqa: F401

EPOCHS = 30


def _tiny(monkeypatch, exp: str) -> None:
    monkeypatch.setitem(EXPERIMENTS, exp, Experiment(name=exp, description="tiny MLP", pairings=(MLP,),
                                                     fixed={**TINY, "epochs": EPOCHS}, seeds=2))


def _finish_by_resume(uri: str, exp: str, name: str, storage: Path) -> None:
    assert main(["resume", name, "--storage-path", str(storage)]) == 0
    parents, children = mlflow_runs(uri, exp)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and len({c.data.tags["trial_id"] for c in children}) == 2
    assert all(c.info.status == "FINISHED" and c.data.tags["status_reason"] == "completed" for c in children)
    _each_epoch_once(uri, children, EPOCHS)


@pytest.mark.slow
def test_disk_full_while_tune_saves_its_state(tmp_path, monkeypatch, capsys, local_ray):
    from ray.tune.execution import tune_controller

    name, exp = "enospc", "fast-enospc"
    _tiny(monkeypatch, exp)
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "rr"
    original = tune_controller.TuneController.save_to_dir

    def full_disk(self):
        if any((storage / name).glob("*/checkpoint_*")):
            raise OSError(errno.ENOSPC, "No space left on device", str(storage / name / "experiment_state.json"))
        return original(self)

    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")  # save the state every step, so the fault hits mid-sweep
    monkeypatch.setattr(tune_controller.TuneController, "save_to_dir", full_disk)
    code = main(["run", exp, "--name", name, "--tracking-uri", uri, "--storage-path", str(storage)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"sweep {name}: stopped: no space left on the device" in err and "Traceback" not in err, err
    assert f"sweep resume {name}" in err
    parents, children = mlflow_runs(uri, exp)
    assert parents[0].info.status == "FAILED", (err, parents[0].data.tags, [(c.info.status, c.data.tags.get("status_reason")) for c in children])
    assert "RUNNING" not in {c.info.status for c in children}
    monkeypatch.setattr(tune_controller.TuneController, "save_to_dir", original)  # space freed
    _finish_by_resume(uri, exp, name, storage)


class ClosedAfterFirstLine(io.TextIOBase):
    """stdout of `sweep run ... | head -1`: the first line goes through, then the pipe is closed."""

    def __init__(self):
        self.lines = 0

    def write(self, text: str) -> int:
        if self.lines >= 1:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.lines += text.count("\n")
        return len(text)


@pytest.mark.slow
def test_console_closed_mid_sweep(tmp_path, monkeypatch, capsys, local_ray):
    import sys

    name, exp = "headed", "fast-head"
    _tiny(monkeypatch, exp)
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "rr"
    t = time.monotonic()
    with capsys.disabled():
        err = io.StringIO()
        monkeypatch.setattr(sys, "stdout", ClosedAfterFirstLine())
        monkeypatch.setattr(sys, "stderr", err)
        code = main(["run", exp, "--name", name, "--tracking-uri", uri, "--storage-path", str(storage)])
        monkeypatch.undo()
    _tiny(monkeypatch, exp)
    text = err.getvalue()
    assert code == 1, text
    assert "the console was closed" in text and "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1, text
    parents, children = mlflow_runs(uri, exp)
    assert parents[0].info.status == "FAILED" and "RUNNING" not in {c.info.status for c in children}
    assert time.monotonic() - t < 300
    _finish_by_resume(uri, exp, name, storage)


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 64 MiB tmpfs (root only: `mount` needs CAP_SYS_ADMIN, as on CI); unmounted after."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_once_checkpointed(sweep_dir: Path, filler: Path, stop) -> None:
    """Once a trial has saved a checkpoint, fill the filesystem to the last byte (a real ENOSPC for
    every later write of Tune, the trials and the driver)."""
    while not stop.is_set():
        if any(sweep_dir.glob("*/checkpoint_*")):
            try:
                with open(filler, "wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            except OSError:
                pass
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_a_real_full_filesystem_under_the_storage(tmp_path, monkeypatch, capsys, local_ray, small_filesystem):
    import threading

    name, exp = "tmpfs-full", "fast-tmpfs"
    _tiny(monkeypatch, exp)
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", small_filesystem / "rr"
    filler, stop = small_filesystem / "filler", threading.Event()
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")  # Tune saves its state every step: it meets the full disk
    watcher = threading.Thread(target=_fill_once_checkpointed, args=(storage / name, filler, stop), daemon=True)
    watcher.start()
    try:
        code = main(["run", exp, "--name", name, "--tracking-uri", uri, "--storage-path", str(storage)])
    finally:
        stop.set()
        watcher.join(5)
    err = capsys.readouterr().err
    assert filler.exists(), "the filesystem was never filled: the sweep ended before its first checkpoint"
    assert code == 1, err
    assert "no space left on the device" in err and "Traceback" not in err, err
    assert f"sweep resume {name}" in err
    parents, children = mlflow_runs(uri, exp)
    assert parents[0].info.status == "FAILED", (err, [(c.info.status, c.data.tags.get("status_reason")) for c in children])
    assert "RUNNING" not in {c.info.status for c in children}
    filler.unlink()  # space freed
    import shutil

    free = shutil.disk_usage(small_filesystem).free
    assert free > 32 * 2**20, f"only {free} bytes free after the filler was removed"
    # Ray writes its state files in place: if the disk filled while they were copied into the sweep
    # folder, one is cut short (seen: experiment_state-*.json cut at 16384 bytes). The resume then puts
    # the driver's last good copy back, saying so, and finishes the sweep either way.
    from cluster.folder import tune_copy

    cut = tune_copy.cut_short(storage / name)
    capsys.readouterr()
    _finish_by_resume(uri, exp, name, storage)
    out = capsys.readouterr().out
    if cut is not None:
        assert f"sweep {name}: repaired {cut[0].name} (cut short: " in out, out
