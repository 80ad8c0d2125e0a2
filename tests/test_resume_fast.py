"""`sweep resume` of a packed sweep and of an ASHA search, with real Ray (2 CPUs) and tiny trials.

Each test interrupts its sweep as Ctrl-C (SIGINT) or a SIGTERM would (the driver has Tune stop
gracefully, saving its state) as soon as the first checkpoint exists, checks the exit code (130 or
143), then resumes it by name: every trial ends with exactly one MLflow run holding each epoch
once, no epoch is trained twice (the resume starts from the checkpoint), nothing is left RUNNING.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cluster.cli import main
from conftest import mlflow_runs
from search_spaces import EXPERIMENTS
from search_spaces.domains import LogUniform
from search_spaces.experiment import Experiment, Search

MLP = "three_layer_mlp/edges"
TINY = {"data_per_class": 5, "valid_per_class": 5, "report_every": 5, "checkpoint_every": 5, "log_artifacts": False}


@pytest.fixture
def local_ray(ray_shutdown):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield


def _interrupt_at_second_checkpoint(sweep_dir: Path, sig: int, timeout: float = 120) -> threading.Event:
    """Send `sig` to this process (SIGINT as Ctrl-C would) once a trial of the sweep has saved its
    second checkpoint: by then Tune has recorded the first one, so the resume restores a checkpoint
    (interrupted at the first, Tune's last snapshot may not hold it yet and restarts the trial)."""
    sent = threading.Event()

    def watch():
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(sweep_dir.glob("*/checkpoint_000001")):
                sent.set()
                os.kill(os.getpid(), sig)
                return
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return sent


def _run_interrupted(argv: list[str], sweep_dir: Path, sig: int = signal.SIGINT) -> int:
    """Run the sweep, interrupt it with `sig` while it trains; it exits 128 + sig (130 SIGINT, 143 SIGTERM)."""
    sent = _interrupt_at_second_checkpoint(sweep_dir, sig)
    code = main(argv)
    assert sent.is_set(), "the sweep finished before any checkpoint: nothing was interrupted"
    assert code == 128 + sig, f"interrupted by {signal.Signals(sig).name}: exit {code}, not {128 + sig}"
    return code


def _resumed_from_the_checkpoint(sweep_dir: Path, every: int, epochs: int | None = None) -> None:
    """Tune's results of each trial (result.json): each report `every` epochs, so the epoch a trial
    reports is `every` x Tune's training_iteration. Tune restores that count from the checkpoint it
    hands the trial; a trial that ignored the checkpoint (trained from epoch 1 again) breaks it.
    (A trial Tune restarts from scratch, having recorded no checkpoint for it, keeps it; so at least
    one trial must have been restored: its first report after the resume is past iteration 1.)

    With `epochs`: a trial whose MLflow run had FINISHED before the interrupt reached it is not
    trained again (trainables.lifecycle._finished_earlier): after the restore it reports its final
    epoch once, as its last row. That row is allowed and does not count as a restored trial."""
    files = sorted(sweep_dir.glob("*/result.json"))
    assert files, f"no Tune result.json under {sweep_dir}"
    restored = 0
    for f in files:
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        last = rows[-1] if rows else {}
        if (epochs is not None and len(rows) > 1 and last["epoch"] == epochs and last["iterations_since_restore"] == 1
                and last["training_iteration"] > 1 and rows[-2]["epoch"] < epochs):
            rows = rows[:-1]  # came back finished: reported once, nothing trained again
        pairs = [(r["training_iteration"], r["epoch"]) for r in rows]
        assert all(epoch == every * it for it, epoch in pairs), f"{f.parent.name}: (iteration, epoch) {pairs}"
        restored += any(r["training_iteration"] > 1 and r["iterations_since_restore"] == 1 for r in rows)
    assert restored, "no trial was restored from a checkpoint"


def _each_epoch_once(uri: str, runs, epochs: int, metric: str = "train_loss") -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for run in runs:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        last = int(run.data.metrics.get("epochs_completed", steps[-1] if steps else 0))
        assert steps == list(range(1, len(steps) + 1)), f"{run.info.run_name}: epochs logged {steps}"
        if run.data.tags.get("status_reason") == "completed":
            assert steps[-1] == epochs and last == epochs


def test_packed_sweep_resumes_every_member(tmp_path, monkeypatch, local_ray):
    """Five MLP seeds packed into one Tune trial; interrupted after its first checkpoint; resumed."""
    name, exp = "pack-resume", "fast-pack"
    monkeypatch.setitem(EXPERIMENTS, exp, Experiment(name=exp, description="tiny packed MLP", pairings=(MLP,),
                                                     fixed={**TINY, "epochs": 20}, seeds=5))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = tmp_path / "rr"
    argv = ["run", exp, "--pack", "5", "--name", name, "--tracking-uri", uri, "--storage-path", str(storage)]
    first = _run_interrupted(argv, storage / name)
    parents, children = mlflow_runs(uri, exp)
    assert len(parents) == 1 and len(children) == 5 and parents[0].info.status == "KILLED"
    unfinished = [c for c in children if c.data.tags.get("status_reason") != "completed"]
    assert unfinished, f"every member completed before the interrupt (exit {first})"

    assert main(["resume", name, "--storage-path", str(storage)]) == 0
    parents, children = mlflow_runs(uri, exp)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 5 and len({c.data.tags["trial_id"] for c in children}) == 5
    assert all(c.info.status == "FINISHED" and c.data.tags["status_reason"] == "completed" for c in children)
    assert {c.data.tags["pack_size"] for c in children} == {"5"}
    _each_epoch_once(uri, children, 20)
    _resumed_from_the_checkpoint(storage / name, TINY["report_every"])


def test_asha_search_resumes(tmp_path, monkeypatch, local_ray):
    """An ASHA search of 3 samples, interrupted after its first checkpoint and resumed: every trial
    ends completed or stopped early by ASHA, none RUNNING, no epoch logged twice."""
    name, exp = "asha-resume", "fast-asha"
    monkeypatch.setitem(EXPERIMENTS, exp, Experiment(
        name=exp, description="tiny ASHA search", pairings=(MLP,), fixed={**TINY, "epochs": 20},
        axes={"lr": LogUniform(1e-3, 1e-1)}, seeds=1,
        search=Search(metric="val_acc", mode="max", scheduler="asha", grace_period=5, reduction_factor=3,
                      num_samples=3)))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = tmp_path / "rr"
    argv = ["run", exp, "--name", name, "--tracking-uri", uri, "--storage-path", str(storage), "--max-concurrent", "2"]
    _run_interrupted(argv, storage / name, signal.SIGTERM)
    parents, children = mlflow_runs(uri, exp)
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    assert any(c.data.tags.get("status_reason") not in ("completed", "stopped_early") for c in children) \
        or len(children) < 3, "every trial ended before the interrupt"

    assert main(["resume", name, "--storage-path", str(storage)]) == 0
    parents, children = mlflow_runs(uri, exp)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3 and len({c.data.tags["trial_id"] for c in children}) == 3
    assert all(c.info.status != "RUNNING" for c in children)
    assert {c.data.tags["status_reason"] for c in children} <= {"completed", "stopped_early"}
    assert any(c.data.tags["status_reason"] == "completed" for c in children)
    _each_epoch_once(uri, children, 20)
    _resumed_from_the_checkpoint(storage / name, TINY["report_every"])
