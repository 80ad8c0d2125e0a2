"""The generic trainable without Tune: metrics, reports, checkpoint resume, MLflow logging."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core import store_schema as S
from trainables.tracking import TrackingInfo
from trainables.trainable import run_trial

# kernel_size=7 is simple_cnn's default (the MLPs take no kernel_size: strict keys refuse it).
BASE = {"pairing": "simple_cnn/edges", "data_per_class": 10, "valid_per_class": 10, "epochs": 4,
        "seed": 10, "log_to_mlflow": False}


def test_two_epochs_metrics_in_range():
    out = run_trial({**BASE, "epochs": 2})
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc"):
        assert key in out
    assert 0.0 <= out["train_acc"] <= 1.0 and 0.0 <= out["val_acc"] <= 1.0
    assert out["n_params"] == 606 and out["epoch"] == 2
    cm = out["confusion_matrix"]
    assert len(cm) == 3 and all(len(r) == 3 for r in cm) and sum(map(sum, cm)) == 30
    # collapse as an outcome (issue 20): per-class recall from the same confusion matrix
    recalls = [row[i] / sum(row) for i, row in enumerate(cm)]
    assert out[S.METRIC_MIN_CLASS_RECALL] == pytest.approx(min(recalls))
    assert out[S.METRIC_CLASSES_LOST] == sum(r <= 0.5 / 3 for r in recalls)


@pytest.mark.parametrize("pairing", ["three_layer_mlp/edges", "simple_cnn_avgpool/edges", "deeper_cnn/edges",
                                     "wider_cnn/edges", "two_layer_mlp/edges"])
def test_every_edge_pairing_trains(pairing):
    out = run_trial({**BASE, "pairing": pairing, "epochs": 2, "batch_size": 7})  # 30 mod 7 != 0: last batch small
    assert out["epoch"] == 2 and out["val_loss"] > 0


def test_batch_size_one_works():
    out = run_trial({**BASE, "epochs": 1, "data_per_class": 1, "batch_size": 1})
    assert out["epoch"] == 1


def test_bounded_reports_and_checkpoints():
    calls = []
    run_trial({**BASE, "epochs": 40}, report=lambda m, s: calls.append((m["epoch"], s is not None)))
    epochs = [e for e, _ in calls]
    assert epochs == list(range(2, 41, 2))  # about 20 reports, always the last epoch
    assert [e for e, ckpt in calls if ckpt] == [8, 16, 24, 32, 40]  # every 4th report and the end


def test_resume_from_checkpoint_equals_uninterrupted_run():
    full = run_trial({**BASE, "epochs": 6})
    states = []
    run_trial({**BASE, "epochs": 6, "report_every": 3, "checkpoint_every": 3},
              report=lambda m, s: states.append(s) if s and m["epoch"] == 3 else None)
    resumed = run_trial({**BASE, "epochs": 6, "report_every": 3, "checkpoint_every": 3}, restore=states[0])
    for key in ("train_loss", "val_loss", "val_acc", "train_acc"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6, abs=1e-9)


def test_edge_detector_init_trains_fc_only():
    out = run_trial({**BASE, "epochs": 2, "init": "edge_detector", "freeze_conv": True})
    assert out["n_trainable_params"] == 12


def test_logs_child_run_with_history_and_artifacts(tracking_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s1", "t", "abc", ("data_per_class",))
    out = run_trial({**BASE, "log_to_mlflow": True, "epochs": 5}, tracking=info, trial_id="trial_0")
    run = client.get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent and tags["pairing"] == "simple_cnn/edges"
    assert tags["model"] == "simple_cnn" and tags["seed"] == "10" and tags["trial_id"] == "trial_0"
    assert tags["status_reason"] == "completed"
    assert tags[S.TAG_N_CLASSES] == "3"  # the dataset's classes, so analysis knows chance for any dataset
    assert run.data.params["kernel_size"] == "7" and run.data.params["lr"] == "0.01"
    hist = client.get_metric_history(run.info.run_id, "val_acc")
    assert sorted(m.step for m in hist) == [1, 2, 3, 4, 5]
    assert run.data.metrics["n_params"] == 606
    assert run.data.metrics[S.METRIC_CLASSES_LOST] == out[S.METRIC_CLASSES_LOST]  # logged with the final metrics
    assert run.data.metrics[S.METRIC_MIN_CLASS_RECALL] == pytest.approx(out[S.METRIC_MIN_CLASS_RECALL])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert files == {S.ART_CONFIG, S.ART_HISTORY, S.ART_CONFUSION, S.ART_SAMPLES, "kernels"}  # arrays, no PNG
    kernels = {a.path for a in client.list_artifacts(run.info.run_id, "kernels")}
    assert kernels == {S.ART_KERNELS_INITIAL, S.ART_KERNELS_FINAL}


def test_resumed_attempt_continues_same_run_without_duplicates(tracking_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("SWEEP_ALLOW_FAULT_INJECTION", "1")
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s1", "t")
    cfg = {**BASE, "log_to_mlflow": True, "epochs": 6, "report_every": 1, "checkpoint_every": 2,
           "fail_at_epoch": 6}
    states = []
    with pytest.raises(RuntimeError, match="injected failure"):
        run_trial(cfg, tracking=info, trial_id="t7", report=lambda m, s: states.append(s) if s else None)
    runs = client.search_runs([exp_id], "tags.trial_id = 't7'")
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    # epochs 1-5 were logged; the last checkpoint is epoch 4; the retry recomputes 5 and 6
    out = run_trial(cfg, tracking=info, trial_id="t7", restore=states[-1])
    assert out["mlflow_run_id"] == runs[0].info.run_id
    steps = [m.step for m in client.get_metric_history(out["mlflow_run_id"], "train_loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert client.get_run(out["mlflow_run_id"]).info.status == "FINISHED"
    reference = run_trial({**BASE, "epochs": 6})
    assert out["val_acc"] == pytest.approx(reference["val_acc"]) and out["train_loss"] == pytest.approx(reference["train_loss"])


def test_threads_follow_config():
    """The trial trains with its config's torch threads (set by the driver from --cpus-per-trial),
    observed inside the trial, not left at what the process had (conftest sets one thread)."""
    seen = []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run_trial({**BASE, "epochs": 2, "report_every": 1, "threads": 2},
                  report=lambda m, s: seen.append(torch.get_num_threads()))
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 2]


def test_trial_logs_example_inputs_the_report_draws(tracking_uri, tmp_path):
    """samples.npz (10 inputs per class, with the un-permutation) is what the report's grid reads."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    from analysis.samples import samples_from_npz

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id, tags={S.TAG_ROLE: S.ROLE_SWEEP}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s1", "t")
    out = run_trial({**BASE, "log_to_mlflow": True, "epochs": 1, "use_permutation": True}, tracking=info)
    path = mlflow.artifacts.download_artifacts(run_id=out["mlflow_run_id"], artifact_path=S.ART_SAMPLES,
                                               dst_path=str(tmp_path), tracking_uri=tracking_uri)
    s = samples_from_npz(path, "edges")
    assert s.images.shape == (30, 28, 28) and list(s.labels) == [0] * 10 + [1] * 10 + [2] * 10
    assert s.class_names == ["horizontal", "vertical", "none"]
    assert s.unpermuted is not None and not np.array_equal(s.unpermuted, s.images)


