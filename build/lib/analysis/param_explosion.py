"""The MLP parameter explosion (SPEC 4.2 `mlp-param-explosion`): computed, no training."""
from __future__ import annotations

from collections.abc import Sequence

HIDDEN = (256, 128)
OUTPUTS = 10
# (label, width, height, channels) of SPEC 4.3's bar chart.
IMAGE_SIZES: tuple[tuple[str, int, int, int], ...] = (
    ("CIFAR-10 (32×32)", 32, 32, 3),
    ("Instagram (256×256)", 256, 256, 3),
    ("HD photo (720p, 1280×720)", 1280, 720, 3),
    ("4K photo (2160p, 3840×2160)", 3840, 2160, 3),
)


def mlp_param_count(input_dim: int, hidden: Sequence[int] = HIDDEN, outputs: int = OUTPUTS) -> int:
    """Σ(in·out + out) over the dense layers input -> hidden... -> outputs."""
    dims = [int(input_dim), *map(int, hidden), int(outputs)]
    return sum(i * o + o for i, o in zip(dims, dims[1:]))


def explosion_table(sizes=IMAGE_SIZES, hidden: Sequence[int] = HIDDEN,
                    outputs: int = OUTPUTS) -> list[tuple[str, int, int]]:
    """[(label, input_dim, params)] for each image size."""
    return [(label, w * h * c, mlp_param_count(w * h * c, hidden, outputs)) for label, w, h, c in sizes]
