"""A packed trial: one Tune trial trains K trials as one vmapped model (trainables.packing).

Each member is logged exactly like an unpacked trial (same params, tags, per-epoch metrics and
artifacts, in its own MLflow child run, found again by the trial id f"{tune_trial_id}-m{i}"),
plus the tags pack_size, pack_member and pack_trial_id. The Tune result holds every member's
metrics under "m{i}/<metric>". The lifecycle is trainables.lifecycle, shared with unpacked
trials, and so is the set-up (trainables.trainable.run_specs: an unpacked trial is a pack of
one); this module holds the packed inner step, `PackedStep`. A pack of one member runs the
plain loop (`SingleStep`), which is how `sweep run --pack K` falls back for trials that packing
would not speed up.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core import user_modules
from core.errors import ConfigError
from trainables.data import DataBundle
from trainables.lifecycle import Report, initial_kernels
from trainables.models import count_params
from trainables.packing import PACK_VARYING, PackedTrainer, pack_key
from trainables.spec import TrialSpec, resolve_config
from trainables.tracking import TrackingInfo
from trainables.trainable import load_data, make_model, run_specs, tune_session


class PackedStep:
    """The packed inner step: K members of one architecture trained as one vmapped model.

    The bundles stay on the CPU (PackedTrainer stacks what it needs onto the device); the
    members' own models are rebuilt from the stacked parameters only for the final evaluation.
    """

    def __init__(self, rs: list[TrialSpec], device: torch.device):
        self.bundles = [load_data(r) for r in rs]
        models = [make_model(r) for r in rs]
        self.initial_kernels = [initial_kernels(m) for m in models]
        self.trainer = PackedTrainer(models, self.bundles, [r.train for r in rs], device)
        self.n_params = count_params(models[0])
        self.size, self.device = len(rs), self.trainer.device

    def run_epoch(self, epoch: int) -> None:
        self.trainer.run_epoch(epoch)

    def history_rows(self, member: int, first: int, last: int) -> list[dict[str, float]]:
        return self.trainer.history_rows(member, first, last)

    def confusion(self) -> list[torch.Tensor | None]:
        cm = self.trainer.evaluate(confusion=True)[3]
        return [None if cm is None else cm[i] for i in range(self.size)]

    def eval_inputs(self, member: int) -> tuple[nn.Module, DataBundle]:
        return self.trainer.member_model(member), self.bundles[member].to(self.device)

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)


def run_pack(configs: list[dict[str, Any]], tracking: TrackingInfo | None = None, report: Report | None = None,
             restore: dict | None = None, trial_id: str | None = None) -> list[dict[str, Any]]:
    """Train the trials `configs` together and return each member's final metrics.

    Args:
        configs: flat trial configs that differ only in trainables.packing.PACK_VARYING keys.
        tracking: MLflow destination (None or log_to_mlflow=False: no logging).
        report: called as report(metrics, state) like run_trial's, with "m{i}/..." metrics.
        restore: a checkpoint state from an earlier attempt of this pack.
        trial_id: the Tune trial id; member i logs under lifecycle.member_trial_id(trial_id, i).

    Returns:
        One final-metrics dict per member, as run_trial returns for an unpacked trial.
    """
    rs = [resolve_config(c) for c in configs]
    _check_same_pack(rs)
    return run_specs(rs, tracking, report, restore, trial_id, packed=True)


def _check_same_pack(rs: list[TrialSpec]) -> None:
    """Raise ConfigError naming the first key (outside PACK_VARYING) in which two members differ."""
    first = dict(pack_key(rs[0].config))
    for r in rs[1:]:
        other = dict(pack_key(r.config))
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise ConfigError(f"packed trials must share {key!r}: got {first.get(key)} and {other.get(key)}; "
                                  f"members may differ only in {', '.join(PACK_VARYING)}")


def train_pack(config: dict[str, Any], tracking: TrackingInfo | None = None, modules: tuple = ()) -> None:
    """Ray Tune function trainable for `sweep run --pack K`: config["members"] lists the member configs;
    `modules` are the sweep's user modules (core.user_modules.ModuleRef), loaded first."""
    user_modules.ensure(modules)
    restore, report, trial_id = tune_session()
    run_pack(list(config["members"]), tracking, report, restore, trial_id=trial_id)
