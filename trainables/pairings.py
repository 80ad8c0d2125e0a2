"""Pairing registry: which model trains on which dataset, with which protocol defaults.

A pairing is named "model/dataset". Its `defaults` are the SPEC protocol for that pairing
(optimiser, lr, epochs, batch sizes, dataset variant); experiments and `--set` override them.
Which keys reach the model is read from the model's constructor (trainables.spec), so a pairing
is one line: model, dataset and defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core import registry
from core.errors import ConfigError, UnknownName
from trainables.models import MODELS


@dataclass(frozen=True)
class Pairing:
    """One model x dataset combination.

    Attributes:
        model: key of trainables.models.MODELS.
        dataset: key of trainables.data.DATASETS.
        defaults: config defaults for this pairing (protocol of SPEC section 3).
    """

    model: str
    dataset: str
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}"


# SPEC 3.1: SGD momentum 0.9, cross-entropy, no weight decay, no schedule.
EDGE = dict(optimizer="sgd", momentum=0.9, weight_decay=0.0, scheduler="none", lr=1e-2,
            batch_size=32, eval_batch_size=256, loss="cross_entropy")
# SPEC 3.4 protocols.
LAB = dict(optimizer="adam", lr=1e-3, weight_decay=1e-4, scheduler="cosine", t_max=20, epochs=20,
           batch_size=128, eval_batch_size=128, loss="cross_entropy", normalization="half",
           split="test")
BASE = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, scheduler="none", epochs=5,
            batch_size=128, eval_batch_size=128, loss="cross_entropy", normalization="cifar",
            split="45k5k")
PARAM = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, scheduler="none", epochs=3,
             batch_size=64, eval_batch_size=64, loss="cross_entropy", normalization="none",
             split="test")
MNIST = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, scheduler="none", epochs=10,
             batch_size=64, eval_batch_size=1000, loss="cross_entropy", normalization="mnist")
DETECT = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, scheduler="none", epochs=25,
              batch_size=64, eval_batch_size=256, loss="mse", evaluators=("iou_probes",))
PROBE = dict(optimizer="adam", lr=1e-3, weight_decay=1e-4, scheduler="cosine", t_max=20,
             epochs=20, batch_size=256, eval_batch_size=512, loss="cross_entropy")


def _p(model: str, dataset: str, **defaults) -> Pairing:
    return Pairing(model, dataset, defaults)


# The standard protocol of each dataset, for models that declare their own pairings (below).
DATASET_PROTOCOLS: dict[str, dict[str, Any]] = {
    "edges": EDGE, "localization": DETECT, "cifar10": LAB, "mnist": MNIST, "cifar10_features": PROBE,
}

PAIRINGS: dict[str, Pairing] = {p.name: p for p in [
    _p("simple_cnn", "edges", **EDGE, kernel_size=7, num_filter=3),
    _p("simple_cnn_avgpool", "edges", **EDGE, kernel_size=7, num_filter=3),
    _p("wider_cnn", "edges", **EDGE, kernel_size=3, num_filter=6),
    _p("deeper_cnn", "edges", **EDGE, kernel_size=3, num_filter=3),
    _p("three_layer_cnn", "edges", **EDGE, kernel_size=7, num_filter=64),
    _p("two_layer_mlp", "edges", **EDGE, hidden_dim=10),
    _p("three_layer_mlp", "edges", **EDGE, hidden_dims=(50, 10)),
    _p("lab_mlp", "cifar10", **LAB),
    _p("lab_cnn", "cifar10", **LAB),
    _p("mlp_baseline", "cifar10", **BASE),
    _p("base_cnn", "cifar10", **BASE),
    _p("simple_mlp", "cifar10", **PARAM),
    _p("convnet", "cifar10", **PARAM),
    _p("convnet_small", "cifar10", **PARAM),
    _p("convnet_tiny", "cifar10", **PARAM),
    _p("mnist_mlp", "mnist", **{**MNIST, "normalization": "half", "eval_batch_size": 64}),
    _p("lenet5", "mnist", **MNIST),
    _p("modified_resnet18", "mnist", **MNIST),
    _p("mlp_detector", "localization", **DETECT),
    _p("cnn_detector", "localization", **DETECT),
    _p("linear_probe", "cifar10_features", **PROBE),
]}
# A model class may declare where it trains instead: `PAIRS_WITH = {"edges": {"lr": 0.05}}` gives
# the pairing "<model>/edges" with the edge protocol plus those defaults. A new model is then its
# class plus its MODELS line (README "Extending").


def declared_pairings(models: dict[str, type]) -> dict[str, Pairing]:
    """The pairings the model classes declare in `PAIRS_WITH` (dataset -> extra defaults)."""
    return {f"{name}/{dataset}": Pairing(name, dataset, {**DATASET_PROTOCOLS[dataset], **extra})
            for name, cls in models.items() for dataset, extra in getattr(cls, "PAIRS_WITH", {}).items()}


# Built-in models only: a user model registered before this module was first imported (its
# register_model imports it) registers its own pairings, with its origin.
PAIRINGS.update(declared_pairings({k: v for k, v in MODELS.items() if registry.origin_of("model", k) == registry.BUILTIN}))
registry.track("pairing", PAIRINGS)
registry.track("dataset protocol", DATASET_PROTOCOLS)


def register_pairing(model: str, dataset: str, **defaults: Any) -> Pairing:
    """Register the pairing "model/dataset" from user code, with its protocol defaults (what
    `_p(...)` above does for the built-in ones). The defaults are checked at once like any
    config: a key the pairing does not use, or a bad value, is a ConfigError.
    """
    return _register(Pairing(model, dataset, dict(defaults)), registry.current_origin(), set(defaults))


def register_declared(name: str, cls: type, origin: str) -> None:
    """The pairings a user model declares in `PAIRS_WITH` (called by register_model)."""
    for dataset, extra in getattr(cls, "PAIRS_WITH", {}).items():
        if dataset not in DATASET_PROTOCOLS:
            from trainables.data import DATASETS

            if dataset not in DATASETS:
                raise UnknownName("dataset", dataset, DATASETS)
            raise ConfigError(f"model {name!r} from {origin}: PAIRS_WITH names dataset {dataset!r}, which has no "
                              "standard protocol; use register_pairing(model, dataset, **defaults) instead")
        _register(Pairing(name, dataset, {**DATASET_PROTOCOLS[dataset], **extra}), origin, set(extra))


def _register(pairing: Pairing, origin: str, given: set[str]) -> Pairing:
    from trainables.data import DATASETS

    if pairing.model not in MODELS:
        raise UnknownName("model", pairing.model, MODELS)
    if pairing.dataset not in DATASETS:
        raise UnknownName("dataset", pairing.dataset, DATASETS)
    registry.register("pairing", pairing.name, pairing, origin)
    try:
        from trainables.spec import resolve_config

        # the defaults the user gave: known keys, used by this pairing, valid values, shapes
        resolve_config({"pairing": pairing.name, **{k: pairing.defaults[k] for k in given}})
    except ConfigError as exc:
        PAIRINGS.pop(pairing.name, None)
        registry.ORIGINS.pop(("pairing", pairing.name), None)
        raise ConfigError(f"pairing {pairing.name!r} from {origin}: {exc}") from None
    return pairing


def get_pairing(name: str) -> Pairing:
    """Look up a pairing by "model/dataset"; raises UnknownName with close matches."""
    try:
        return PAIRINGS[name]
    except KeyError:
        pass
    # Name the part that is wrong, so a typo in the model or dataset gets its own suggestion.
    from trainables.data import DATASETS

    model, _, dataset = str(name).partition("/")
    if model not in MODELS:
        raise UnknownName("model", model, MODELS) from None
    if dataset not in DATASETS:
        raise UnknownName("dataset", dataset, DATASETS) from None
    raise UnknownName("pairing", name, PAIRINGS) from None
