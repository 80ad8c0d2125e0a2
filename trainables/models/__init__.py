"""Model registry: one explicit dict from name to constructor. `build_model` is the only entry point."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from core import registry
from core.errors import ConfigError, UnknownName
from trainables.models.cifar import (BaseCNN, ConvNet, ConvNetSmall, ConvNetTiny, LabCNN, LabMLP,
                                     MLPBaseline, SimpleMLP)
from trainables.models.detect import CNNDetector, MLPDetector
from trainables.models.edge import (DeeperCNN, SimpleCNN, SimpleCNNAvgPool, ThreeLayerCNN,
                                    ThreeLayerMLP, TwoLayerMLP, WiderCNN)
from trainables.models.mnist import LeNet5, MnistMLP, ModifiedResNet18
from trainables.models.probes import LinearProbe

MODELS: dict[str, Callable[..., nn.Module]] = {
    # edge task (SPEC 2.1), input 1x28x28
    "simple_cnn": SimpleCNN,
    "simple_cnn_avgpool": SimpleCNNAvgPool,
    "wider_cnn": WiderCNN,
    "deeper_cnn": DeeperCNN,
    "three_layer_cnn": ThreeLayerCNN,
    "two_layer_mlp": TwoLayerMLP,
    "three_layer_mlp": ThreeLayerMLP,
    # CIFAR-10 (SPEC 2.2), input 3x32x32
    "lab_mlp": LabMLP,
    "lab_cnn": LabCNN,
    "mlp_baseline": MLPBaseline,
    "base_cnn": BaseCNN,
    "simple_mlp": SimpleMLP,
    "convnet": ConvNet,
    "convnet_small": ConvNetSmall,
    "convnet_tiny": ConvNetTiny,
    # MNIST (SPEC 2.3), input 1x28x28
    "mnist_mlp": MnistMLP,
    "lenet5": LeNet5,
    "modified_resnet18": ModifiedResNet18,
    # object localisation (SPEC 2.4), input 1x64x64, output (cx, cy, w, h)
    "mlp_detector": MLPDetector,
    "cnn_detector": CNNDetector,
    # linear head on cached pretrained features (SPEC 2.5)
    "linear_probe": LinearProbe,
}


registry.track("model", MODELS)


def register_model(name: str | Callable[..., nn.Module] | None = None):
    """Register a model class from user code, like timm's `@register_model`.

    `@register_model` (name: the class name in snake_case, TinyCNN -> "tiny_cnn") or
    `@register_model("tiny_cnn")`. The class is what a built-in model is (README "Extending"):
    its constructor's keywords become config keys; `PAIRS_WITH`, `CONFIG_NAMES`, `NOT_CONFIG`,
    `check_fits` and `inactive_kwargs` work the same. Its `PAIRS_WITH` pairings are registered
    with it.

    Raises:
        ConfigError: the name is taken by a built-in model or another module's, the class's
            signature cannot be read, or a PAIRS_WITH dataset is unknown.
    """
    origin = registry.current_origin()

    def deco(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name if isinstance(name, str) else _snake(getattr(cls, "__name__", ""))
        if not callable(cls):
            raise ConfigError(f"model {key!r} from {origin}: expected a class (an nn.Module), got {cls!r}")
        try:
            inspect.signature(cls)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model {key!r} from {origin}: its constructor's signature cannot be read ({exc})") from None
        registry.register("model", key, cls, origin)
        from trainables.pairings import register_declared

        register_declared(key, cls, origin)
        return cls

    if name is not None and not isinstance(name, str):
        return deco(name)
    return deco


def _snake(text: str) -> str:
    import re

    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", text).lower()


# Constructor keywords the data decides (shape of one input, number of classes) or the trial's
# init seed: filled in by trainables.spec from the dataset and TrainConfig, never user keys.
DERIVED_KWARGS = ("num_classes", "input_dim", "in_channels", "in_features", "seed")


def model_kwargs(name: str) -> set[str]:
    """Keyword arguments the constructor of model `name` accepts."""
    if name not in MODELS:
        raise UnknownName("model", name, MODELS)
    return set(_params(MODELS[name]))


@functools.lru_cache(maxsize=None)
def _params(cls: type) -> tuple[str, ...]:
    return tuple(inspect.signature(cls).parameters)


def model_config_keys(name: str) -> dict[str, str]:
    """Trial-config key -> constructor keyword for the settings a user may give model `name`.

    Read from the constructor's signature: every keyword except the derived ones
    (DERIVED_KWARGS) and those the class lists in `NOT_CONFIG` (accepted for fidelity with the
    source but without effect). A class whose keyword differs from the framework's key name
    maps it in `CONFIG_NAMES` (keyword -> config key), e.g. ThreeLayerCNN's filter_size ->
    kernel_size.
    """
    cls = MODELS[name] if name in MODELS else None
    if cls is None:
        raise UnknownName("model", name, MODELS)
    return dict(_config_keys(cls))


@functools.lru_cache(maxsize=None)
def _config_keys(cls: type) -> tuple[tuple[str, str], ...]:
    skip = set(DERIVED_KWARGS) | set(getattr(cls, "NOT_CONFIG", ()))
    rename = getattr(cls, "CONFIG_NAMES", {})
    return tuple((rename.get(kw, kw), kw) for kw in _params(cls) if kw not in skip)


@functools.lru_cache(maxsize=None)
def _defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    return tuple((k, p.default) for k, p in inspect.signature(cls).parameters.items() if p.default is not p.empty)


def _with_defaults(name: str, kwargs: dict) -> dict:
    """`kwargs` with the constructor's defaults filled in, so a class's rules read each keyword's
    one default, the constructor's, instead of writing it again."""
    return {**dict(_defaults(MODELS[name])), **kwargs}


def inactive_model_keys(name: str, kwargs: dict) -> dict[str, str]:
    """Constructor keywords that have no effect given `kwargs`, with why, e.g. SimpleCNN's
    none_kernel without the edge-detector init; the class says so in `inactive_kwargs`, which
    is handed every keyword (the constructor's defaults filled in)."""
    fn = getattr(MODELS[name], "inactive_kwargs", None)
    return dict(fn(_with_defaults(name, kwargs))) if fn is not None else {}


def check_model_fits(name: str, kwargs: dict, input_shape: tuple[int, ...]) -> None:
    """Shape rules of the model for one input of `input_shape` (the class's `check_fits`, handed
    every keyword, the constructor's defaults filled in); raises ConfigError, e.g. a kernel larger
    than the image."""
    fn = getattr(MODELS[name], "check_fits", None)
    if fn is not None:
        fn(_with_defaults(name, kwargs), tuple(input_shape))


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry key, e.g. "simple_cnn".
        **kwargs: constructor arguments (kernel_size, num_classes, hidden_dims, ...).

    Raises:
        UnknownName: `name` is not registered (close matches are suggested).
        ConfigError: a keyword the model does not take, or a value it rejects.
    """
    allowed = model_kwargs(name)
    extra = set(kwargs) - allowed
    if extra:
        raise ConfigError(f"model {name!r} takes no argument(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    return MODELS[name](**kwargs)


def count_params(model: nn.Module) -> tuple[int, int]:
    """Return (all parameters, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)
