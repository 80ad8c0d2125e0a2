"""The one generic trainable: builds the pairing named in its config, trains, reports, logs.

Used by Tune through `tune.with_parameters(train, tracking=TrackingInfo(...))`; `run_trial`
runs the same code without Tune (tests, benchmarks, notebooks).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core import store_schema as S
from trainables.artifacts import trial_artifacts
from trainables.data import DataBundle, build_data
from trainables.evaluators import get_evaluator
from trainables.loop import Trainer
from trainables.models import build_model, count_params, model_kwargs
from trainables.resolve import Resolved, resolve_config
from trainables.tracking import TrackingInfo, TrialRun

CHECKPOINT_FILE = "trial_state.pt"
_DATA_CACHE: dict[str, DataBundle] = {}  # a reused actor keeps its last datasets (CPU tensors)
_DATA_CACHE_SIZE = 4


def pick_device(name: str) -> torch.device:
    """'auto' -> the GPU Ray assigned to this trial (CUDA_VISIBLE_DEVICES) or the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but no CUDA device is visible to this trial")
    return torch.device(name)


def ray_placement(device: torch.device) -> dict[str, str]:
    """Where Ray placed this trial: node id, assigned GPU ids and the device used; {} outside a Ray worker.

    Logged as tags so a sweep's placement (fractional GPUs, spread over nodes) can be checked
    afterwards from MLflow alone.
    """
    import sys

    ray = sys.modules.get("ray")  # never import Ray just to learn we are not in it
    if ray is None or not ray.is_initialized():
        return {}
    ctx = ray.get_runtime_context()
    if ctx.worker.mode != ray.WORKER_MODE:  # a driver (tests, notebooks) is not a placed trial
        return {}
    gpus = ctx.get_accelerator_ids().get("GPU", [])
    return {S.TAG_RAY_NODE_ID: ctx.get_node_id(), S.TAG_GPU_IDS: ",".join(map(str, gpus)), S.TAG_DEVICE: device.type}


