"""A packed trial: one Tune trial trains K trials as one vmapped model (trainables.packing).

Each member is logged exactly like an unpacked trial (same params, tags, per-epoch metrics and
artifacts, in its own MLflow child run, found again by the trial id f"{tune_trial_id}-m{i}"),
plus the tags pack_size, pack_member and pack_trial_id. The Tune result holds every member's
metrics under "m{i}/<metric>". A pack of one member is simply an unpacked trial (`run_trial`),
which is how `sweep run --pack K` falls back for trials that packing would not speed up.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from core import store_schema as S
from trainables.evaluators import get_evaluator
from trainables.models import count_params
from core.errors import ConfigError
from trainables.packing import PACK_VARYING, PackedTrainer, pack_key
from trainables.resolve import resolve_config
from trainables.tracking import TrackingInfo, TrialRun
from trainables.trainable import (_trial_artifacts, first_conv, load_data, make_model, tune_session,
                                  pick_device, ray_placement, run_name, run_trial)


def member_trial_id(trial_id: str | None, member: int) -> str | None:
    """The MLflow `trial_id` tag of pack member `member` (None without a Tune trial id)."""
    return None if trial_id is None else f"{trial_id}-m{member}"


def prefixed(metrics: dict[str, Any], member: int) -> dict[str, Any]:
    """Member `member`'s metrics under "m{member}/<key>" for the pack's Tune result (no confusion matrix)."""
    return {f"m{member}/{k}": v for k, v in metrics.items() if k != "confusion_matrix"}


class _MemberView:
    """What `_trial_artifacts` reads from a Trainer, for one pack member."""

    def __init__(self, trainer: PackedTrainer, member: int):
        self.trainer, self.member = trainer, member

    def history_rows(self, first: int, last: int) -> list[dict[str, float]]:
        return self.trainer.history_rows(self.member, first, last)


def run_pack(configs: list[dict[str, Any]], tracking: TrackingInfo | None = None,
             report: Callable[[dict, dict | None], None] | None = None,
             restore: dict | None = None, trial_id: str | None = None) -> list[dict[str, Any]]:
    """Train the trials `configs` together and return each member's final metrics.

    Args:
        configs: flat trial configs that differ only in trainables.packing.PACK_VARYING keys.
        tracking: MLflow destination (None or log_to_mlflow=False: no logging).
        report: called as report(metrics, state) like run_trial's, with "m{i}/..." metrics.
        restore: a checkpoint state from an earlier attempt of this pack.
        trial_id: the Tune trial id; member i logs under member_trial_id(trial_id, i).

    Returns:
        One final-metrics dict per member, as run_trial returns for an unpacked trial.
    """
    if len(configs) == 1:
        return [_run_single(configs[0], tracking, report, restore, trial_id)]
    rs = [resolve_config(c) for c in configs]
    _check_same_pack(rs)
    tc = rs[0].train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = pick_device(tc.device)
    t0 = time.perf_counter()
    bundles = [load_data(r) for r in rs]
    models = [make_model(r, b) for r, b in zip(rs, bundles)]
    convs = [first_conv(m) for m in models]
    kernels = [None if c is None else c.weight.detach().cpu().clone() for c in convs]
    trainer = PackedTrainer(models, bundles, [r.train for r in rs], device)
    n_params = count_params(models[0])
    del models, convs
    start, run_ids = 1, [None] * len(rs)
    if restore is not None:
        trainer.load_state_dict(restore["trainer"])
        kernels, run_ids, start = restore["initial_kernels"], restore["run_ids"], restore["epoch"] + 1
    runs = _open_runs(rs, bundles, tracking, trial_id, run_ids, ray_placement(device))
    if runs and all(_finished(run) for run in runs):
        return _finished_earlier(rs, runs, report)
    try:
        return _train(rs, trainer, bundles, runs, kernels, n_params, report, start, restore is not None, t0)
    except BaseException as exc:
        # SystemExit is Tune stopping the trial inside tune.report: the driver's callbacks record that.
        for run in runs if not isinstance(exc, SystemExit) else ():
            if run is not None:
                try:
                    run.finish("FAILED", {S.TAG_STATUS_REASON: S.STATUS_FAILED, S.TAG_ERROR: f"{type(exc).__name__}: {exc}"[:5000]})
                except Exception:
                    pass  # the original error matters more than a failed bookkeeping call
        raise


def _check_same_pack(rs) -> None:
    """Raise ConfigError naming the first key (outside PACK_VARYING) in which two members differ."""
    first = dict(pack_key(rs[0].config))
    for r in rs[1:]:
        other = dict(pack_key(r.config))
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise ConfigError(f"packed trials must share {key!r}: got {first.get(key)} and {other.get(key)}; "
                                  f"members may differ only in {', '.join(PACK_VARYING)}")


def _run_single(config, tracking, report, restore, trial_id) -> dict[str, Any]:
    """An unpacked trial reporting in the pack format (metrics under "m0/")."""
    def wrapped(metrics: dict, state: dict | None) -> None:
        out = {"epoch": metrics["epoch"], "pack_size": 1, **prefixed(metrics, 0)}
        if "epochs_completed" in metrics:
            out["epochs_completed"] = metrics["epochs_completed"]
        report(out, None if state is None else {"single": state})

    if tracking is not None:
        tags = {"pack_size": "1", "pack_member": "0", "pack_trial_id": trial_id or ""}
        tracking = dataclasses.replace(tracking, extra_tags={**tracking.extra_tags, **tags})
    return run_trial(config, tracking, wrapped if report else None, (restore or {}).get("single"),
                     trial_id=member_trial_id(trial_id, 0))


def _finished(run: TrialRun | None) -> bool:
    """Whether an earlier attempt already completed this member's MLflow run."""
    return run is not None and run.previous is not None and run.previous.info.status == "FINISHED"


