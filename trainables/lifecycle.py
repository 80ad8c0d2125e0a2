"""The one trial lifecycle, shared by unpacked and packed trials.

restore -> open the MLflow runs -> train, reporting and checkpointing -> finish (final
evaluation, evaluators, artifacts, FINISHED) or fail (FAILED with the error). A trial trains
K members (K = 1 unpacked; K > 1 when `sweep run --pack K` trains K trials as one vmapped
model); everything here is done per member. Only the inner step differs, behind `Step`:
`trainables.trainable.SingleStep` (the plain loop) and `trainables.packed_trainable.PackedStep`
(the vmapped members). The caller builds the step and the members; `run_members` does the rest.

Each member logs to its own MLflow child run, found again after a restart (TrialRun). The Tune
result is the member's metrics for an unpacked trial, and every member's metrics under
"m{i}/<metric>" (plus "pack_size") for a pack, so `sweep run --pack` falls back to unpacked
trials without changing the driver's view.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from core import store_schema as S
from trainables.artifacts import trial_artifacts
from trainables.data import DataBundle
from trainables.evaluators import get_evaluator
from trainables.spec import TrialSpec
from trainables.tracking import TrackingInfo, TrialRun

Report = Callable[[dict, dict | None], None]
NEVER = float("-inf")


class Step(Protocol):
    """What the lifecycle needs from the inner step that trains the members."""

    size: int                     # number of members
    device: torch.device
    n_params: tuple[int, int]     # (all, trainable) parameters of one member

    def run_epoch(self, epoch: int) -> None:
        """Train and evaluate every member for epoch `epoch` (1-based)."""

    def history_rows(self, member: int, first: int, last: int) -> list[dict[str, float]]:
        """Member `member`'s per-epoch metrics of epochs first..last (inclusive)."""

    def confusion(self) -> list[torch.Tensor | None]:
        """Each member's confusion matrix on the evaluation split (None for regression)."""

    def eval_inputs(self, member: int) -> tuple[nn.Module, DataBundle]:
        """Member `member`'s trained model and data bundle, on the step's device."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Member:
    """One trial of a step: its resolved config, data, conv1 kernels before training, MLflow run."""

    r: TrialSpec
    bundle: DataBundle
    initial_kernels: torch.Tensor | None
    run: TrialRun | None = None
    best: float = NEVER  # best val_acc so far


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def initial_kernels(model: nn.Module) -> torch.Tensor | None:
    """A CPU copy of the first conv layer's weights (None without a conv layer)."""
    conv = first_conv(model)
    return None if conv is None else conv.weight.detach().cpu().clone()


def run_name(r: TrialSpec, swept_keys: tuple[str, ...]) -> str:
    parts = [r.pairing.name] + [f"{k}={r.config[k]}" for k in swept_keys if k != "pairing" and k in r.config]
    return " ".join(parts + [f"seed={r.train.seed}"])


def member_trial_id(trial_id: str | None, member: int) -> str | None:
    """The MLflow `trial_id` tag of pack member `member` (None without a Tune trial id)."""
    return None if trial_id is None else f"{trial_id}-m{member}"


def prefixed(metrics: dict[str, Any], member: int) -> dict[str, Any]:
    """Member `member`'s metrics under "m{member}/<key>" for the pack's Tune result (no confusion matrix)."""
    return {f"m{member}/{k}": v for k, v in metrics.items() if k != "confusion_matrix"}


def run_members(step: Step, members: list[Member], *, tracking: TrackingInfo | None, report: Report | None,
                restore: dict | None, trial_id: str | None, packed: bool, t0: float,
                placement: dict[str, str]) -> list[dict[str, Any]]:
    """Run the lifecycle of a built step; returns each member's final metrics.

    Args:
        step: the inner step, built by the caller (data, models, trainer).
        members: one per trial trained by `step`, in member order.
        tracking: MLflow destination (None, or a member's log_to_mlflow=False: no run).
        report: called as report(metrics, state) every report interval and at the end; `state`
            is the checkpoint dict when a checkpoint is due, else None.
        restore: a checkpoint state of an earlier attempt; training resumes after its epoch.
        trial_id: Tune's trial id (member i of a pack logs under member_trial_id(trial_id, i)).
        packed: report in the pack format ("m{i}/..." metrics) and tag runs as pack members.
        t0: when the trial started building (train_time_s counts from here).
        placement: tags saying where Ray placed the trial (trainable.ray_placement).
    """
    start, run_ids = 1, [None] * step.size
    if restore is not None:
        step.load_state_dict(restore["trainer"])
        for m, kernels in zip(members, restore["initial_kernels"]):
            m.initial_kernels = kernels
        run_ids, start = restore["run_ids"], restore["epoch"] + 1
    _open_runs(members, tracking, trial_id, run_ids, placement, packed)
    if all(m.run is not None and m.run.finished_earlier for m in members):
        return _finished_earlier(members, report, packed)
    runs = [m.run for m in members if m.run is not None]
    try:
        return _train(step, members, report, start, restore is not None, packed, t0)
    except BaseException as exc:
        for run in runs:
            try:
                if isinstance(exc, SystemExit):
                    # Tune stopping the trial inside tune.report (a scheduler's STOP): the driver's
                    # MlflowTrialFinalizer closes the run; what is buffered is written first.
                    run.flush()
                else:
                    run.fail(exc)
            except Exception:
                pass  # the original error matters more than a failed bookkeeping call
        raise


