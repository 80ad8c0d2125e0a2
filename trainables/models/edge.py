"""The seven edge-task models (SPEC 2.1), input 1x28x28.

Forward passes use no in-place ops and no data-dependent control flow, so a stack of copies
can run under `torch.func.functional_call` + `torch.func.vmap`. Every head flattens from
dim 1 after global average pooling (never `.squeeze()`), so a batch of one keeps shape (1, C)
(SPEC 2.6).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from trainables.models.edge_init import NONE_KERNELS, apply_edge_detector_init, freeze_conv_layers

INITS = ("default", "edge_detector")


def _positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value!r} is not allowed; expected an integer >= 1")


def _input_size(input_dim: Sequence[int]) -> int:
    dims = tuple(input_dim)
    if len(dims) != 3:
        raise ConfigError(f"input_dim={input_dim!r} is not allowed; expected (channels, height, width)")
    _positive(**{f"input_dim[{i}]": d for i, d in enumerate(dims)})
    return math.prod(dims)


def _kernel_fits(k: object, input_shape: tuple[int, ...], key: str = "kernel_size") -> None:
    """A square kernel must be an integer no larger than the image (SPEC 2.6 shape rule)."""
    size = min(input_shape[1:]) if len(input_shape) == 3 else None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or (size and k > size):
        raise ConfigError(f"{key} must be an integer in [1, {size or 'image size'}], got {k!r}")


def _reflect_conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    # Reflect padding p=(k-1)//2, as in the original study.
    return nn.Conv2d(c_in, c_out, k, padding=(k - 1) // 2, padding_mode="reflect")


class SimpleCNN(nn.Module):
    """Conv(1->F,k,reflect) -> ReLU -> MaxPool2 -> Conv(F->F,k,reflect) -> ReLU -> GAP -> FC(F->classes).

    Args:
        num_filter: filters per conv layer (F).
        kernel_size: k; padding (k-1)//2, reflect.
        num_classes: output logits.
        init: "default" (PyTorch init) or "edge_detector" (SPEC 3.2, needs num_filter=3).
        freeze_conv: set requires_grad=False on conv1/conv2 (only fc trains).
        none_kernel: "random_copy" (faithful) or "zeros": the k=7 edge-detector "none" kernel.

    Raises:
        ConfigError: a non-positive size, unknown init/none_kernel, or an edge-detector init
            with num_filter != 3 or an even kernel size other than 2.
    """

    pool_cls: type[nn.Module] = nn.MaxPool2d

    @staticmethod
    def inactive_kwargs(kwargs: dict) -> dict[str, str]:
        """none_kernel only shapes the k=7 edge-detector init."""
        if kwargs["init"] == "edge_detector" and kwargs["kernel_size"] == 7:
            return {}
        return {"none_kernel": "none_kernel needs init='edge_detector' and kernel_size=7"}

    @staticmethod
    def check_fits(kwargs: dict, input_shape: tuple[int, ...]) -> None:
        _kernel_fits(kwargs["kernel_size"], input_shape)

    def __init__(self, num_filter: int = 3, kernel_size: int = 2, num_classes: int = 3,
                 init: str = "default", freeze_conv: bool = False, none_kernel: str = "random_copy"):
        super().__init__()
        _positive(num_filter=num_filter, kernel_size=kernel_size, num_classes=num_classes)
        if init not in INITS:
            raise ConfigError(f"init={init!r} is not allowed; use one of {INITS}")
        if none_kernel not in NONE_KERNELS:
            raise ConfigError(f"none_kernel={none_kernel!r} is not allowed; use one of {NONE_KERNELS}")
        if init == "edge_detector" and num_filter != 3:
            raise ConfigError(f"init='edge_detector' needs num_filter=3, got num_filter={num_filter}")
        if init == "edge_detector" and kernel_size % 2 == 0 and kernel_size != 2:
            raise ConfigError(f"init='edge_detector': kernel_size={kernel_size} is not allowed; "
                              "use 2 or an odd size")
        self.num_filter, self.kernel_size = num_filter, kernel_size
        # Creation order conv1, conv2, fc: the avgpool variant gets the same initial weights.
        self.conv1 = _reflect_conv(1, num_filter, kernel_size)
        self.pool = self.pool_cls(2, 2)
        self.conv2 = _reflect_conv(num_filter, num_filter, kernel_size)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filter, num_classes)
        if init == "edge_detector":
            apply_edge_detector_init(self, none_kernel)
        if freeze_conv:
            freeze_conv_layers(self)

    def get_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate activations: [conv1, ReLU, pool, conv2, ReLU, GAP vector (B, F)]."""
        c1 = self.conv1(x)
        r1 = F.relu(c1)
        p1 = self.pool(r1)
        c2 = self.conv2(p1)
        r2 = F.relu(c2)
        return [c1, r1, p1, c2, r2, self.gap(r2).flatten(1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(self.gap(x).flatten(1))


class SimpleCNNAvgPool(SimpleCNN):
    """SimpleCNN with AvgPool2 instead of MaxPool2; identical parameters and creation order."""

    pool_cls = nn.AvgPool2d


class WiderCNN(nn.Module):
    """Conv(in->F) -> ReLU -> MaxPool2 -> Conv(F->F) -> ReLU -> GAP -> FC(F->classes), reflect padding.

    Raises:
        ConfigError: a non-positive size.
    """

    @staticmethod
    def check_fits(kwargs: dict, input_shape: tuple[int, ...]) -> None:
        _kernel_fits(kwargs["kernel_size"], input_shape)

    def __init__(self, in_channels: int = 1, num_filter: int = 6, kernel_size: int = 7,
                 num_classes: int = 5):
        super().__init__()
        _positive(in_channels=in_channels, num_filter=num_filter, kernel_size=kernel_size,
                  num_classes=num_classes)
        self.num_filter, self.kernel_size = num_filter, kernel_size
        self.conv1 = _reflect_conv(in_channels, num_filter, kernel_size)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = _reflect_conv(num_filter, num_filter, kernel_size)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filter, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(self.gap(x).flatten(1))


class DeeperCNN(nn.Module):
    """Conv -> ReLU -> Conv -> ReLU -> MaxPool2 -> Conv -> ReLU -> Conv -> ReLU -> GAP -> FC, reflect padding.

    Raises:
        ConfigError: a non-positive size.
    """

    @staticmethod
    def check_fits(kwargs: dict, input_shape: tuple[int, ...]) -> None:
        _kernel_fits(kwargs["kernel_size"], input_shape)

    def __init__(self, in_channels: int = 1, num_filter: int = 3, kernel_size: int = 7,
                 num_classes: int = 5):
        super().__init__()
        _positive(in_channels=in_channels, num_filter=num_filter, kernel_size=kernel_size,
                  num_classes=num_classes)
        self.num_filter, self.kernel_size = num_filter, kernel_size
        self.conv1 = _reflect_conv(in_channels, num_filter, kernel_size)
        self.conv2 = _reflect_conv(num_filter, num_filter, kernel_size)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv3 = _reflect_conv(num_filter, num_filter, kernel_size)
        self.conv4 = _reflect_conv(num_filter, num_filter, kernel_size)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filter, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.pool(x)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        return self.fc(self.gap(x).flatten(1))


class ThreeLayerCNN(nn.Module):
    """Conv(C->F,k,zero pad) -> ReLU -> Conv(F->2F,k) -> ReLU -> GAP -> FC(2F->classes).

    Defined but used by no experiment. As in the source, `hidden_dim` is accepted and unused,
    and a MaxPool2 module is created but never applied (it has no parameters).

    Raises:
        ConfigError: a non-positive size or a malformed input_dim.
    """

    # The framework's key names for this class's keywords; hidden_dim is accepted but unused.
    CONFIG_NAMES = {"filter_size": "kernel_size", "num_filters": "num_filter"}
    NOT_CONFIG = ("hidden_dim",)

    @staticmethod
    def check_fits(kwargs: dict, input_shape: tuple[int, ...]) -> None:
        _kernel_fits(kwargs["filter_size"], input_shape)

    def __init__(self, input_dim: Sequence[int] = (1, 28, 28), num_filters: int = 64,
                 filter_size: int = 7, hidden_dim: int = 100, num_classes: int = 4):
        super().__init__()
        _input_size(input_dim)
        _positive(num_filters=num_filters, filter_size=filter_size, hidden_dim=hidden_dim,
                  num_classes=num_classes)
        self.num_filter, self.kernel_size = num_filters, filter_size
        pad = (filter_size - 1) // 2
        self.conv1 = nn.Conv2d(input_dim[0], num_filters, filter_size, padding=pad)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, filter_size, padding=pad)
        self.pool = nn.MaxPool2d(2, 2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * num_filters, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(self.gap(x).flatten(1))


class TwoLayerMLP(nn.Module):
    """Flatten -> FC(prod(input_dim)->hidden) -> ReLU -> FC(hidden->classes). Unused by experiments.

    Raises:
        ConfigError: a non-positive size or a malformed input_dim.
    """

    def __init__(self, input_dim: Sequence[int] = (1, 28, 28), hidden_dim: int = 10,
                 num_classes: int = 3):
        super().__init__()
        n_in = _input_size(input_dim)
        _positive(hidden_dim=hidden_dim, num_classes=num_classes)
        self.fc1 = nn.Linear(n_in, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class ThreeLayerMLP(nn.Module):
    """Flatten -> FC(in->h1) -> ReLU -> FC(h1->h2) -> ReLU -> FC(h2->classes).

    The initial weights are a deterministic function of `seed`. By default they are drawn
    inside a forked CPU RNG, so the global torch RNG is left untouched; the source instead
    called `torch.manual_seed(seed)` globally, which `notebook_global_seed=True` reproduces
    (same weights either way; only the global RNG state after construction differs).

    Args:
        input_dim: (C, H, W) of one input.
        hidden_dims: (h1, h2).
        num_classes: output logits.
        seed: initialisation seed (the source's default is 7).
        notebook_global_seed: re-seed the global torch RNG as the source does.

    Raises:
        ConfigError: malformed input_dim or hidden_dims, a non-positive size, a non-int seed.
    """

    # Same weights either way (only the global RNG state after construction differs): not a setting.
    NOT_CONFIG = ("notebook_global_seed",)

    def __init__(self, input_dim: Sequence[int] = (1, 28, 28), hidden_dims: Sequence[int] = (10, 10),
                 num_classes: int = 3, seed: int = 7, notebook_global_seed: bool = False):
        super().__init__()
        n_in = _input_size(input_dim)
        hidden = tuple(hidden_dims) if isinstance(hidden_dims, (list, tuple)) else ()
        if len(hidden) != 2:
            raise ConfigError(f"hidden_dims={hidden_dims!r} is not allowed; expected two sizes (h1, h2)")
        _positive(**{f"hidden_dims[{i}]": h for i, h in enumerate(hidden)}, num_classes=num_classes)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed={seed!r} is not allowed; expected an integer")
        self.seed, self.hidden_dims = seed, hidden
        if notebook_global_seed:
            torch.manual_seed(seed)
            self._build(n_in, hidden, num_classes)
        else:
            # Seed only the CPU generator inside the fork: torch.manual_seed would also reseed CUDA.
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                self._build(n_in, hidden, num_classes)

    def _build(self, n_in: int, hidden: tuple[int, int], num_classes: int) -> None:
        self.fc1 = nn.Linear(n_in, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))
