"""The one generic trainable: builds the pairing named in its config and runs the trial lifecycle.

Used by Tune through `tune.with_parameters(train, tracking=TrackingInfo(...))`; `run_trial`
runs the same code without Tune (tests, benchmarks, notebooks). The lifecycle (restore, MLflow
runs, reports, checkpoints, finish, failure) is trainables.lifecycle, shared with packed trials;
this module holds the builders and the unpacked inner step, `SingleStep` (the plain loop).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from typing import Any

import torch
from torch import nn

from core import phases, store_schema as S
from core import user_modules
from trainables.checkpoint import restore_state, tag_fallback
from trainables.data import DataBundle, build_data
from trainables.lifecycle import Member, Report, initial_kernels, run_members
from trainables.loop import Trainer
from trainables.models import build_model, count_params
from trainables.spec import TrialSpec, resolve_config
from trainables.tracking import TrackingInfo

CHECKPOINT_FILE = "trial_state.pt"
_DATA_CACHE: dict[str, DataBundle] = {}  # a reused actor keeps its last datasets (CPU tensors)
_DATA_CACHE_SIZE = 4
REPORT_TIME = [0.0, 0]  # seconds spent in Tune's report (it blocks until the driver asks for more), count


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


def load_data(r: TrialSpec) -> DataBundle:
    """Build (or reuse from this process's cache) the trial's dataset, as a fresh bundle object."""
    key = json.dumps([r.pairing.dataset, dataclasses.asdict(r.data), r.train.seed], sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = build_data(r.pairing.dataset, r.data, r.train.seed)
    return dataclasses.replace(_DATA_CACHE[key])


def make_model(r: TrialSpec) -> nn.Module:
    """Seed torch with the trial's init seed, then build the pairing's model from the spec's
    constructor keywords (the data-decided ones, num_classes and input sizes, included)."""
    torch.manual_seed(r.train.init_seed)
    return build_model(r.pairing.model, **r.model_kwargs)


class SingleStep:
    """The unpacked inner step: one model trained by the plain loop (trainables.loop.Trainer).

    The data bundle and the model live on `device`; the lifecycle sees one member.
    """

    size = 1

    def __init__(self, r: TrialSpec, device: torch.device):
        self.device = device
        self.bundle = load_data(r).to(device)
        self.model = make_model(r).to(device)
        self.initial_kernels = initial_kernels(self.model)
        self.trainer = Trainer(self.model, self.bundle, r.train, device)
        self.n_params = count_params(self.model)

    def run_epoch(self, epoch: int) -> None:
        self.trainer.run_epoch(epoch)

    def history_rows(self, member: int, first: int, last: int) -> list[dict[str, float]]:
        return self.trainer.history_rows(first, last)

    def confusion(self) -> list[torch.Tensor | None]:
        return [self.trainer.evaluate(confusion=True)[3]]

    def eval_inputs(self, member: int) -> tuple[nn.Module, DataBundle]:
        return self.model, self.bundle

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)


def run_trial(config: dict[str, Any], tracking: TrackingInfo | None = None, report: Report | None = None,
              restore: dict | None = None, trial_id: str | None = None) -> dict[str, Any]:
    """Train one trial end to end: a pack of one member, reported and logged as an unpacked trial.

    Args:
        config: flat trial config (see trainables.spec).
        tracking: where to log in MLflow; None or config log_to_mlflow=False disables logging.
        report: called as report(metrics, state) every `report_interval` epochs and at the end;
            `state` is the checkpoint dict when a checkpoint is due, else None.
        restore: a checkpoint dict from an earlier attempt; training resumes after its epoch.
        trial_id: Tune's trial id, used to find this trial's MLflow run again after a restart.

    Returns:
        The final metrics (last epoch's values, best_val_acc, n_params, confusion_matrix, ...).
    """
    return run_specs([resolve_config(config)], tracking, report, restore, trial_id, packed=False)[0]


def run_specs(rs: list[TrialSpec], tracking: TrackingInfo | None, report: Report | None, restore: dict | None,
              trial_id: str | None, packed: bool) -> list[dict[str, Any]]:
    """The one set-up of every trial, unpacked (`run_trial`) or packed (`trainables.packed_trainable.run_pack`):
    the members' shared thread count and device, their inner step (one member: the plain loop,
    `SingleStep`; more: `PackedStep`), then the lifecycle (trainables.lifecycle.run_members).

    `packed` is the reporting format: "m{i}/..." metrics and pack tags (every `sweep run --pack`
    trial, a pack of one included), or the plain unpacked trial's. Returns each member's final metrics.
    """
    tc = rs[0].train  # threads and device are shared by a pack's members (trainables.packing.pack_key)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = pick_device(tc.device)
    t0 = time.perf_counter()
    if len(rs) == 1:
        step = SingleStep(rs[0], device)
        members = [Member(rs[0], step.bundle, step.initial_kernels)]
    else:
        from trainables.packed_trainable import PackedStep  # vmapped members: only a pack imports them

        step = PackedStep(rs, device)
        members = [Member(r, b, k) for r, b, k in zip(rs, step.bundles, step.initial_kernels)]
    phases.mark("trial_built")
    return run_members(step, members, tracking=tracking, report=report, restore=restore, trial_id=trial_id,
                       packed=packed, t0=t0, placement=ray_placement(device))


def tune_session() -> tuple[dict | None, Report, str]:
    """Inside a Tune trial: (state restored from tune.get_checkpoint() or None, a report function
    that saves a state dict as the checkpoint, the trial id)."""
    import logging

    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per report is noise
    restore = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a corrupt one falls back to an older one or none (trainables.checkpoint)
        restore = restore_state(checkpoint, CHECKPOINT_FILE, tune.get_context().get_trial_id())

    def report(metrics: dict, state: dict | None) -> None:
        t = time.perf_counter()
        if state is None:
            tune.report(metrics)
        else:
            with tempfile.TemporaryDirectory() as d:
                torch.save(state, os.path.join(d, CHECKPOINT_FILE))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        REPORT_TIME[0] += time.perf_counter() - t
        REPORT_TIME[1] += 1

    return restore, report, tune.get_context().get_trial_id()


def train(config: dict[str, Any], tracking: TrackingInfo | None = None, modules: tuple = ()) -> None:
    """Ray Tune function trainable: resumes from `tune.get_checkpoint()` and reports with checkpoints.

    `modules` are the sweep's user modules (core.user_modules.ModuleRef): loaded, with their
    recorded hashes, before the trial resolves its config, so user models and datasets exist here.
    """
    phases.mark("trial_start")
    user_modules.ensure(modules)
    restore, report, trial_id = tune_session()
    tag_fallback(tracking, trial_id)
    phases.mark("trial_session")
    REPORT_TIME[:] = [0.0, 0]
    run_trial(config, tracking, report, restore, trial_id=trial_id)
    phases.mark("trial_end", report_s=round(REPORT_TIME[0], 3), reports=REPORT_TIME[1])
