"""Turn a flat trial config into validated parts: TrainConfig, pairing, dataset config, model kwargs.

The driver calls `resolve_config` on every cell before anything runs, so bad input fails with a
clear ConfigError before Ray or MLflow are touched; the trial calls it again to build itself.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

from trainables.config import TrainConfig
from trainables.data import DATASETS, get_dataset
from core.errors import ConfigError
from trainables.evaluators import EVALUATOR_CONFIGS, get_evaluator
from trainables.models import model_kwargs
from trainables.pairings import PAIRINGS, Pairing, get_pairing

FAULT_ENV = "SWEEP_ALLOW_FAULT_INJECTION"


def known_keys() -> set[str]:
    """Every key some trial config can hold (training, any dataset, any pairing's model args)."""
    keys = set(TrainConfig.keys())
    for spec in DATASETS.values():
        keys |= spec.config.keys()
    for p in PAIRINGS.values():
        keys |= set(p.model_args) | set(p.defaults)
    for cls in EVALUATOR_CONFIGS.values():  # e.g. shift_max of the shift_robustness evaluator
        keys |= cls.keys()
    return keys


def check_keys(config: dict[str, Any]) -> None:
    """Raise ConfigError for keys no config has, suggesting close names."""
    known = known_keys()
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}.{hint} Run `sweep list keys` to see every key.")


@dataclass(frozen=True)
class Resolved:
    """A trial config split into its validated parts."""

    config: dict[str, Any]  # pairing defaults overlaid by the trial's own values
    train: TrainConfig
    pairing: Pairing
    data: Any  # the dataset's config dataclass instance
    model_kwargs: dict[str, Any]


def resolve_config(config: dict[str, Any]) -> Resolved:
    """Validate a trial config and split it; raises ConfigError naming the first bad value."""
    # None means "not set for this trial" (e.g. a per-pairing key of another pairing).
    config = {k: v for k, v in config.items() if v is not None}
    if "pairing" not in config:
        raise ConfigError("trial config has no 'pairing' key")
    check_keys(config)
    pairing = get_pairing(config["pairing"])
    full = {**pairing.defaults, **config}
    train = TrainConfig.from_config(full)
    if train.fail_at_epoch is not None and os.environ.get(FAULT_ENV) != "1":
        raise ConfigError(f"fail_at_epoch is a fault-injection option for tests; set {FAULT_ENV}=1 to use it")
    for name in train.evaluators:
        get_evaluator(name)
        if name in EVALUATOR_CONFIGS:
            EVALUATOR_CONFIGS[name].from_config(full)
    data = get_dataset(pairing.dataset).config.from_config(full)
    accepted = model_kwargs(pairing.model)
    kwargs = {arg: full[key] for key, arg in pairing.model_args.items() if key in full and arg in accepted}
    if isinstance(kwargs.get("hidden_dims"), list):
        kwargs["hidden_dims"] = tuple(kwargs["hidden_dims"])
    if "seed" in accepted and "seed" not in kwargs:
        kwargs["seed"] = train.init_seed
    size = getattr(data, "spatial_resolution", None)
    k = full.get("kernel_size")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1 or (size and k > size)):
        raise ConfigError(f"kernel_size must be an integer in [1, {size or 'image size'}], got {k!r}")
    return Resolved(full, train, pairing, data, kwargs)
