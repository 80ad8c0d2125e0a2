"""Dataset registry: name -> (builder, config dataclass). `build_data` is the only entry point."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainables.data import cifar, edges, features, localization, mnist
from trainables.data.bundle import DataBundle
from core import registry
from core.errors import ConfigError, UnknownName


# What a dataset is made of, which decides what the driver checks before a sweep: synthetic data is
# generated in milliseconds, files are read from data_root (decoded once in the driver for a local
# run), features come from a backbone pass over CIFAR-10 (too costly to build in the driver).
KINDS = ("synthetic", "files", "features")


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one dataset.

    Attributes:
        build: `build(config, seed)` returns a DataBundle from the dataset's config instance and the
            trial's seed (a builder that draws nothing from the trial seed ignores it).
        config: its config dataclass (validates its keys; `preflight()` checks files when it has one).
        summary: one line for `sweep list`.
        kind: one of KINDS.
        input_shape: shape of one input for a config instance, e.g. (1, 28, 28) or (512,).
        num_classes: number of classes for a config instance (0 for regression).
        tiny: settings for the smallest useful dataset (a few samples): the registry tests train
            every pairing on it, so a new dataset is tested the moment it is registered.
        peak_bytes: bytes one trial's data needs at its peak for a config instance (the driver's
            memory check, cluster.planning.validate.check_memory); None when bounded by files on
            disk, not by the config.
    """

    build: Callable[[Any, int], DataBundle]
    config: type
    summary: str
    kind: str
    input_shape: Callable[[Any], tuple[int, ...]]
    num_classes: Callable[[Any], int]
    tiny: dict[str, Any]
    peak_bytes: Callable[[Any], int] | None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"dataset kind {self.kind!r} is not one of {KINDS}")


def _shape(shape: tuple[int, ...]) -> Callable[[Any], tuple[int, ...]]:
    return lambda cfg: shape


def _classes(n: int) -> Callable[[Any], int]:
    return lambda cfg: n


def _edges_bytes(d) -> int:
    n = (d.data_per_class + d.valid_per_class) * len(d.class_type)
    return n * d.spatial_resolution ** 2 * 4 * 8  # float32; generation peaks at ~8x the tensors (measured)


def _localization_bytes(d) -> int:
    return d.n_samples * 64 * 64 * 4 * 4


def _cifar_bytes(d) -> int:
    return 60_000 * 3 * 32 * 32 * 3  # uint8 files of fixed size: decoded, cached, split


def _mnist_bytes(d) -> int:
    return 70_000 * 28 * 28 * 3


DATASETS: dict[str, DatasetSpec] = {
    "edges": DatasetSpec(edges.build_edges, edges.EdgeDataConfig,
                         "synthetic edge detection (SPEC 1.1), 1x28x28, 3 or 5 classes", "synthetic",
                         lambda c: c.input_shape, lambda c: c.num_classes,
                         {"data_per_class": 2, "valid_per_class": 2}, peak_bytes=_edges_bytes),
    "localization": DatasetSpec(localization.build_localization, localization.LocalizationConfig,
                                "synthetic 64x64 square localisation (SPEC 1.2), box regression", "synthetic",
                                _shape((1, localization.CANVAS, localization.CANVAS)), _classes(0),
                                {"n_samples": 16}, peak_bytes=_localization_bytes),
    "cifar10": DatasetSpec(cifar.build_cifar10, cifar.Cifar10Config,
                           "CIFAR-10 from torchvision files under data_root (SPEC 1.3)", "files",
                           lambda c: c.input_shape, _classes(10), {"train_subset": 16, "eval_subset": 8},
                           peak_bytes=_cifar_bytes),
    "mnist": DatasetSpec(mnist.build_mnist, mnist.MnistConfig,
                         "MNIST from torchvision files under data_root (SPEC 1.4)", "files",
                         _shape((1, 28, 28)), _classes(10), {"train_subset": 16, "eval_subset": 8},
                         peak_bytes=_mnist_bytes),
    "cifar10_features": DatasetSpec(features.build_cifar10_features, features.FeatureConfig,
                                    "cached frozen-backbone features of CIFAR-10 (SPEC 2.5)", "features",
                                    lambda c: c.input_shape, _classes(10),
                                    {"train_subset": 8, "eval_subset": 4, "feature_batch_size": 4},
                                    peak_bytes=None),  # features of the fixed CIFAR-10 set, computed in batches
}


registry.track("dataset", DATASETS)


def register_dataset(name: str, spec: DatasetSpec, protocol: Mapping[str, Any] | None = None) -> DatasetSpec:
    """Register a dataset from user code: a DatasetSpec like the built-in ones (its config a
    `core.config_base.ConfigBase` frozen dataclass, so its keys are checked the same way).

    `protocol` is the training defaults of models that pair with it through `PAIRS_WITH`
    (like the edge protocol for "edges"); without it, pair models with `register_pairing`.

    Raises:
        ConfigError: the name is taken (built-in or another module's), `spec` is no DatasetSpec, or a
            synthetic dataset gives no peak_bytes (the same rule as the built-in ones).
    """
    origin = registry.current_origin()
    if not isinstance(spec, DatasetSpec):
        raise ConfigError(f"dataset {name!r} from {origin}: expected a trainables.data.DatasetSpec, got "
                          f"{type(spec).__name__}")
    if not hasattr(spec.config, "from_config") or not hasattr(spec.config, "keys"):
        raise ConfigError(f"dataset {name!r} from {origin}: its config must be a frozen dataclass deriving from "
                          "core.config_base.ConfigBase (keys are checked through it)")
    if spec.peak_bytes is not None and not callable(spec.peak_bytes) or spec.peak_bytes is None and spec.kind == "synthetic":
        raise ConfigError(f"dataset {name!r} from {origin}: peak_bytes must be a function of its config returning the "
                          "bytes one trial's data needs at its peak (the driver's memory check); only a files- or "
                          f"features-backed dataset may give None, this one is {spec.kind!r}")
    spec = _with_seed_argument(spec)
    registry.register("dataset", name, spec, origin)
    if protocol is not None:
        from trainables.pairings import DATASET_PROTOCOLS  # noqa: F401  (tracked as "dataset protocol")

        registry.register("dataset protocol", name, dict(protocol), origin)
    return spec


def _with_seed_argument(spec: DatasetSpec) -> DatasetSpec:
    """A builder written for the one-argument form, `build(cfg)`, from before builders got the seed
    apart: it is handed what it read then, its dataset's settings and the trial's "seed" in one mapping."""
    import dataclasses
    import inspect

    try:
        params = inspect.signature(spec.build).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: called the documented way
        return spec
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 1 or any(p.kind == p.VAR_POSITIONAL for p in params):
        return spec
    old = spec.build

    def build(cfg, seed):
        settings = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        return old({**settings, "seed": seed} if seed is not None else settings)

    return dataclasses.replace(spec, build=build)


def get_dataset(name: str) -> DatasetSpec:
    """Look up a dataset spec; raises UnknownName with close matches."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownName("dataset", name, DATASETS) from None


def build_data(name: str, data: Any, seed: int | None = None) -> DataBundle:
    """Build the tensors of dataset `name` (on CPU) from its typed config (a trial's
    `TrialSpec.data`) and the trial's seed; a mapping of settings is validated into that config
    first (the builder reads its "seed" when `seed` is not given)."""
    spec = get_dataset(name)
    if not isinstance(data, spec.config):
        spec.config.from_config(data)  # validate before any expensive work
    return spec.build(data, seed)


__all__ = ["DATASETS", "KINDS", "DataBundle", "DatasetSpec", "build_data", "get_dataset", "register_dataset"]