def _open_runs(members: list[Member], tracking: TrackingInfo | None, trial_id: str | None,
               run_ids: list[str | None], placement: dict[str, str], packed: bool) -> None:
    for i, m in enumerate(members):
        r, b = m.r, m.bundle
        if tracking is None or not r.train.log_to_mlflow:
            continue
        tags = {S.TAG_PAIRING: r.pairing.name, S.TAG_MODEL: r.pairing.model, S.TAG_DATASET: r.pairing.dataset,
                S.TAG_SEED: r.train.seed, S.TAG_EVAL_SPLIT: "train" if r.train.evaluate_on == "train" else b.eval_split,
                S.TAG_N_CLASSES: b.num_classes}
        if "feature_cache_hit" in b.meta:
            tags[S.TAG_FEATURE_CACHE_HIT] = str(b.meta["feature_cache_hit"]).lower()
            tags[S.TAG_FEATURE_CACHE_KEY] = b.meta.get("feature_cache_key", "")
        if packed:
            tags.update({S.TAG_PACK_SIZE: len(members), S.TAG_PACK_MEMBER: i, S.TAG_PACK_TRIAL_ID: trial_id or ""})
        tags.update(placement)
        own_id = member_trial_id(trial_id, i) if packed else trial_id
        m.run = TrialRun(tracking, own_id, run_ids[i], run_name(r, tracking.swept_keys), tags)
        if m.run.resumed:
            m.run.set_tags(tags)  # tags are idempotent; a rerun after driver loss re-asserts them
        else:
            m.run.log_params(r.applied_params())


def _tune_result(results: list[dict[str, Any]], epoch: int, packed: bool, final: bool,
                 elapsed: float | None = None) -> dict[str, Any]:
    """What Tune gets: the member's metrics, or for a pack every member's under "m{i}/"."""
    if not packed:
        return results[0]
    out: dict[str, Any] = {"epoch": epoch, "pack_size": len(results)}
    for i, res in enumerate(results):
        out.update(prefixed(res, i))
    if final:
        out[S.METRIC_EPOCHS_COMPLETED] = epoch
        if elapsed is not None:
            out[S.METRIC_TRAIN_TIME_S] = elapsed
    return out


def _train(step: Step, members: list[Member], report: Report | None, start: int, restored: bool,
           packed: bool, t0: float) -> list[dict[str, Any]]:
    tc = members[0].r.train  # epochs and report/checkpoint intervals are shared by a pack's members
    if restored and start > 1:
        for i, m in enumerate(members):
            m.best = max((row.get("val_acc", NEVER) for row in step.history_rows(i, 1, start - 1)), default=NEVER)
    if start > tc.epochs:  # an earlier attempt finished; the driver died before Tune recorded it
        return _already_done(step, members, report, packed)
    fail_at = {m.r.train.fail_at_epoch for m in members} if not restored else set()
    last_logged = start - 1
    for epoch in range(start, tc.epochs + 1):
        if epoch in fail_at:
            raise RuntimeError(f"injected failure at epoch {epoch} (fail_at_epoch)")
        step.run_epoch(epoch)
        final = epoch == tc.epochs
        if epoch % tc.report_interval and not final:
            continue
        results = []
        for i, m in enumerate(members):
            rows = step.history_rows(i, last_logged + 1, epoch)
            for e, row in enumerate(rows, start=last_logged + 1):
                m.best = max(m.best, row.get("val_acc", NEVER))
                if m.run is not None:
                    m.run.add(e, row)
            res = {"epoch": epoch, **rows[-1]}
            if "val_acc" in res:
                res[S.METRIC_BEST_VAL_ACC] = m.best
            results.append(res)
        last_logged = epoch
        checkpoint = final or epoch % tc.checkpoint_interval == 0
        if final:
            _finish(step, members, results, t0)
        for m, res in zip(members, results):
            if m.run is not None:
                if checkpoint:
                    m.run.flush()  # before the report: a checkpoint never runs ahead of what MLflow holds
                else:
                    m.run.flush_if_due()
                res["mlflow_run_id"] = m.run.run_id
        if report is not None:
            state = None
            if checkpoint:
                state = {"epoch": epoch, "trainer": step.state_dict(),
                         "initial_kernels": [m.initial_kernels for m in members],
                         "run_ids": [None if m.run is None else m.run.run_id for m in members]}
            report(_tune_result(results, epoch, packed, final, time.perf_counter() - t0), state)
        if final:
            return results
    raise AssertionError("unreachable: the loop returns at the final epoch")


