"""Synthetic edge-detection dataset (SPEC 1.1): config, the notebook's torch Dataset, and the
fast tensor builder used by the trainable. Image generation lives in `edge_patterns`."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from core.config_base import IMAGE_SIDE_LARGEST, SEED_LIMIT, ConfigBase, check, check_at_most, check_seed
from trainables.config import TrainConfig
from trainables.data.bundle import DataBundle
from trainables.data.edge_patterns import (CLASS_TYPES, MODES, generate_edge_arrays,
                                           make_permutation)

DATA_STREAMS = ("framework", "notebook")


@dataclass(frozen=True)
class EdgeDataConfig(ConfigBase):
    """Every trial-config key of the edge dataset; `num_classes` is derived (= len(class_type)).

    Fidelity flags default to the source's behaviour: `vertical_intensity_fix`,
    `both_independent_locations` and `clip_before_quantise` switch the quirks off.
    `data_seed=None` means the trial's `seed`. `notebook_train_sizes` are the training sizes
    the notebook's data block generates (in order) before its validation set; it only
    matters with data_stream="notebook".
    """

    data_per_class: int = 100
    valid_per_class: int = 50
    class_type: tuple[str, ...] = ("horizontal", "vertical", "none")
    spatial_resolution: int = 28
    min_edge_width: int = 1
    max_edge_width: int = 4
    min_edge_intensity: float = 0.25
    max_edge_intensity: float = 1.0
    min_background_intensity: float = 0.0
    max_background_intensity: float = 0.2
    possible_edge_location_ratio: float = 1.0
    num_horizontal_edge: int = 1
    num_vertical_edge: int = 1
    num_diagonal_edge: int = 1
    use_permutation: bool = False
    permutation_seed: int = 10
    data_seed: int | None = None
    valid_seed: int = 10
    data_stream: str = "framework"
    clip_before_quantise: bool = False
    vertical_intensity_fix: bool = False
    both_independent_locations: bool = False
    notebook_train_sizes: tuple[int, ...] = (10, 30, 50, 100)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("data_seed", "valid_seed", "permutation_seed"):
            check_seed(key, getattr(self, key))
        check_at_most("spatial_resolution", self.spatial_resolution, IMAGE_SIDE_LARGEST)
        for key in ("data_per_class", "valid_per_class", "num_horizontal_edge",
                    "num_vertical_edge", "num_diagonal_edge", "min_edge_width"):
            check(getattr(self, key) >= 1, f"{key}={getattr(self, key)!r} is not allowed; must be >= 1")
        check(all(n >= 1 for n in self.notebook_train_sizes),
              f"notebook_train_sizes={self.notebook_train_sizes!r}: every size must be >= 1")
        check(len(self.class_type) >= 1, "class_type=() is not allowed; give at least one class")
        for name in self.class_type:
            check(name in CLASS_TYPES, f"class_type entry {name!r} is not allowed; use {CLASS_TYPES}")
        check(len(set(self.class_type)) == len(self.class_type),
              f"class_type={self.class_type!r} repeats a class; labels must be distinct")
        for lo, hi in (("min_edge_width", "max_edge_width"),
                       ("min_edge_intensity", "max_edge_intensity"),
                       ("min_background_intensity", "max_background_intensity")):
            a, b = getattr(self, lo), getattr(self, hi)
            check(a <= b, f"{lo}={a!r} > {hi}={b!r}; need {lo} <= {hi}")
            if "intensity" in lo:
                check(0.0 <= a and b <= 1.0, f"{lo}={a!r}/{hi}={b!r} must lie in [0, 1]")
        r = self.possible_edge_location_ratio
        check(0.0 < r <= 1.0, f"possible_edge_location_ratio={r!r} is not allowed; need 0 < r <= 1")
        check(self.data_stream in DATA_STREAMS,
              f"data_stream={self.data_stream!r} is not allowed; use one of {DATA_STREAMS}")
        if "vertical" in self.class_type and not self.vertical_intensity_fix:
            check(self.num_vertical_edge <= self.num_horizontal_edge,
                  f"num_vertical_edge={self.num_vertical_edge} > num_horizontal_edge="
                  f"{self.num_horizontal_edge} fails in the source's vertical generator (it draws "
                  "intensities with the horizontal count); set vertical_intensity_fix=True")
        self._check_band_room()

    def _check_band_room(self) -> None:
        """Every drawn width must leave at least one start position (else randint errors)."""
        s, r = self.spatial_resolution, self.possible_edge_location_ratio
        check(s >= 2, f"spatial_resolution={s!r} is not allowed; must be >= 2")
        widths = []
        if {"horizontal", "vertical", "both"} & set(self.class_type):
            widths.append(("max_edge_width", self.max_edge_width))
        if "diagonal" in self.class_type:
            top = int(self.max_edge_width / math.sqrt(2))  # exclusive, as in the source
            check(top > self.min_edge_width,
                  f"diagonal widths: int(max_edge_width/sqrt(2))={top} must exceed min_edge_width="
                  f"{self.min_edge_width}; raise max_edge_width={self.max_edge_width}")
            widths.append(("diagonal width", top - 1))
        p = int(r * s)
        for what, w in widths:
            check(s - w >= 1, f"{what}={w} leaves no room in spatial_resolution={s}")
            if r < 1.0:
                check(p - w >= 1, f"{what}={w} leaves no room in the training half "
                                  f"int(possible_edge_location_ratio*S)={p}")
                check(s - w > p, f"{what}={w} leaves no room in the validation part [{p}, {s})")

    @property
    def num_classes(self) -> int:
        return len(self.class_type)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.spatial_resolution, self.spatial_resolution)

    def inactive_keys(self) -> dict[str, str]:
        """Keys whose value changes no image given the others, with why (a trial never logs them)."""
        classes, out = set(self.class_type), {}
        vertical_quirk = "vertical" in classes and not self.vertical_intensity_fix
        if "diagonal" not in classes:
            out["num_diagonal_edge"] = "num_diagonal_edge needs 'diagonal' in class_type"
            # Only the diagonal's rotation (spline interpolation) leaves [0, 1]; the other classes
            # paint intensities inside it, so there is nothing to clip.
            out["clip_before_quantise"] = "clip_before_quantise needs 'diagonal' in class_type"
        if not classes & {"vertical", "both"}:
            out["num_vertical_edge"] = "num_vertical_edge needs 'vertical' or 'both' in class_type"
        if not classes & {"horizontal", "both"} and not vertical_quirk:
            out["num_horizontal_edge"] = "num_horizontal_edge needs 'horizontal' or 'both' in class_type"
        if "vertical" not in classes or self.num_vertical_edge == self.num_horizontal_edge:
            out["vertical_intensity_fix"] = ("vertical_intensity_fix needs 'vertical' in class_type and "
                                             "num_vertical_edge != num_horizontal_edge")
        if "both" not in classes:
            out["both_independent_locations"] = "both_independent_locations needs 'both' in class_type"
        if not {"horizontal", "vertical", "both", "diagonal"} & classes:
            for key in ("min_edge_width", "max_edge_width", "min_edge_intensity", "max_edge_intensity",
                        "possible_edge_location_ratio"):
                out[key] = f"{key} needs an edge class in class_type"
        if self.data_stream == "notebook":
            out["valid_seed"] = "valid_seed needs data_stream='framework'"
            out["permutation_seed"] = "permutation_seed needs data_stream='framework'"
        else:
            out["notebook_train_sizes"] = "notebook_train_sizes needs data_stream='notebook'"
        if not self.use_permutation:
            out["permutation_seed"] = "permutation_seed needs use_permutation=True"
        return out


def _rng(seed: int) -> np.random.RandomState:
    return np.random.RandomState(seed)


def _valid_rng(seed: int) -> np.random.RandomState:
    # A stream no training seed can coincide with: RandomState(s) for train and valid would
    # make the 50/class training set of seed 10 equal to the validation set.
    return np.random.RandomState(np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(4))


class EdgeDetectionDataset(Dataset):
    """The source's torch Dataset: generated eagerly from NumPy's *global* legacy stream.

    Args:
        config: the source's keys (SPEC 1.1 table; `data_per_class` defaults to 1000 here as in
            the source), plus any EdgeDataConfig key. `num_classes` must equal
            len(class_type); `use_permutation` needs `permutater` and `unpermutater`.
        mode: "train", "valid" or "test".
        transform: applied to each PIL "L" image (e.g. ToTensor()).
    """

    def __init__(self, config: dict, mode: str, transform=None):
        assert mode in MODES, f"mode must be one of {MODES}, got {mode!r}"
        cfg = dict(config)
        cfg.setdefault("data_per_class", 1000)
        self.cfg = EdgeDataConfig.from_config(cfg)
        assert cfg.get("num_classes", self.cfg.num_classes) == self.cfg.num_classes, \
            f"num_classes={cfg.get('num_classes')} != len(class_type)={self.cfg.num_classes}"
        self.permutater = self.unpermutater = None
        if self.cfg.use_permutation:
            assert cfg.get("permutater") is not None and cfg.get("unpermutater") is not None, \
                "use_permutation needs both 'permutater' and 'unpermutater'"
            self.permutater, self.unpermutater = cfg["permutater"], cfg["unpermutater"]
        self.mode, self.transform = mode, transform
        images, self.labels, (self.mean, self.std) = generate_edge_arrays(
            self.cfg, mode, self.cfg.data_per_class, self.permutater, np.random)
        self.images = [Image.fromarray(img, mode="L") for img in images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx):
        if torch.is_tensor(idx):
            idx = idx.tolist()
        img = self.images[idx]
        if self.transform is not None:
            img = self.transform(img)
        return img, np.int64(self.labels[idx])

    def get_image_statistics(self) -> tuple[float, float]:
        """(mean, std) of the float images after permutation, before quantisation."""
        return self.mean, self.std

    def get_permutater(self):
        return self.permutater

    def get_unpermutater(self):
        return self.unpermutater


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)


def build_edges(cfg: EdgeDataConfig | Mapping[str, Any], seed: int | None = None) -> DataBundle:
    """Build the edge dataset of one trial as CPU tensors (x float32 (N,1,S,S) in [0,1]).

    Streams: "framework" draws the training set from RandomState(data_seed or cfg["seed"]
    or 10), the validation set (valid_per_class per class, mode "valid") from its own stream
    derived from `valid_seed` -- identical for every trial however data_per_class is swept --
    and the permutation from RandomState(permutation_seed). "notebook" replays one stream
    from the data seed: permutation (if used), the training sets of `notebook_train_sizes`
    (plus data_per_class if missing) in ascending order, keeping data_per_class, then the
    validation set.

    Args:
        cfg: the trial's EdgeDataConfig (what a trial passes), or a mapping of settings
            (EdgeDataConfig keys are read, others ignored; its "seed" is the trial seed).
        seed: the trial's seed (the training set's stream when data_seed is None); default:
            the mapping's "seed", else TrainConfig's default seed.

    Returns:
        DataBundle with num_classes=len(class_type), class_names=class_type and meta
        {"permutation", "unpermutation", "mean", "std", "valid_mean", "valid_std"}.

    Raises:
        ConfigError: an invalid key value, or a `num_classes` that disagrees with class_type.
    """
    c = EdgeDataConfig.from_config(cfg)
    if not isinstance(cfg, EdgeDataConfig):
        check(cfg.get("num_classes", c.num_classes) == c.num_classes,
              f"num_classes={cfg.get('num_classes')!r} must equal len(class_type)={c.num_classes}")
        seed = cfg.get("seed", TrainConfig.seed) if seed is None else seed
    seed = c.data_seed if c.data_seed is not None else (TrainConfig.seed if seed is None else seed)
    check(isinstance(seed, int) and 0 <= seed < SEED_LIMIT,
          f"seed={seed!r} is not allowed; need an integer 0 <= seed < 2**32")
    perm = unperm = None
    if c.data_stream == "framework":
        if c.use_permutation:
            perm, unperm = make_permutation(c.spatial_resolution, _rng(c.permutation_seed))
        x, y, stats = generate_edge_arrays(c, "train", c.data_per_class, perm, _rng(seed))
        xv, yv, vstats = generate_edge_arrays(c, "valid", c.valid_per_class, perm,
                                              _valid_rng(c.valid_seed))
    else:
        rng = _rng(seed)
        if c.use_permutation:
            perm, unperm = make_permutation(c.spatial_resolution, rng)
        for n in sorted(set(c.notebook_train_sizes) | {c.data_per_class}):
            out = generate_edge_arrays(c, "train", n, perm, rng)
            if n == c.data_per_class:
                x, y, stats = out
        xv, yv, vstats = generate_edge_arrays(c, "valid", c.valid_per_class, perm, rng)
    return DataBundle(
        x_train=_to_tensor(x), y_train=torch.from_numpy(y), x_val=_to_tensor(xv),
        y_val=torch.from_numpy(yv), num_classes=c.num_classes, class_names=list(c.class_type),
        meta={"permutation": perm, "unpermutation": unperm, "mean": stats[0], "std": stats[1],
              "valid_mean": vstats[0], "valid_std": vstats[1]})
