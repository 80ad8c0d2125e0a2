"""Dataset registry: name -> (builder, config dataclass). `build_data` is the only entry point."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainables.data import cifar, edges, features, localization, mnist
from trainables.data.bundle import DataBundle
from core.errors import UnknownName


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one dataset: `build(cfg)` returns a DataBundle; `config` validates its keys."""

    build: Callable[[Mapping[str, Any]], DataBundle]
    config: type
    summary: str


DATASETS: dict[str, DatasetSpec] = {
    "edges": DatasetSpec(edges.build_edges, edges.EdgeDataConfig,
                         "synthetic edge detection (SPEC 1.1), 1x28x28, 3 or 5 classes"),
    "localization": DatasetSpec(localization.build_localization, localization.LocalizationConfig,
                                "synthetic 64x64 square localisation (SPEC 1.2), box regression"),
    "cifar10": DatasetSpec(cifar.build_cifar10, cifar.Cifar10Config,
                           "CIFAR-10 from torchvision files under data_root (SPEC 1.3)"),
    "mnist": DatasetSpec(mnist.build_mnist, mnist.MnistConfig,
                         "MNIST from torchvision files under data_root (SPEC 1.4)"),
    "cifar10_features": DatasetSpec(features.build_cifar10_features, features.FeatureConfig,
                                    "cached frozen-backbone features of CIFAR-10 (SPEC 2.5)"),
}


def get_dataset(name: str) -> DatasetSpec:
    """Look up a dataset spec; raises UnknownName with close matches."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownName("dataset", name, DATASETS) from None


def build_data(name: str, cfg: Mapping[str, Any]) -> DataBundle:
    """Validate `cfg` for dataset `name` and build its tensors (on CPU)."""
    spec = get_dataset(name)
    spec.config.from_config(cfg)  # validate before any expensive work
    return spec.build(cfg)


__all__ = ["DATASETS", "DataBundle", "DatasetSpec", "build_data", "get_dataset"]