def _finish(step: Step, members: list[Member], results: list[dict[str, Any]], t0: float) -> None:
    """Final evaluation, evaluators and artifacts of every member; adds the final metrics to `results`."""
    confusion = step.confusion()
    elapsed = time.perf_counter() - t0
    n_params, n_trainable = step.n_params
    for i, (m, res) in enumerate(zip(members, results)):
        r, run = m.r, m.run
        out: dict[str, Any] = {S.METRIC_N_PARAMS: n_params, S.METRIC_N_TRAINABLE_PARAMS: n_trainable,
                               S.METRIC_EPOCHS_COMPLETED: r.train.epochs, S.METRIC_TRAIN_TIME_S: elapsed}
        final_scalars = dict(out)
        if m.best != NEVER:
            final_scalars[S.METRIC_BEST_VAL_ACC] = m.best
        model, bundle = step.eval_inputs(i) if (r.train.evaluators or run is not None) else (None, None)
        artifacts: dict[str, bytes | str] = {}
        for name in r.train.evaluators:
            result = get_evaluator(name)(model, bundle, r.config, step.device)
            out.update(result.metrics)
            final_scalars.update(result.metrics)
            artifacts.update(result.artifacts)
            if run is not None:
                for key, points in result.histories.items():
                    run.add_history(key, points)
        if confusion[i] is not None:
            out["confusion_matrix"] = confusion[i].cpu().tolist()
            collapse = S.collapse_metrics(out["confusion_matrix"])  # per-class recall: collapse is an outcome
            out.update(collapse)
            final_scalars.update(collapse)
        res.update(out)
        if run is None:
            continue
        if run.finished_earlier:  # completed by an earlier attempt that failed on a later member
            run.restore_finished()
            continue
        run.add_final(final_scalars)
        if r.train.log_artifacts:
            conv = first_conv(model)
            final_kernels = None if conv is None else conv.weight.detach().cpu().numpy()
            initial = None if m.initial_kernels is None else m.initial_kernels.numpy()
            artifacts.update(trial_artifacts(r.config, step.history_rows(i, 1, r.train.epochs), m.bundle,
                                             out.get("confusion_matrix"), initial, final_kernels))
        run.flush()
        for path, content in artifacts.items():
            run.log_artifact_bytes(path, content)
        run.complete()


def _already_done(step: Step, members: list[Member], report: Report | None, packed: bool) -> list[dict[str, Any]]:
    """Restored from the final checkpoint without a finished run to read: report the final metrics
    from the restored history again; train and log nothing."""
    epochs = members[0].r.train.epochs
    confusion = step.confusion()
    n_params, n_trainable = step.n_params
    results = []
    for i, m in enumerate(members):
        rows = step.history_rows(i, 1, epochs)
        res = {"epoch": epochs, **rows[-1], S.METRIC_N_PARAMS: n_params, S.METRIC_N_TRAINABLE_PARAMS: n_trainable,
               S.METRIC_EPOCHS_COMPLETED: epochs}
        if "val_acc" in rows[-1]:
            res[S.METRIC_BEST_VAL_ACC] = max(row["val_acc"] for row in rows)
        if confusion[i] is not None:
            res["confusion_matrix"] = confusion[i].cpu().tolist()
            res.update(S.collapse_metrics(res["confusion_matrix"]))
        if m.run is not None:  # not reached with FINISHED runs (see _finished_earlier)
            m.run.complete()
            res["mlflow_run_id"] = m.run.run_id
        results.append(res)
    if report is not None:
        report(_tune_result(results, epochs, packed, final=True), None)
    return results


def _finished_earlier(members: list[Member], report: Report | None, packed: bool) -> list[dict[str, Any]]:
    """An earlier attempt completed every member's run (FINISHED), but the driver died before Tune
    recorded it, so Tune restarted the trial from the last checkpoint it knew of.

    Nothing is trained or logged again: the logged final metrics are reported back to Tune and
    the runs get their FINISHED status and original end time back.
    """
    epochs = members[0].r.train.epochs
    results = []
    for m in members:
        m.run.restore_finished()
        results.append({**m.run.previous.metrics, "epoch": epochs, "mlflow_run_id": m.run.run_id})
    if report is not None:
        report(_tune_result(results, epochs, packed, final=True), None)
    return results