LAZY_IMPORTS = """
import sys
from mlflow.tracking import MlflowClient
from trainables.tracking import TrackingInfo
from trainables.trainable import run_trial

uri = sys.argv[1]
client = MlflowClient(uri)
exp_id = client.create_experiment("lazy")
parent = client.create_run(exp_id).info.run_id
out = run_trial({"pairing": "simple_cnn/edges", "data_per_class": 5, "valid_per_class": 5, "epochs": 2,
                 "log_to_mlflow": True}, tracking=TrackingInfo(uri, exp_id, parent, "s", "lazy"))
assert client.get_run(out["mlflow_run_id"]).info.status == "FINISHED"
print(sorted(m for m in ("matplotlib", "torchvision") if m in sys.modules))
"""


def test_edge_trial_imports_neither_matplotlib_nor_torchvision(tmp_path):
    """Trials draw no figure (the report does) and edge data needs no torchvision: neither is imported."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", LAZY_IMPORTS, f"sqlite:///{tmp_path}/mlflow.db"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def _batches(monkeypatch) -> list[int]:
    """Record the number of metrics of every log_batch call that writes metrics."""
    from mlflow.tracking import MlflowClient

    calls, real = [], MlflowClient.log_batch

    def spy(self, run_id, metrics=(), *args, **kwargs):
        if metrics:
            calls.append(len(metrics))
        return real(self, run_id, metrics, *args, **kwargs)
    monkeypatch.setattr(MlflowClient, "log_batch", spy)
    return calls


def test_mlflow_http_timeout_stays_inside_the_trial_retry_window(monkeypatch):
    """MLflow's own HTTP retries would outlast a short retry window (~4 min): a trial allows one
    retry and a request timeout of its retry window clamped to [10, 120] s; values the user set win."""
    import os

    from trainables.tracking import bound_http_retries

    keys = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    for key in keys:  # restored as they were when the test ends
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    for retry_s, timeout in ((1.0, "10"), (10.0, "10"), (60.0, "60"), (120.0, "120"), (3600.0, "120")):
        for key in keys:
            os.environ.pop(key, None)
        bound_http_retries(retry_s)
        assert (os.environ[keys[0]], os.environ[keys[1]]) == (timeout, "1"), retry_s
    monkeypatch.setenv(keys[0], "7")
    monkeypatch.setenv(keys[1], "0")
    bound_http_retries(60.0)
    assert (os.environ[keys[0]], os.environ[keys[1]]) == ("7", "0")


@pytest.mark.parametrize("flush_s, writes", [(3600.0, 1), (0.0, 6)])
def test_metric_writes_are_bounded_in_time_not_per_report(tracking_uri, monkeypatch, flush_s, writes):
    """report_every=1 over 6 epochs: with a long flush interval everything goes in the final write;
    with none, one write per report. Either way each epoch is stored once."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s", "t", flush_s=flush_s)
    calls = _batches(monkeypatch)
    out = run_trial({**BASE, "log_to_mlflow": True, "epochs": 6, "report_every": 1, "checkpoint_every": 6},
                    tracking=info, report=lambda m, s: None)
    assert len(calls) == writes
    steps = sorted(m.step for m in client.get_metric_history(out["mlflow_run_id"], "val_acc"))
    assert steps == [1, 2, 3, 4, 5, 6]