def _finished_earlier(rs, runs, report) -> list[dict[str, Any]]:
    """Every member's run was completed by an earlier attempt whose end Tune never recorded (the
    driver died): report the logged final metrics again; train and log nothing (as run_trial)."""
    epochs = rs[0].train.epochs
    metrics: dict[str, Any] = {"epoch": epochs, "pack_size": len(rs), "epochs_completed": epochs}
    members = []
    for i, run in enumerate(runs):
        prev = run.previous
        run._retry(lambda: run.client.set_terminated(run.run_id, status="FINISHED", end_time=prev.info.end_time))
        m = {**prev.data.metrics, "epoch": epochs, "mlflow_run_id": run.run_id}
        metrics.update(prefixed(m, i))
        members.append(m)
    if report is not None:
        report(metrics, None)
    return members


def _open_runs(rs, bundles, tracking, trial_id, run_ids, placement) -> list[TrialRun | None]:
    runs: list[TrialRun | None] = []
    for i, (r, b) in enumerate(zip(rs, bundles)):
        if tracking is None or not r.train.log_to_mlflow:
            runs.append(None)
            continue
        tags = {"pairing": r.pairing.name, "model": r.pairing.model, "dataset": r.pairing.dataset,
                "seed": r.train.seed, "eval_split": "train" if r.train.evaluate_on == "train" else b.eval_split,
                "pack_size": len(rs), "pack_member": i, "pack_trial_id": trial_id or "", **placement}
        run = TrialRun(tracking, member_trial_id(trial_id, i), run_ids[i], run_name(r, tracking.swept_keys), tags)
        if run.resumed:
            run.set_tags(tags)
        else:
            run.log_params(r.applied_params())
        runs.append(run)
    return runs


def _train(rs, trainer, bundles, runs, kernels, n_params, report, start, restored, t0) -> list[dict[str, Any]]:
    tc, K = rs[0].train, len(rs)
    best = [float("-inf")] * K
    if restored and start > 1:
        for i in range(K):
            best[i] = max((row.get("val_acc", float("-inf")) for row in trainer.history_rows(i, 1, start - 1)),
                          default=float("-inf"))
    last_flushed = start - 1
    if start > tc.epochs:  # an earlier attempt finished; the driver died before Tune recorded it
        return _already_done(rs, trainer, runs, n_params, report)
    for epoch in range(start, tc.epochs + 1):
        trainer.run_epoch(epoch)
        final = epoch == tc.epochs
        if epoch % tc.report_interval and not final:
            continue
        members = []
        for i in range(K):
            rows = trainer.history_rows(i, last_flushed + 1, epoch)
            for step, row in enumerate(rows, start=last_flushed + 1):
                best[i] = max(best[i], row.get("val_acc", float("-inf")))
                if runs[i] is not None:
                    runs[i].add(step, row)
            m = {"epoch": epoch, **rows[-1]}
            if "val_acc" in m:
                m["best_val_acc"] = best[i]
            members.append(m)
        last_flushed = epoch
        if final:
            _finish(rs, trainer, bundles, runs, kernels, n_params, members, best, t0)
        for i, run in enumerate(runs):
            if run is not None:
                run.flush()  # before the report: a checkpoint never runs ahead of what MLflow holds
                members[i]["mlflow_run_id"] = run.run_id
        metrics: dict[str, Any] = {"epoch": epoch, "pack_size": K}
        for i, m in enumerate(members):
            metrics.update(prefixed(m, i))
        if final:
            metrics.update(epochs_completed=tc.epochs, train_time_s=time.perf_counter() - t0)
        if report is not None:
            state = None
            if final or epoch % tc.checkpoint_interval == 0:
                state = {"epoch": epoch, "trainer": trainer.state_dict(), "initial_kernels": kernels,
                         "run_ids": [None if r is None else r.run_id for r in runs]}
            report(metrics, state)
        if final:
            return members
    raise AssertionError("unreachable: the loop returns at the final epoch")


