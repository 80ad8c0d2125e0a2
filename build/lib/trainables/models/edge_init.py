"""Hand-made edge-detector kernels for SimpleCNN and conv freezing (SPEC 3.2)."""
from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError

NONE_KERNELS = ("random_copy", "zeros")


def sobel(k: int, axis: int) -> torch.Tensor:
    """The source's custom k x k Sobel-like kernel (float32).

    At (row j, column i), with offsets j' = j - c and i' = i - c from the centre c = (k-1)/2,
    the value is `(i' if axis == 0 else j') / (i'^2 + j'^2)`, and 0 at the centre. Note the
    source's naming: axis 0 is an x-derivative, so it responds to *vertical* edges although it
    is used as the "horizontal" kernel (SPEC 2.6; kept as is).

    Args:
        k: odd kernel size >= 1.
        axis: 0 or 1.

    Raises:
        ConfigError: k is even or < 1 (the source divides by zero), or axis is not 0/1.
    """
    if k < 1 or k % 2 == 0:
        raise ConfigError(f"sobel kernel_size={k} is not allowed; use an odd size >= 1")
    if axis not in (0, 1):
        raise ConfigError(f"sobel axis={axis!r} is not allowed; use 0 or 1")
    c = (k - 1) // 2
    offsets = torch.arange(k, dtype=torch.float32) - c
    jj, ii = torch.meshgrid(offsets, offsets, indexing="ij")  # jj: row offset, ii: column offset
    denom = ii ** 2 + jj ** 2
    num = ii if axis == 0 else jj
    out = torch.where(denom > 0, num / denom.clamp(min=1), torch.zeros_like(num))
    return out.to(torch.float32)


def edge_detector_kernels(k: int, conv1_weight: torch.Tensor | None = None,
                          none_kernel: str = "random_copy") -> torch.Tensor:
    """The three kernels K0 ("horizontal"), K1 ("vertical"), K2 ("none") stacked to (3, k, k).

    Args:
        k: kernel size: 2, 7 (hand-written), or another odd size (Sobel).
        conv1_weight: conv1's current weight (F, 1, k, k); for k=7 with
            none_kernel="random_copy" its [0, 0] filter is copied as K2 (the source's behaviour,
            although its comment says zeros).
        none_kernel: "random_copy" (faithful) or "zeros"; only k=7 is affected, the other
            sizes always use a zero "none" kernel as in the source.

    Raises:
        ConfigError: even k other than 2, unknown none_kernel, or a missing conv1_weight.
    """
    if none_kernel not in NONE_KERNELS:
        raise ConfigError(f"none_kernel={none_kernel!r} is not allowed; use one of {NONE_KERNELS}")
    if k == 2:
        k0 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
        k1 = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
        k2 = torch.zeros(2, 2)
    elif k == 7:
        k0 = torch.zeros(7, 7)
        k0[2, :] = 1.0
        k0[3, :] = -1.0
        k1 = k0.t().clone()
        if none_kernel == "zeros":
            k2 = torch.zeros(7, 7)
        else:
            if conv1_weight is None:
                raise ConfigError("none_kernel='random_copy' needs conv1's current weight")
            k2 = conv1_weight.detach()[0, 0].to("cpu", torch.float32).clone()
    elif k % 2 == 1:
        k0, k1, k2 = sobel(k, 0), sobel(k, 1), torch.zeros(k, k)
    else:
        raise ConfigError(f"edge_detector init: kernel_size={k} is not allowed; use 2 or an odd size")
    return torch.stack([k0, k1, k2]).to(torch.float32)


@torch.no_grad()
def apply_edge_detector_init(model: nn.Module, none_kernel: str = "random_copy") -> None:
    """Overwrite a 3-filter SimpleCNN's conv weights with the edge kernels, conv biases with 0.

    conv1.weight = (K0, K1, K2) as (3, 1, k, k); conv2.weight[o, c] = K_o for every input
    channel c, i.e. shape (3, 3, k, k).

    Args:
        model: a SimpleCNN-like module with `conv1`, `conv2`, `num_filter` and `kernel_size`.
        none_kernel: see `edge_detector_kernels`.

    Raises:
        ConfigError: model.num_filter != 3, or a kernel size the kernels do not support.
    """
    if model.num_filter != 3:
        raise ConfigError(f"edge_detector init needs num_filter=3, got num_filter={model.num_filter}")
    k = model.kernel_size
    kernels = edge_detector_kernels(k, model.conv1.weight, none_kernel)
    dev = model.conv1.weight.device
    model.conv1.weight.copy_(kernels.reshape(3, 1, k, k).to(dev))
    model.conv2.weight.copy_(kernels.reshape(3, 1, k, k).expand(3, 3, k, k).to(dev))
    model.conv1.bias.zero_()
    model.conv2.bias.zero_()


def freeze_conv_layers(model: nn.Module) -> int:
    """Set requires_grad=False on every parameter whose name starts with "conv".

    The optimiser may still receive every parameter (as in the source); frozen ones get no
    gradient, so plain SGD leaves them untouched.

    Returns:
        The number of parameter tensors frozen.
    """
    frozen = 0
    for name, p in model.named_parameters():
        if name.startswith("conv"):
            p.requires_grad_(False)
            frozen += 1
    return frozen
