"""ASHA that compares a trial only with trials of its own pairing.

One shared ASHA would rank a CNN trial against MLP trials at the same epoch; the models learn at
different speeds, so one model's early progress would stop the other's trials and the search
could end with no finished trial for a model whose best settings it was asked for.
"""
from __future__ import annotations

import pickle
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler


class PerPairingASHA(FIFOScheduler):
    """One ASHAScheduler per value of `config[key]` (default: the pairing), created on first use.

    Args:
        key: trial-config key that defines the groups.
        **asha: ASHAScheduler arguments (time_attr, max_t, grace_period, reduction_factor).
    """

    def __init__(self, key: str = "pairing", **asha: Any):
        super().__init__()
        self.key, self.asha = key, asha
        self._metric, self._mode = None, None
        self._groups: dict[str, ASHAScheduler] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def group(self, trial) -> ASHAScheduler:
        """The ASHA of this trial's group (created with the search's metric and mode)."""
        name = str(trial.config.get(self.key))
        if name not in self._groups:
            if not self._metric or not self._mode:
                raise ValueError("PerPairingASHA needs metric and mode: pass them to tune.TuneConfig")
            self._groups[name] = ASHAScheduler(metric=self._metric, mode=self._mode, **self.asha)
        return self._groups[name]

    def on_trial_add(self, tune_controller, trial) -> None:
        self.group(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.group(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self.group(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.group(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"[{name}] {s.debug_string()}" for name, s in sorted(self._groups.items())) or \
            "Using AsyncHyperBand per pairing (no trials yet)"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


__all__ = ["PerPairingASHA"]
