"""The typed trial spec: one function turns a flat cell into frozen train, data and model parts.

A cell is the flat dict a sweep gives one trial (`{"pairing": "simple_cnn/edges", "lr": 0.01,
...}`). `resolve_config` overlays it on the pairing's protocol defaults and splits it into
`TrainConfig`, the dataset's config dataclass, the model's constructor keywords and the
evaluators' configs. It is the only place that reads the dict; the driver calls it once per
cell (cluster/planning/plan.py) and the trial rebuilds the same spec from the same cell.

Which keys a pairing uses is read from the parts themselves: the config dataclasses' fields and
the model constructor's signature (trainables.models.model_config_keys), minus the keys that
have no effect given the others (each part's `inactive_keys`, e.g. momentum under Adam). A key
the cell sets that the pairing does not use is a ConfigError naming the key and the pairings
that would accept it, so every value a trial logs as a param was applied.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainables.config import TrainConfig
from trainables.data import DATASETS, get_dataset
from core.errors import ConfigError
from trainables.evaluators import EVALUATOR_CONFIGS, get_evaluator
from trainables.models import (MODELS, check_model_fits, inactive_model_keys, model_config_keys,
                               model_kwargs)
from trainables.pairings import PAIRINGS, Pairing, get_pairing

FAULT_ENV = "SWEEP_ALLOW_FAULT_INJECTION"
# Set by the driver on trials whose configs it enumerates itself (cluster.planning.plan: a grid axis only
# some pairings use); it indexes the plan's cells and is no setting of the trial.
CELL_KEY = "_cell"


def _evaluator_keys(names=None) -> set[str]:
    keys: set[str] = set()
    for name, cls in EVALUATOR_CONFIGS.items():
        if names is None or name in names:
            keys |= cls.keys()
    return keys


def pairing_keys(name: str) -> set[str]:
    """Every key pairing `name` can use: training, its dataset's, its model's, any evaluator's."""
    p = get_pairing(name)
    return (set(TrainConfig.keys()) | get_dataset(p.dataset).config.keys() | set(model_config_keys(p.model))
            | _evaluator_keys())


_KNOWN: dict[tuple, tuple[frozenset[str], tuple]] = {}


def known_keys() -> set[str]:
    """Every key some pairing can use (cached per state of the registries)."""
    objects = tuple(x for part in (PAIRINGS.items(), MODELS.items(), ((k, d.config) for k, d in DATASETS.items()))
                    for item in part for x in item)
    state = tuple(map(id, objects))  # the cache holds `objects`, so no id is reused while it is cached
    if state not in _KNOWN:
        _KNOWN.clear()
        _KNOWN[state] = (frozenset(_known_keys()), objects)
    return set(_KNOWN[state][0])


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for name in PAIRINGS:
        keys |= pairing_keys(name)
    for spec in DATASETS.values():  # a dataset no pairing uses yet still names its keys
        keys |= spec.config.keys()
    return keys


def accepting_pairings(key: str) -> list[str]:
    """The registered pairings that can use `key` (for error messages)."""
    return [name for name in PAIRINGS if key in pairing_keys(name)]


def check_keys(config: Mapping[str, Any]) -> None:
    """Raise ConfigError for keys no pairing has, suggesting close names."""
    known = known_keys()
    for key in config:
        if key not in known and key != CELL_KEY:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}.{hint} Run `sweep list keys` to see every key.")


def unused_key_message(key: str, where: str, why: str | None = None) -> str:
    """The message for a key set by the user that `where` (a pairing or a sweep) does not use.

    `why` says what the key depends on when `where` could use it with other settings.
    """
    if why:
        return f"{key!r} has no effect on {where}: {why}; drop it or set what it depends on"
    accepting = accepting_pairings(key)
    return (f"{key!r} is not used by {where}; pairings that accept it: "
            f"{', '.join(accepting) if accepting else 'none'}")