def _already_done(rs, trainer, runs, n_params, report) -> list[dict[str, Any]]:
    """Restored from the final checkpoint without finished runs to read: report the final metrics
    from the restored history again; train and log nothing."""
    epochs = rs[0].train.epochs
    _, _, _, cm = trainer.evaluate(confusion=True)
    metrics: dict[str, Any] = {"epoch": epochs, "pack_size": len(rs), "epochs_completed": epochs}
    members = []
    for i, run in enumerate(runs):
        rows = trainer.history_rows(i, 1, epochs)
        m = {"epoch": epochs, **rows[-1], "n_params": n_params[0], "n_trainable_params": n_params[1],
             "epochs_completed": epochs}
        if "val_acc" in rows[-1]:
            m["best_val_acc"] = max(row["val_acc"] for row in rows)
        if run is not None:
            run.finish("FINISHED", {S.TAG_STATUS_REASON: S.STATUS_COMPLETED})
            m["mlflow_run_id"] = run.run_id
        metrics.update(prefixed(m, i))
        if cm is not None:
            m["confusion_matrix"] = cm[i].cpu().tolist()
        members.append(m)
    if report is not None:
        report(metrics, None)
    return members


def _finish(rs, trainer, bundles, runs, kernels, n_params, members, best, t0) -> None:
    """Final evaluation, evaluators and artifacts of every member; adds final metrics to `members`."""
    _, _, _, cm = trainer.evaluate(confusion=True)
    elapsed = time.perf_counter() - t0
    for i, (r, m) in enumerate(zip(rs, members)):
        out: dict[str, Any] = {"n_params": n_params[0], "n_trainable_params": n_params[1],
                               "epochs_completed": r.train.epochs, "train_time_s": elapsed}
        final_scalars = dict(out)
        if best[i] != float("-inf"):
            final_scalars["best_val_acc"] = best[i]
        model = trainer.member_model(i) if (r.train.evaluators or runs[i] is not None) else None
        artifacts: dict[str, bytes | str] = {}
        for name in r.train.evaluators:
            result = get_evaluator(name)(model, bundles[i].to(trainer.device), r.config, trainer.device)
            out.update(result.metrics)
            final_scalars.update(result.metrics)
            artifacts.update(result.artifacts)
            if runs[i] is not None:
                for key, points in result.histories.items():
                    for step, value in points:
                        runs[i].buffer.append((key, float(value), int(step)))
        if cm is not None:
            out["confusion_matrix"] = cm[i].cpu().tolist()
        m.update(out)
        run = runs[i]
        if run is None:
            continue
        if _finished(run):  # completed by an earlier attempt that failed on a later member
            run._retry(lambda: run.client.set_terminated(run.run_id, status="FINISHED",
                                                         end_time=run.previous.info.end_time))
            continue
        run.add_final(final_scalars)
        if r.train.log_artifacts:
            initial = None if kernels[i] is None else kernels[i].numpy()
            artifacts.update(_trial_artifacts(r, _MemberView(trainer, i), bundles[i], model, first_conv(model),
                                              initial, out))
        run.flush()
        for path, content in artifacts.items():
            run.log_artifact_bytes(path, content)
        run.finish("FINISHED", {S.TAG_STATUS_REASON: S.STATUS_COMPLETED})


def train_pack(config: dict[str, Any], tracking: TrackingInfo | None = None) -> None:
    """Ray Tune function trainable for `sweep run --pack K`: config["members"] lists the member configs."""
    restore, report, trial_id = tune_session()
    run_pack(list(config["members"]), tracking, report, restore, trial_id=trial_id)