def load_data(r: Resolved) -> DataBundle:
    """Build (or reuse from this process's cache) the trial's dataset, as a fresh bundle object."""
    key = json.dumps([r.pairing.dataset, dataclasses.asdict(r.data), r.train.seed], sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = build_data(r.pairing.dataset, r.config)
    return dataclasses.replace(_DATA_CACHE[key])


def make_model(r: Resolved, bundle: DataBundle) -> nn.Module:
    """Seed torch with the trial's init seed, then build the pairing's model."""
    kwargs = dict(r.model_kwargs)
    accepted = model_kwargs(r.pairing.model)
    if "num_classes" in accepted and bundle.num_classes:
        kwargs["num_classes"] = bundle.num_classes
    if "in_features" in accepted:
        kwargs["in_features"] = int(bundle.x_train.shape[1])
    torch.manual_seed(r.train.init_seed)
    return build_model(r.pairing.model, **kwargs)


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def run_name(r: Resolved, swept_keys: tuple[str, ...]) -> str:
    parts = [r.pairing.name] + [f"{k}={r.config[k]}" for k in swept_keys if k != "pairing" and k in r.config]
    return " ".join(parts + [f"seed={r.train.seed}"])


def run_trial(config: dict[str, Any], tracking: TrackingInfo | None = None,
              report: Callable[[dict, dict | None], None] | None = None,
              restore: dict | None = None, trial_id: str | None = None) -> dict[str, Any]:
    """Train one trial end to end.

    Args:
        config: flat trial config (see trainables.resolve).
        tracking: where to log in MLflow; None or config log_to_mlflow=False disables logging.
        report: called as report(metrics, state) every `report_interval` epochs and at the end;
            `state` is the checkpoint dict when a checkpoint is due, else None.
        restore: a checkpoint dict from an earlier attempt; training resumes after its epoch.
        trial_id: Tune's trial id, used to find this trial's MLflow run again after a restart.

    Returns:
        The final metrics (last epoch's values, best_val_acc, n_params, confusion_matrix, ...).
    """
    r = resolve_config(config)
    tc = r.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = pick_device(tc.device)
    t0 = time.perf_counter()
    bundle = load_data(r).to(device)
    model = make_model(r, bundle).to(device)
    conv = first_conv(model)
    initial_kernels = None if conv is None else conv.weight.detach().cpu().numpy().copy()
    trainer = Trainer(model, bundle, tc, device)
    start = 1
    if restore is not None:
        trainer.load_state_dict(restore["trainer"])
        if restore.get("initial_kernels") is not None:
            initial_kernels = restore["initial_kernels"].numpy()
        start = restore["epoch"] + 1

    run = None
    if tracking is not None and tc.log_to_mlflow:
        tags = {S.TAG_PAIRING: r.pairing.name, S.TAG_MODEL: r.pairing.model, S.TAG_DATASET: r.pairing.dataset,
                S.TAG_SEED: tc.seed, S.TAG_EVAL_SPLIT: "train" if tc.evaluate_on == "train" else bundle.eval_split}
        if "feature_cache_hit" in bundle.meta:
            tags[S.TAG_FEATURE_CACHE_HIT] = str(bundle.meta["feature_cache_hit"]).lower()
            tags[S.TAG_FEATURE_CACHE_KEY] = bundle.meta.get("feature_cache_key", "")
        tags.update(ray_placement(device))
        run = TrialRun(tracking, trial_id, (restore or {}).get("run_id"), run_name(r, tracking.swept_keys), tags)
        if not run.resumed:
            run.log_params(r.applied_params())
        else:
            run.set_tags(tags)  # tags are idempotent; a rerun after driver loss re-asserts them
        if run.previous is not None and run.previous.info.status == "FINISHED":
            return _finished_earlier(r, run, report)
    try:
        result = _train(r, trainer, bundle, model, conv, initial_kernels, run, report, start, restore is not None, t0)
    except BaseException as exc:
        # SystemExit is Tune stopping the trial inside tune.report (a scheduler's STOP, also at
        # max_t after the run finished): the driver's MlflowTrialFinalizer records that, not us.
        if run is not None and not isinstance(exc, SystemExit):
            try:
                run.finish("FAILED", {S.TAG_STATUS_REASON: S.STATUS_FAILED, S.TAG_ERROR: f"{type(exc).__name__}: {exc}"[:5000]})
            except Exception:
                pass  # the original error matters more than a failed bookkeeping call
        raise
    return result


def _train(r, trainer, bundle, model, conv, initial_kernels, run, report, start, restored, t0):
    tc = r.train
    n_params, n_trainable = count_params(model)
    best = float("-inf")
    if restored:
        prev = trainer.history_rows(1, start - 1) if start > 1 else []
        best = max((row.get("val_acc", float("-inf")) for row in prev), default=float("-inf"))
    last_flushed = start - 1
    if start > tc.epochs:  # an earlier attempt finished; the driver died before Tune recorded it
        return _already_done(r, trainer, model, run, report)
    for epoch in range(start, tc.epochs + 1):
        if tc.fail_at_epoch == epoch and not restored:
            raise RuntimeError(f"injected failure at epoch {epoch} (fail_at_epoch)")
        trainer.run_epoch(epoch)
        final = epoch == tc.epochs
        if epoch % tc.report_interval and not final:
            continue
        rows = trainer.history_rows(last_flushed + 1, epoch)
        for i, row in enumerate(rows, start=last_flushed + 1):
            best = max(best, row.get("val_acc", float("-inf")))
            if run is not None:
                run.add(i, row)
        last_flushed = epoch
        metrics = {"epoch": epoch, **rows[-1]}
        if "val_acc" in metrics:
            metrics["best_val_acc"] = best
        if final:
            metrics.update(_finish(r, trainer, bundle, model, conv, initial_kernels, run, n_params, n_trainable,
                                   best, t0))
        if run is not None:
            run.flush()  # before the report: a checkpoint never runs ahead of what MLflow holds
            metrics["mlflow_run_id"] = run.run_id
        if report is not None:
            due = final or epoch % tc.checkpoint_interval == 0
            state = None
            if due:
                kernels = None if initial_kernels is None else torch.from_numpy(initial_kernels)
                state = {"epoch": epoch, "trainer": trainer.state_dict(), "initial_kernels": kernels,
                         "run_id": None if run is None else run.run_id}
            report(metrics, state)
        if final:
            return metrics
    raise AssertionError("unreachable: the loop returns at the final epoch")


def _finished_earlier(r: Resolved, run: TrialRun, report) -> dict:
    """An earlier attempt completed this trial (its MLflow run is FINISHED), but the driver died
    before Tune recorded it, so Tune restarted it from its last checkpoint Tune knew of.

    Nothing is trained or logged again: the logged final metrics are reported back to Tune and
    the run gets its FINISHED status and original end time back.
    """
    prev = run.previous
    run._retry(lambda: run.client.set_terminated(run.run_id, status="FINISHED", end_time=prev.info.end_time))
    metrics = {**prev.data.metrics, "epoch": r.train.epochs, "mlflow_run_id": run.run_id}
    if report is not None:
        report(metrics, None)
    return metrics


def _already_done(r, trainer, model, run, report) -> dict:
    """Restored from the final checkpoint without an MLflow run to read: report the final metrics
    from the restored history again; train and log nothing."""
    tc = r.train
    rows = trainer.history_rows(1, tc.epochs)
    n_params, n_trainable = count_params(model)
    metrics = {"epoch": tc.epochs, **rows[-1], "n_params": n_params, "n_trainable_params": n_trainable,
               "epochs_completed": tc.epochs}
    if "val_acc" in rows[-1]:
        metrics["best_val_acc"] = max(row["val_acc"] for row in rows)
    _, _, _, cm = trainer.evaluate(confusion=True)
    if cm is not None:
        metrics["confusion_matrix"] = cm.cpu().tolist()
    if run is not None:  # not reached with a FINISHED run (see _finished_earlier)
        run.finish("FINISHED", {S.TAG_STATUS_REASON: S.STATUS_COMPLETED})
        metrics["mlflow_run_id"] = run.run_id
    if report is not None:
        report(metrics, None)
    return metrics


def _finish(r, trainer, bundle, model, conv, initial_kernels, run, n_params, n_trainable, best, t0) -> dict:
    """Final evaluation, evaluators, artifacts; returns the extra final metrics."""
    tc = r.train
    out: dict[str, Any] = {"n_params": n_params, "n_trainable_params": n_trainable,
                           "epochs_completed": tc.epochs, "train_time_s": time.perf_counter() - t0}
    _, _, _, cm = trainer.evaluate(confusion=True)
    final_scalars = {k: out[k] for k in ("n_params", "n_trainable_params", "epochs_completed", "train_time_s")}
    if best != float("-inf"):
        final_scalars["best_val_acc"] = best
    artifacts: dict[str, bytes | str] = {}
    for name in tc.evaluators:
        result = get_evaluator(name)(model, bundle, r.config, trainer.device)
        out.update(result.metrics)
        final_scalars.update(result.metrics)
        artifacts.update(result.artifacts)
        if run is not None:
            for key, points in result.histories.items():
                for step, value in points:
                    run.buffer.append((key, float(value), int(step)))
    if cm is not None:
        out["confusion_matrix"] = cm.cpu().tolist()
    if run is not None:
        run.add_final(final_scalars)
        if tc.log_artifacts:
            artifacts.update(_trial_artifacts(r, trainer, bundle, model, conv, initial_kernels, out))
        run.flush()
        for path, content in artifacts.items():
            run.log_artifact_bytes(path, content)
        run.finish("FINISHED", {S.TAG_STATUS_REASON: S.STATUS_COMPLETED})
    return out


def _trial_artifacts(r, trainer, bundle, model, conv, initial_kernels, out) -> dict[str, bytes | str]:
    final = None if conv is None else conv.weight.detach().cpu().numpy()
    return trial_artifacts(r.config, trainer.history_rows(1, r.train.epochs), bundle, out.get("confusion_matrix"),
                           initial_kernels, final)


def tune_session() -> tuple[dict | None, Callable[[dict, dict | None], None], str]:
    """Inside a Tune trial: (state restored from tune.get_checkpoint() or None, a report function
    that saves a state dict as the checkpoint, the trial id)."""
    import logging

    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per report is noise
    restore = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore = torch.load(os.path.join(d, CHECKPOINT_FILE), weights_only=True)

    def report(metrics: dict, state: dict | None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, os.path.join(d, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    return restore, report, tune.get_context().get_trial_id()


def train(config: dict[str, Any], tracking: TrackingInfo | None = None) -> None:
    """Ray Tune function trainable: resumes from `tune.get_checkpoint()` and reports with checkpoints."""
    restore, report, trial_id = tune_session()
    run_trial(config, tracking, report, restore, trial_id=trial_id)