@dataclass(frozen=True)
class TrialSpec:
    """A trial config split into its validated, typed parts.

    Attributes:
        pairing: the Pairing (model and dataset names, protocol defaults).
        train: training settings.
        data: the dataset's config dataclass instance.
        model_kwargs: the model constructor's keywords: the user's model settings (mapped to the
            constructor's names) plus the ones the data decides (num_classes, input_dim, ...).
        evaluators: evaluator name -> its config instance (None when it has no settings).
        input_shape: shape of one input as the dataset makes it.
        config: the applied settings, flat: pairing defaults overlaid by the cell, keeping only
            keys with an effect on this trial. What the trial logs as params.
        unused: keys of the cell without effect here -> why (None: the pairing never uses it);
            empty unless resolved with strict=False.
    """

    pairing: Pairing
    train: TrainConfig
    data: Any
    model_kwargs: dict[str, Any]
    evaluators: dict[str, Any]
    input_shape: tuple[int, ...]
    config: dict[str, Any]
    unused: dict[str, str | None] = field(default_factory=dict)

    @property
    def model(self) -> dict[str, Any]:
        return self.model_kwargs

    def applied_params(self) -> dict[str, Any]:
        """The settings to log as the trial's params: every one of them changed the trial."""
        return dict(self.config)

    def build_signature(self) -> str:
        """What decides whether this trial can build and run a batch: pairing, model keywords (the
        init seed aside), data config, loss and evaluation split. Equal for the seeds of one cell."""
        kwargs = {k: v for k, v in self.model_kwargs.items() if k != "seed"}
        data = dataclasses.asdict(self.data) if dataclasses.is_dataclass(self.data) else repr(self.data)
        return json.dumps([self.pairing.name, kwargs, data, self.train.loss, self.train.evaluate_on],
                          sort_keys=True, default=str)


def _part(full: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    """The settings of one part (training, data, an evaluator): each config class is handed its own
    keys only, never the flat dict of the whole trial."""
    return {k: v for k, v in full.items() if k in keys}


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _derived_kwargs(accepted: set[str], input_shape: tuple[int, ...], num_classes: int, seed: int) -> dict:
    """The constructor keywords the data and the trial's init seed decide."""
    values = {"input_dim": input_shape, "seed": seed}
    if num_classes:
        values["num_classes"] = num_classes
    if len(input_shape) == 3:
        values["in_channels"] = input_shape[0]
    if len(input_shape) == 1:
        values["in_features"] = input_shape[0]
    return {k: v for k, v in values.items() if k in accepted}


def resolve_config(cell: Mapping[str, Any], strict: bool = True) -> TrialSpec:
    """Validate a flat trial config and split it into a TrialSpec.

    Args:
        cell: flat trial config; None values mean "not set for this trial".
        strict: a key of `cell` this pairing does not use is an error; with False it is left
            out and listed in `TrialSpec.unused` (the driver uses this to route keys per pairing).

    Raises:
        ConfigError: naming the first bad key or value.
    """
    cell = {k: v for k, v in cell.items() if v is not None and k != CELL_KEY}
    if "pairing" not in cell:
        raise ConfigError("trial config has no 'pairing' key")
    check_keys(cell)
    pairing = get_pairing(cell["pairing"])
    full = {**pairing.defaults, **cell}
    train = TrainConfig.from_config(_part(full, TrainConfig.keys()))
    if train.fail_at_epoch is not None and os.environ.get(FAULT_ENV) != "1":
        raise ConfigError(f"fail_at_epoch is a fault-injection option for tests; set {FAULT_ENV}=1 to use it")
    evaluators: dict[str, Any] = {}
    for name in train.evaluators:
        get_evaluator(name)
        cls = EVALUATOR_CONFIGS.get(name)
        evaluators[name] = cls.from_config(_part(full, cls.keys())) if cls is not None else None
    dataset = get_dataset(pairing.dataset)
    data = dataset.config.from_config(_part(full, dataset.config.keys()))
    input_shape = tuple(dataset.input_shape(data))

    names = model_config_keys(pairing.model)  # config key -> constructor keyword
    given = {kw: _freeze(full[key]) for key, kw in names.items() if key in full}
    inactive_kw = inactive_model_keys(pairing.model, given)
    kwargs = {kw: v for kw, v in given.items() if kw not in inactive_kw}
    check_model_fits(pairing.model, kwargs, input_shape)
    kwargs.update(_derived_kwargs(model_kwargs(pairing.model), input_shape, dataset.num_classes(data),
                                  train.init_seed))

    usable = set(TrainConfig.keys()) | data.keys() | set(names) | _evaluator_keys(evaluators)
    why = {**train.inactive_keys(), **getattr(data, "inactive_keys", dict)()}
    why.update({key: inactive_kw[kw] for key, kw in names.items() if kw in inactive_kw})
    active = usable - set(why)
    for name, cls in EVALUATOR_CONFIGS.items():  # settings of an evaluator this trial does not run
        why.update({k: f"{k} needs evaluators to include {name!r}" for k in cls.keys() - usable})
    unused = {k: why.get(k) for k in cell if k not in active}
    if unused and strict:
        key = next(iter(unused))
        raise ConfigError(unused_key_message(key, f"pairing {pairing.name}", unused[key]))
    config = {k: v for k, v in full.items() if k in active}
    return TrialSpec(pairing, train, data, kwargs, evaluators, input_shape, config, unused)