def test_trial_stopped_by_the_scheduler_keeps_every_reported_epoch(tracking_uri):
    """Tune stops a trial by raising SystemExit inside tune.report: what was buffered is written
    first, the run is left for the driver to mark stopped (not FAILED)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s", "t", flush_s=3600.0)

    def stop_at_3(metrics, state):
        if metrics["epoch"] == 3:
            raise SystemExit(0)
    with pytest.raises(SystemExit):
        run_trial({**BASE, "log_to_mlflow": True, "epochs": 6, "report_every": 1, "checkpoint_every": 6},
                  tracking=info, report=stop_at_3, trial_id="t_stop")
    (run,) = client.search_runs([exp_id], S.trial_filter(parent, "t_stop"))
    assert run.info.status == "RUNNING" and S.TAG_STATUS_REASON not in run.data.tags
    for key in ("train_loss", "val_acc"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [1, 2, 3]


def test_a_restarted_trial_finds_its_run_and_never_writes_a_stored_epoch_twice(tracking_uri):
    """A trial restarted after epoch 3 reopens the same child run (found by trial id) and logs
    epochs 1..5 again: MLflow keeps each epoch once (the first attempt's values for 1..3)."""
    from mlflow.tracking import MlflowClient

    from trainables.tracking import TrialRun

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s", "t")
    first = TrialRun(info, "t_r", None, "t_r", {})
    for epoch in (1, 2, 3):
        first.add(epoch, {"train_loss": 1.0 / epoch, "val_acc": epoch / 10})
    first.flush()
    again = TrialRun(info, "t_r", None, "t_r", {})
    assert again.resumed and again.run_id == first.run_id and again.logged_step == 3
    for epoch in (1, 2, 3, 4, 5):
        again.add(epoch, {"train_loss": 9.0, "val_acc": 0.9})
    again.complete()
    for key, early in (("train_loss", [1.0, 0.5, 1 / 3]), ("val_acc", [0.1, 0.2, 0.3])):
        hist = sorted((m.step, m.value) for m in client.get_metric_history(first.run_id, key))
        assert [s for s, _ in hist] == [1, 2, 3, 4, 5], key
        assert [v for _, v in hist[:3]] == pytest.approx(early), key
    assert len(client.search_runs([exp_id], S.trial_filter(parent, "t_r"))) == 1


def test_a_checkpoint_never_runs_ahead_of_what_mlflow_holds(tracking_uri):
    """A worker killed right after a checkpoint resumes from it: MLflow must already hold every epoch
    up to it (later ones are retrained and logged then), even with a long flush interval."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s", "t", flush_s=3600.0)
    seen = {}

    def report(metrics, state):
        if state is not None:
            hist = client.get_metric_history(metrics["mlflow_run_id"], "train_loss")
            seen[metrics["epoch"]] = sorted(m.step for m in hist)
    run_trial({**BASE, "log_to_mlflow": True, "epochs": 6, "report_every": 1, "checkpoint_every": 2},
              tracking=info, report=report)
    assert seen == {e: list(range(1, e + 1)) for e in (2, 4, 6)}
