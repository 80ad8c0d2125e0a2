"""`sweep resume` after a full disk cut Tune's experiment state short (issue 24, case 3).

Ray's Tune writes `experiment_state-*.json` in place; a disk that fills meanwhile cuts it short.
The driver keeps its own last good copy (cluster.folder.tune_copy, named and hashed by the MLflow
parent run's tag) and `sweep resume` restores it: the sweep then completes with every trial
FINISHED, every epoch logged once and the metrics of an uninterrupted run. Without a good copy
(or with one that does not match its record) the resume is refused as before.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from cluster.folder import tune_copy
from cluster.folder.tune_state import sha256
from core.errors import ConfigError
from test_resume_fast import local_ray  # noqa: F401 (the fixture)

S1, S2 = "2026-12-04_10-00-00", "2026-12-04_11-00-00"
# How a trial's checkpoint path shows in Tune's experiment state (inside a pickled, hex-encoded field)
CHECKPOINT_0, CHECKPOINT_1 = b"checkpoint_000000".hex(), b"checkpoint_000001".hex()


def _staging(tmp_path: Path, session: str, trials: int) -> Path:
    staging = tmp_path / f"staging-{session}"
    staging.mkdir()
    (staging / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": list(range(trials))}))
    (staging / f"basic-variant-state-{session}.json").write_bytes(pickle.dumps({"counter": trials}))  # Tune pickles it
    (staging / "tuner.pkl").write_bytes(b"not copied")
    (staging / f"tmp-basic-variant-state-{session}.json").write_text("half")
    (staging / "train_0001").mkdir()  # a trial folder: not copied
    return staging


def _folder_with_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "sweep"
    folder.mkdir()
    staging = _staging(tmp_path, S1, trials=2)
    files = tune_copy.staged_files(staging)
    assert [p.name for p in files] == [f"basic-variant-state-{S1}.json", f"experiment_state-{S1}.json"]
    name, digest = tune_copy.write_copy(folder, files)
    assert digest == sha256(folder / tune_copy.COPY_ROOT / name / tune_copy.INDEX)
    # Tune went on in a later session, then the full disk cut its experiment state at 16 KiB
    (folder / "tuner.pkl").write_bytes(b"the tuner")
    (folder / f"experiment_state-{S1}.json").write_text(json.dumps({"trial_data": [0, 1, 2]}))
    (folder / f"basic-variant-state-{S1}.json").write_bytes(pickle.dumps({"counter": 3}))
    (folder / f"basic-variant-state-{S2}.json").write_bytes(pickle.dumps({"counter": 4}))
    (folder / f"experiment_state-{S2}.json").write_bytes(b'{"trial_data": [["{\\"config\\": ')
    return folder, {tune_copy.TAG_COPY: f"{name} {digest}"}


def test_a_cut_short_state_is_restored_from_the_drivers_good_copy(tmp_path):
    folder, tags = _folder_with_copy(tmp_path)
    assert tune_copy.cut_short(folder)[0].name == f"experiment_state-{S2}.json"
    said = tune_copy.repair(folder, tags)
    assert said.startswith(f"repaired experiment_state-{S2}.json (cut short: JSONDecodeError")
    assert f"removed the newer, partial basic-variant-state-{S2}.json, experiment_state-{S2}.json" in said
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        f"basic-variant-state-{S1}.json", f"experiment_state-{S1}.json", "tuner.pkl"]
    assert json.loads((folder / f"experiment_state-{S1}.json").read_text()) == {"trial_data": [0, 1]}
    assert (folder / f"basic-variant-state-{S1}.json").read_bytes() == pickle.dumps({"counter": 2})
    assert (folder / "tuner.pkl").read_bytes() == b"the tuner"  # never replaced
    assert tune_copy.repair(folder, tags) is None  # whole now: nothing to repair


def test_a_json_searcher_state_named_pkl_is_whole(tmp_path):
    """The adaptive searcher saves JSON under Tune's `searcher-state-*.pkl` name: read as JSON, it is
    whole (read as a pickle, the resume 'repaired' it with an older copy and reran seeds); cut, it is not."""
    folder, _ = _folder_with_copy(tmp_path)
    (folder / f"experiment_state-{S2}.json").write_text('{"trial_data": []}')
    state = json.dumps({"finished": False, "cells": list(range(50))}).encode()
    (folder / f"searcher-state-{S2}.pkl").write_bytes(state)
    assert tune_copy.cut_short(folder) is None
    (folder / f"searcher-state-{S2}.pkl").write_bytes(state[:len(state) // 2])
    assert tune_copy.cut_short(folder)[0].name == f"searcher-state-{S2}.pkl"


@pytest.mark.parametrize("kind", ["basic-variant-state-{}.json", "searcher-state-{}.pkl"])
def test_other_state_files_cut_short_are_repaired_too(tmp_path, kind):
    """The sync into the sweep folder writes every state file in place: the searcher's too. Only
    the newest of each kind counts (the one Tune reads); pickles are read opcode by opcode, never
    unpickled."""
    folder, tags = _folder_with_copy(tmp_path)
    (folder / f"experiment_state-{S2}.json").write_text('{"trial_data": []}')
    (folder / f"searcher-state-{S1}.pkl").write_bytes(b"\x80\x05cut")  # older: Tune reads the newest only
    (folder / f"searcher-state-{S2}.pkl").write_bytes(pickle.dumps({"state": list(range(100))}))
    assert tune_copy.cut_short(folder) is None
    whole = (folder / kind.format(S2)).read_bytes()
    (folder / kind.format(S2)).write_bytes(whole[:len(whole) // 2])
    assert tune_copy.cut_short(folder)[0].name == kind.format(S2)
    said = tune_copy.repair(folder, tags)
    assert said.startswith(f"repaired {kind.format(S2)} (cut short: "), said
    assert not (folder / f"experiment_state-{S2}.json").exists() and not (folder / kind.format(S2)).exists()
    assert json.loads((folder / f"experiment_state-{S1}.json").read_text()) == {"trial_data": [0, 1]}


def test_an_intact_state_is_left_as_it_is(tmp_path):
    folder, tags = _folder_with_copy(tmp_path)
    (folder / f"experiment_state-{S2}.json").write_text('{"trial_data": []}')
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert tune_copy.repair(folder, tags) is None
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_a_temporary_tune_left_behind_is_not_a_cut_short_state(tmp_path):
    """An interrupt between Tune's write of `.{uuid}-tmp-NAME` and its rename leaves the temporary (seen
    after a real interrupted sweep): Tune never reads it, so resume neither repairs nor refuses for it."""
    folder, tags = _folder_with_copy(tmp_path)
    (folder / f"experiment_state-{S2}.json").write_text('{"trial_data": []}')
    (folder / f".0daf63b1-652f-432b-bdce-895181cfa5ef-tmp-basic-variant-state-{S2}.json").write_bytes(b"")
    (folder / f"tmp-experiment_state-{S2}.json").write_text("half")
    assert tune_copy.cut_short(folder) is None
    assert tune_copy.repair(folder, tags) is None


@pytest.mark.parametrize("damage", ["file", "index", "no-tag", "other-tag"])
def test_a_copy_that_does_not_match_its_record_is_not_restored(tmp_path, damage):
    from cluster.folder.tune_state import verify

    folder, tags = _folder_with_copy(tmp_path)
    copy = folder / tune_copy.COPY_ROOT / tags[tune_copy.TAG_COPY].split()[0]
    if damage == "file":
        (copy / f"basic-variant-state-{S1}.json").write_bytes(pickle.dumps({"counter": 99}))
        match = "is missing or changed since the driver copied it"
    elif damage == "index":
        (copy / tune_copy.INDEX).write_text("{}")
        match = "changed since the driver wrote it"
    elif damage == "no-tag":
        tags = {}
        match = "is cut short or damaged .*no good copy.*sweep run EXPERIMENT --name NEW"
    else:
        tags = {tune_copy.TAG_COPY: f"copy-gone {'0' * 64}"}
        match = "is cut short or damaged .*no good copy.*sweep run EXPERIMENT --name NEW"
    cut = (folder / f"experiment_state-{S2}.json").read_bytes()
    with pytest.raises(ConfigError, match=match):
        tune_copy.repair(folder, tags)
    with pytest.raises(ConfigError, match=match):
        verify(folder, None, None, tags)  # refused with the trust checks, before the lock and Ray
    assert (folder / f"experiment_state-{S2}.json").read_bytes() == cut  # nothing changed


def test_the_copy_is_made_only_from_whole_state(tmp_path):
    staging = _staging(tmp_path, S1, trials=1)
    (staging / f"experiment_state-{S1}.json").write_bytes(b'{"trial_data": [')
    assert tune_copy.staged_files(staging) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tune_copy.staged_files(empty) is None


def test_a_copy_the_full_disk_interrupts_leaves_the_previous_one(tmp_path, monkeypatch):
    import errno
    import os

    folder, tags = _folder_with_copy(tmp_path)
    before = sorted(p.name for p in (folder / tune_copy.COPY_ROOT).iterdir())
    staging = _staging(tmp_path, S2, trials=5)
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        tune_copy.write_copy(folder, tune_copy.staged_files(staging))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert sorted(p.name for p in (folder / tune_copy.COPY_ROOT).iterdir()) == before
    assert "repaired" in tune_copy.repair(folder, tags)


# -- a real sweep -----------------------------------------------------------------------------------
def test_resume_repairs_a_cut_short_state_and_completes_the_sweep(tmp_path, monkeypatch, local_ray, capsys):
    """A tiny sweep whose driver copies of Tune's state fail (a full disk) after the first one that
    names a checkpoint, interrupted after the second checkpoint; its newest experiment state then cut
    at 16 KiB as the full disk left it (the exit manifest recorded with it, as the failing driver does).
    `sweep resume` restores the driver's copy and completes: every trial FINISHED, each epoch
    logged once, the final metrics of each trial those of the same trial run uninterrupted."""
    import errno

    from mlflow.tracking import MlflowClient

    from cluster.cli import main
    from cluster.folder.record import SweepRecord
    from conftest import mlflow_runs
    from search_spaces import EXPERIMENTS
    from search_spaces.experiment import Experiment
    from test_faults import _assert_matches_reference
    from test_resume_fast import MLP, TINY, _each_epoch_once, _resumed_from_the_checkpoint, _run_interrupted

    name, exp, epochs = "cut-state", "fast-cut-state", 200  # a tiny epoch is ~10 ms: room for the interrupt to land
    monkeypatch.setitem(EXPERIMENTS, exp, Experiment(name=exp, description="tiny MLP", pairings=(MLP,),
                                                     fixed={**TINY, "epochs": epochs, "log_artifacts": True}, seeds=2))
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "rr"
    folder = storage / name
    real_copy, kept = tune_copy.write_copy, []

    def full_after_first_checkpoint(where, files):
        """The disk fills once a copy names a checkpoint: every later copy fails (the old one stays)."""
        if kept:
            raise OSError(errno.ENOSPC, "No space left on device")
        made = real_copy(where, files)
        if CHECKPOINT_0.encode() in next(where.glob(f"{tune_copy.COPY_ROOT}/{made[0]}/experiment_state-*")).read_bytes():
            kept.append(made[0])
        return made

    monkeypatch.setattr(tune_copy, "write_copy", full_after_first_checkpoint)
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")  # Tune saves its state every step (so the driver copies it)
    _run_interrupted(["run", exp, "--name", name, "--tracking-uri", uri, "--storage-path", str(storage)], folder)
    monkeypatch.setattr(tune_copy, "write_copy", real_copy)
    parents, children = mlflow_runs(uri, exp)
    assert kept and parents[0].data.tags.get(tune_copy.TAG_COPY, "").startswith(kept[0] + " ")
    copied = next((folder / tune_copy.COPY_ROOT / kept[0]).glob("experiment_state-*")).read_text()
    assert CHECKPOINT_0 in copied and CHECKPOINT_1 not in copied  # the copy is older than the state Tune went on to save ...
    logged = [max(m.step for m in MlflowClient(uri).get_metric_history(c.info.run_id, "train_loss")) for c in children]
    assert max(logged) >= 10, logged  # ... and than what the trials logged: resumed trials redo epochs 6-10
    assert tune_copy.cut_short(folder) is None  # Tune's own files (a pickle named .json among them) are whole
    newest = tune_copy.newest_state(folder)
    text = newest.read_bytes()
    newest.write_bytes(text[:min(16384, len(text) // 2)])  # what the full disk left
    SweepRecord.load(folder).record_exit_state()
    capsys.readouterr()

    assert main(["resume", name, "--storage-path", str(storage)]) == 0
    out = capsys.readouterr().out
    assert f"sweep {name}: repaired {newest.name} (cut short: JSONDecodeError" in out, out
    parents, children = mlflow_runs(uri, exp)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and len({c.data.tags["trial_id"] for c in children}) == 2
    assert all(c.info.status == "FINISHED" and c.data.tags["status_reason"] == "completed" for c in children)
    _each_epoch_once(uri, children, epochs)
    _resumed_from_the_checkpoint(folder, TINY["report_every"], epochs)  # from the copy's checkpoint, not from scratch
    _assert_matches_reference(MlflowClient(uri), children, tmp_path)


def test_the_keeper_copies_once_per_save_and_keeps_the_previous_copy_when_the_tag_fails(tmp_path, monkeypatch):
    """TuneStateKeeper (the driver's Tune callback): a copy per save of Tune's state, named by the
    parent run's tag only once it is whole; a copy whose tag cannot be written is removed."""
    import os
    from types import SimpleNamespace

    import mlflow.tracking

    from cluster.tuner.callbacks import TuneStateKeeper

    tags, fail = {}, []

    class Client:
        def __init__(self, tracking_uri):
            pass

        def set_tag(self, run_id, key, value):
            if fail:
                raise ConnectionError("the store does not answer")
            tags[(run_id, key)] = value

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Client)
    folder, staging = tmp_path / "sweep", _staging(tmp_path, S1, trials=1)
    folder.mkdir()
    storage = SimpleNamespace(storage_filesystem=SimpleNamespace(type_name="local"), experiment_fs_path=str(folder),
                              experiment_driver_staging_path=str(staging))
    trials = [SimpleNamespace(storage=storage)]
    keeper = TuneStateKeeper("sqlite:///unused.db", "parent")
    keeper.on_step_end(0, [])  # no trial yet: nothing
    assert not (folder / tune_copy.COPY_ROOT).exists()
    keeper.on_step_end(1, trials)
    first = tags[("parent", tune_copy.TAG_COPY)]
    assert tune_copy.good_copy(folder, {tune_copy.TAG_COPY: first}) is not None
    keeper.on_step_end(2, trials)  # Tune did not save again: no new copy
    assert tags[("parent", tune_copy.TAG_COPY)] == first and keeper.copies == 1
    state = staging / f"experiment_state-{S1}.json"
    state.write_text(json.dumps({"trial_data": [0, 1, 2]}))
    os.utime(state, ns=(1, 1))
    fail.append(True)
    keeper.on_step_end(3, trials)  # the tag cannot be written: the new copy goes, the old one stays
    assert [p.name for p in (folder / tune_copy.COPY_ROOT).iterdir()] == [first.split()[0]]
    fail.clear()
    os.utime(state, ns=(2, 2))
    keeper.on_step_end(4, trials)
    second = tags[("parent", tune_copy.TAG_COPY)]
    assert second != first and [p.name for p in (folder / tune_copy.COPY_ROOT).iterdir()] == [second.split()[0]]
    copy, index = tune_copy.good_copy(folder, {tune_copy.TAG_COPY: second})
    assert json.loads((copy / index["experiment_state"]).read_text()) == {"trial_data": [0, 1, 2]}
