"""Pairing registry: which model trains on which dataset, with which protocol defaults.

A pairing is named "model/dataset". Its `defaults` are the SPEC protocol for that pairing
(optimiser, lr, epochs, batch sizes, dataset variant); experiments and `--set` override them.
`model_args` maps trial-config keys to model constructor keywords, so sweeping
`kernel_size` reaches the CNN and `hidden_dims` the MLP.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import UnknownName


@dataclass(frozen=True)
class Pairing:
    """One model x dataset combination.

    Attributes:
        model: key of trainables.models.MODELS.
        dataset: key of trainables.data.DATASETS.
        model_args: trial-config key -> constructor keyword forwarded when present in the config.
        defaults: config defaults for this pairing (protocol of SPEC section 3).
    """

    model: str
    dataset: str
    model_args: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}"


# SPEC 3.1: SGD momentum 0.9, cross-entropy, no weight decay, no schedule.
EDGE = dict(optimizer="sgd", momentum=0.9, weight_decay=0.0, scheduler="none", lr=1e-2,
            batch_size=32, eval_batch_size=256, loss="cross_entropy")
EDGE_CNN_ARGS = {"kernel_size": "kernel_size", "num_filter": "num_filter", "init": "init",
                 "freeze_conv": "freeze_conv", "none_kernel": "none_kernel"}
EDGE_MLP_ARGS = {"hidden_dims": "hidden_dims", "model_seed": "seed"}
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


def _p(model: str, dataset: str, args: dict | None = None, **defaults) -> Pairing:
    return Pairing(model, dataset, dict(args or {}), defaults)


PAIRINGS: dict[str, Pairing] = {p.name: p for p in [
    _p("simple_cnn", "edges", EDGE_CNN_ARGS, **EDGE, kernel_size=7, num_filter=3),
    _p("simple_cnn_avgpool", "edges", EDGE_CNN_ARGS, **EDGE, kernel_size=7, num_filter=3),
    _p("wider_cnn", "edges", {"kernel_size": "kernel_size", "num_filter": "num_filter"}, **EDGE,
       kernel_size=3, num_filter=6),
    _p("deeper_cnn", "edges", {"kernel_size": "kernel_size", "num_filter": "num_filter"}, **EDGE,
       kernel_size=3, num_filter=3),
    _p("three_layer_cnn", "edges", {"kernel_size": "filter_size", "num_filter": "num_filters"},
       **EDGE, kernel_size=7, num_filter=64),
    _p("two_layer_mlp", "edges", {"hidden_dim": "hidden_dim"}, **EDGE, hidden_dim=10),
    _p("three_layer_mlp", "edges", EDGE_MLP_ARGS, **EDGE, hidden_dims=(50, 10)),
    _p("lab_mlp", "cifar10", {"hidden_dims": "hidden_dims", "dropout": "dropout"}, **LAB),
    _p("lab_cnn", "cifar10", None, **LAB),
    _p("mlp_baseline", "cifar10", None, **BASE),
    _p("base_cnn", "cifar10", None, **BASE),
    _p("simple_mlp", "cifar10", None, **PARAM),
    _p("convnet", "cifar10", None, **PARAM),
    _p("convnet_small", "cifar10", None, **PARAM),
    _p("convnet_tiny", "cifar10", None, **PARAM),
    _p("mnist_mlp", "mnist", None, **{**MNIST, "normalization": "half", "eval_batch_size": 64}),
    _p("lenet5", "mnist", None, **MNIST),
    _p("modified_resnet18", "mnist", None, **MNIST),
    _p("mlp_detector", "localization", None, **DETECT),
    _p("cnn_detector", "localization", None, **DETECT),
    _p("linear_probe", "cifar10_features", None, **PROBE),
]}


def get_pairing(name: str) -> Pairing:
    """Look up a pairing by "model/dataset"; raises UnknownName with close matches."""
    try:
        return PAIRINGS[name]
    except KeyError:
        pass
    # Name the part that is wrong, so a typo in the model or dataset gets its own suggestion.
    from trainables.data import DATASETS
    from trainables.models import MODELS

    model, _, dataset = str(name).partition("/")
    if model not in MODELS:
        raise UnknownName("model", model, MODELS) from None
    if dataset not in DATASETS:
        raise UnknownName("dataset", dataset, DATASETS) from None
    raise UnknownName("pairing", name, PAIRINGS) from None
