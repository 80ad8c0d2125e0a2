"""The start-up work changes nothing recorded: `sweep run` run as the program (the path that ends
with os._exit, preloads the results table and writes phase marks) leaves a FINISHED parent and a
FINISHED child run per trial, and every metric it recorded is bit for bit what the trial code
computes for the same config and seed in this process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import mlflow_runs

ROOT = Path(__file__).resolve().parents[1]
# Wall-clock measurements differ between any two runs by nature.
TIMING = {"train_time_s"}


def _trial_metrics(config: dict) -> dict[tuple[str, int], float]:
    """{(metric, epoch): value} of every report of the trial, computed here without Ray or MLflow."""
    from trainables.trainable import run_trial

    out: dict[tuple[str, int], float] = {}

    def report(metrics: dict, state) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in TIMING:
                out[(k, int(metrics["epoch"]))] = float(v)

    run_trial({**config, "log_to_mlflow": False}, tracking=None, report=report)
    return out


def test_program_run_records_finished_runs_with_the_trials_exact_metrics(tmp_path):
    phase_log = tmp_path / "phases.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEP_PHASE_LOG": str(phase_log)}
    env.pop("SWEEP_HOME", None)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run([sys.executable, "-m", "cluster.cli", "run", "edge-data-per-class", "--seeds", "1",
                           "--set", "epochs=2", "--set", "data_per_class=10", "--name", "rec", "--tracking-uri", uri,
                           "--storage-path", str(tmp_path / "ray_results")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Results of rec" in proc.stdout  # the table printed before the fast exit, nothing lost

    parents, children = mlflow_runs(uri, "edge-data-per-class")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for child in children:
        params = child.data.params
        config = {"pairing": params["pairing"], "seed": int(params["seed"]), "epochs": 2, "data_per_class": 10,
                  "lr": float(params["lr"]), "threads": int(params["threads"])}
        expected = _trial_metrics(config)
        recorded = {}
        for key in {k for k, _ in expected}:
            for m in client.get_metric_history(child.info.run_id, key):
                recorded[(key, m.step)] = m.value
        common = set(expected) & set(recorded)
        assert {k for k, _ in common} >= {"val_acc", "val_loss", "train_loss", "train_acc"}, sorted(common)
        assert {e for _, e in common} == {1, 2}
        assert {k: recorded[k] for k in common} == {k: expected[k] for k in common}, params["pairing"]

    marks = [json.loads(line)["phase"] for line in phase_log.read_text().splitlines()]
    for phase in ("cli_imported", "planned", "ray_ready", "mlflow_ready", "parent_run", "fit_start",
                  "first_actor_ready", "trial_start", "first_result", "fit_end", "results_table", "exit"):
        assert phase in marks, (phase, marks)
