"""The cost around a sweep's trials (issue 22): what the driver no longer does, and in what order.

- Tune's TensorBoard logger is replaced by one that writes nothing (it wrote an events file per
  result in the driver's loop while the trial waited); result.json and progress.csv stay.
- `sweep run` as the program stops Ray while the results table prints (`ray_stopped`, before the
  last atexit hook), not in Ray's atexit hook after it.
- a plain grid starts its largest cells first (cluster.tuner.order), recording the same runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import mlflow_runs

ROOT = Path(__file__).resolve().parents[1]

CALLBACKS = """
import json, sys
from types import SimpleNamespace
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.utils.callback import _create_default_callbacks
from cluster.flow.options import RunOptions
from cluster.tuner import assemble

record = SimpleNamespace(tracking_uri="sqlite:///x.db", experiment_id="1", parent_run_id="p", folder=None,
                         name="n", storage_path=sys.argv[1], metric=("val_acc", "max"), n_trials=2,
                         swept_keys=["pairing"])
config = assemble.run_config(RunOptions(experiment="edge-data-per-class", quiet=True), record)
callbacks = _create_default_callbacks(list(config.callbacks))  # what Tune adds at the start of fit
print(json.dumps({"tbx": [type(c).__name__ for c in callbacks if isinstance(c, TBXLoggerCallback)],
                  "json": any(isinstance(c, JsonLoggerCallback) for c in callbacks),
                  "csv": any(isinstance(c, CSVLoggerCallback) for c in callbacks),
                  "tensorboardX": "tensorboardX" in sys.modules}))
"""


def test_tunes_tensorboard_logger_is_replaced_and_tensorboardx_never_imported(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CALLBACKS, str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"tbx": ["NoTensorBoardFiles"], "json": True, "csv": True, "tensorboardX": False}


def test_program_run_orders_cells_stops_ray_during_the_table_and_writes_no_tensorboard_files(tmp_path):
    phase_log = tmp_path / "phases.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_PHASE_LOG": str(phase_log)}
    env.pop("SWEEP_HOME", None)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = tmp_path / "ray_results"
    proc = subprocess.run([sys.executable, "-m", "cluster.cli", "run", "edge-data-per-class", "--seeds", "1",
                           "--set", "epochs=1", "--grid", "data_per_class=10,20", "--name", "ovh",
                           "--tracking-uri", uri, "--storage-path", str(storage)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Results of ovh" in proc.stdout

    parents, children = mlflow_runs(uri, "edge-data-per-class")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4
    by_index = {c.data.tags["trial_id"].rsplit("_", 1)[1]: c.data.params for c in children}
    assert [(by_index[i]["pairing"], by_index[i]["data_per_class"]) for i in sorted(by_index)] == [
        ("simple_cnn/edges", "20"), ("three_layer_mlp/edges", "20"),
        ("simple_cnn/edges", "10"), ("three_layer_mlp/edges", "10")]

    driver = [json.loads(line) for line in phase_log.read_text().splitlines()]
    driver = [m for m in driver if m["pid"] == driver[0]["pid"]]
    phases = [m["phase"] for m in driver]
    assert "ray_stopped" in phases, phases
    assert phases.index("fit_end") < phases.index("ray_stopped") < phases.index("exit")
    assert phases.index("results_table") < phases.index("exit")

    assert list(storage.rglob("result.json")) and list(storage.rglob("progress.csv"))
    assert not list(storage.rglob("events.out.tfevents*"))
