"""SweepRecord: the typed state of a sweep, as its folder's sweep.json holds it (no Ray, no MLflow)."""
from __future__ import annotations

import json

import pytest

from cluster.folder import tune_state
from cluster.folder.record import SWEEP_FILE, SweepRecord, find_sweep, write_meta
from core.errors import ConfigError

# sweep.json exactly as the driver before SweepRecord wrote it (after a clean exit).
WRITTEN_BEFORE = {
    "name": "old", "experiment": "edge-data-per-class", "tracking_uri": "sqlite:///x/mlflow.db", "experiment_id": "1",
    "parent_run_id": "abc", "resources": {"cpu": 1.0, "gpu": 0.0}, "storage_path": "STORAGE", "git_sha": "47a8f2d",
    "swept_keys": ["pairing", "data_per_class"], "n_trials": 8,
    "options": {"experiment": "edge-data-per-class", "smoke": True, "pack": 1, "verbose": False},
    "metric": ["val_acc", "max"], "driver_log": "STORAGE/old/driver.log",
    "tuner_pkl_sha256": "0" * 64, "tune_state_at_exit": {"tuner.pkl": "0" * 64},
}


def _write(tmp_path, data) -> None:
    folder = tmp_path / data["name"]
    folder.mkdir()
    write_meta(folder, json.loads(json.dumps(data).replace("STORAGE", str(tmp_path))))


def test_a_sweep_written_before_loads_and_saves_the_same_file(tmp_path):
    _write(tmp_path, {**WRITTEN_BEFORE, "from_a_later_version": {"kept": True}})
    before = json.loads((tmp_path / "old" / SWEEP_FILE).read_text())
    record = find_sweep("old", str(tmp_path))
    assert record.folder == tmp_path / "old" and record.n_trials == 8 and record.metric == ("val_acc", "max")
    assert record.tuner_sha == "0" * 64 and record.options["smoke"] is True
    assert record.tracking_info().swept_keys == ("pairing", "data_per_class")
    record.save()
    assert json.loads((tmp_path / "old" / SWEEP_FILE).read_text()) == before


def test_a_fresh_record_has_no_hash_keys_until_the_tuner_exists(tmp_path):
    record = SweepRecord("new", "sqlite:///m.db", "1", "p", {"cpu": 1, "gpu": 0}, str(tmp_path), {})
    assert tune_state.TAG_TUNER_SHA not in record.to_json() and "tune_state_at_exit" not in record.to_json()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "tuner.pkl").write_bytes(b"state")

    class Client:
        tags: dict = {}

        def set_tag(self, run, key, value):
            self.tags[(run, key)] = value

    client = Client()
    record.record_tuner_hash(client)
    saved = json.loads((tmp_path / "new" / SWEEP_FILE).read_text())
    assert saved[tune_state.TAG_TUNER_SHA] == client.tags[("p", tune_state.TAG_TUNER_SHA)] == record.tuner_sha
    assert saved["tune_state_at_exit"] is None  # the driver is running
    record.record_exit_state()
    assert SweepRecord.load(tmp_path / "new").tune_state_at_exit == {"tuner.pkl": record.tuner_sha}


@pytest.mark.parametrize("content", ["[1, 2]", '{"name": "x", "tracking_uri": "u", "parent_run_id": "p", '
                                     '"experiment_id": "1", "options": [], "resources": {}, "storage_path": "s"}'])
def test_a_sweep_json_of_the_wrong_shape_is_damaged(tmp_path, content):
    (tmp_path / "fs").mkdir()
    (tmp_path / "fs" / SWEEP_FILE).write_text(content)
    with pytest.raises(ConfigError, match="is damaged"):
        find_sweep("fs", str(tmp_path))


@pytest.mark.parametrize("old, new, name", [
    ("cluster.callbacks", "cluster.tuner.callbacks", "MlflowTrialFinalizer"),
    ("cluster.plan", "cluster.planning.plan", "_PerPairing"),
    ("cluster.adaptive", "cluster.tuner.adaptive_searcher", "AdaptiveSearcher"),
    ("cluster.adaptive", "cluster.flow.adaptive", "Replicates"),
])
def test_tune_state_of_a_sweep_started_before_the_split_unpickles_on_resume(old, new, name):
    """A tuner.pkl written before cluster/ was split names the old modules; resume resolves them while
    it restores, and leaves nothing at the old paths."""
    import importlib
    import pickle
    import sys

    from cluster.flow.resume import _modules_of_older_drivers

    cls = getattr(importlib.import_module(new), name)
    data = pickle.dumps(cls, protocol=0).replace(new.encode(), old.encode())
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(data)
    with _modules_of_older_drivers():
        assert pickle.loads(data) is cls
    assert old not in sys.modules
