"""Synthetic object-localisation task (SPEC 1.2): a ringed 16x16 square on a noisy 64x64 canvas.

Targets are normalised boxes (cx, cy, w, h). The held-out set is the four clean probes; their
16-px shifted copies (for the IoU evaluator) live in `meta`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.config_base import ConfigBase, check, check_seed
from trainables.data.bundle import DataBundle

CANVAS, SIDE, RING, SHIFT = 64, 16, 3, 16
PROBE_POSITIONS = ((8, 8), (36, 8), (8, 36), (30, 30))
GROUND_TRUTHS = ("faithful", "corrected")

_CACHE: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}


@dataclass(frozen=True)
class LocalizationConfig(ConfigBase):
    """Trial-config keys of the localisation dataset.

    Attributes:
        n_samples: training images (3000 in LAB).
        loc_seed: NumPy seed of the image stream (42 in LAB).
        probe_ground_truth: "faithful" clamps the shifted box to 48 px as the source does (box and
            object disagree for two probes); "corrected" uses the visible extent of the object.
    """

    n_samples: int = 3000
    loc_seed: int = 42
    probe_ground_truth: str = "faithful"

    def __post_init__(self):
        super().__post_init__()
        check_seed("loc_seed", self.loc_seed)
        check(self.n_samples >= 1, f"n_samples must be >= 1, got {self.n_samples}")
        check(self.probe_ground_truth in GROUND_TRUTHS,
              f"probe_ground_truth={self.probe_ground_truth!r} not allowed; use one of {GROUND_TRUTHS}")


def draw_object(img: np.ndarray, x: int, y: int) -> None:
    """Paint the object in place: bright 16x16 square, dimmer 10x10 core (a 3-px ring)."""
    img[:, y:y + SIDE, x:x + SIDE] = 1.0
    img[:, y + RING:y + SIDE - RING, x + RING:x + SIDE - RING] = 0.4


def box(x: float, y: float, w: float = SIDE, h: float = SIDE) -> list[float]:
    """Pixel top-left and size -> normalised (cx, cy, w, h)."""
    return [(x + w / 2) / CANVAS, (y + h / 2) / CANVAS, w / CANVAS, h / CANVAS]


def generate(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n noisy images (n,1,64,64) float32 in [0,1] and boxes (n,4), one NumPy stream in sample order.

    Per sample: x = randint(0, 48), y = randint(0, 48), noise = randn(1,64,64) * 0.05, clip to [0, 1].
    """
    if (n, seed) in _CACHE:
        return _CACHE[(n, seed)]
    rng = np.random.RandomState(seed)  # same draws as np.random.seed(seed) + the global functions
    images = np.zeros((n, 1, CANVAS, CANVAS), dtype=np.float32)
    targets = np.zeros((n, 4), dtype=np.float32)
    limit = CANVAS - SIDE
    for i in range(n):
        x, y = rng.randint(0, limit), rng.randint(0, limit)
        img = np.zeros((1, CANVAS, CANVAS), dtype=np.float32)
        draw_object(img, x, y)
        img = img + (rng.randn(1, CANVAS, CANVAS) * 0.05).astype(np.float32)
        images[i] = np.clip(img, 0.0, 1.0)
        targets[i] = box(x, y)
    _CACHE[(n, seed)] = torch.from_numpy(images), torch.from_numpy(targets)
    return _CACHE[(n, seed)]


def probe_set(ground_truth: str = "faithful") -> dict[str, torch.Tensor]:
    """The four clean probes, their copies moved 16 px down and right, and both sets of boxes.

    Faithful shifted boxes start at min(x+16, 48), min(y+16, 48) with size 16 (the source's
    clamp); corrected ones cover the visible part of the moved object (cropped at the border).
    """
    images = np.zeros((len(PROBE_POSITIONS), 1, CANVAS, CANVAS), dtype=np.float32)
    for i, (x, y) in enumerate(PROBE_POSITIONS):
        draw_object(images[i], x, y)
    shifted = np.zeros_like(images)
    shifted[:, :, SHIFT:, SHIFT:] = images[:, :, :CANVAS - SHIFT, :CANVAS - SHIFT]
    limit = CANVAS - SIDE
    boxes_shifted = []
    for x, y in PROBE_POSITIONS:
        if ground_truth == "faithful":
            boxes_shifted.append(box(min(x + SHIFT, limit), min(y + SHIFT, limit)))
        else:
            sx, sy = x + SHIFT, y + SHIFT
            boxes_shifted.append(box(sx, sy, min(sx + SIDE, CANVAS) - sx, min(sy + SIDE, CANVAS) - sy))
    return {"probes": torch.from_numpy(images),
            "probes_shifted": torch.from_numpy(shifted),
            "boxes": torch.tensor([box(x, y) for x, y in PROBE_POSITIONS]),
            "boxes_shifted": torch.tensor(boxes_shifted)}


def build_localization(cfg: Mapping[str, Any], seed: int | None = None) -> DataBundle:
    """Training images and boxes (task "regression"); held out = the 4 original probes (eval_split "probe").

    meta: probes, probes_shifted, boxes, boxes_shifted (per probe_ground_truth), probe_positions.
    """
    c = LocalizationConfig.from_config(cfg)
    x, y = generate(c.n_samples, c.loc_seed)
    probes = probe_set(c.probe_ground_truth)
    meta = {"dataset": "localization", "pixels": "unit", "probe_positions": list(PROBE_POSITIONS),
            "probe_ground_truth": c.probe_ground_truth, **probes}
    return DataBundle(x, y, probes["probes"].clone(), probes["boxes"].clone(), num_classes=0,
                      task="regression", eval_split="probe", meta=meta)
