"""Frozen-backbone features of CIFAR-10 (SPEC 1.3, 2.5), computed once and cached on disk.

The cache key hashes (backbone, weights file content or "hub", dataset, transform, subsets), so
every probe trial of a sweep that shares them loads the same file; a file lock makes concurrent
trials compute it once. Only the linear head trains on these tensors.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core.config_base import IMAGE_SIDE_LARGEST, ConfigBase, check, check_at_most, check_seed
from trainables.data.bundle import DataBundle
from trainables.data.cifar import CLASS_NAMES, default_data_root, load_cifar10_uint8, missing_cifar_files
from trainables.data.image_cache import NORMALIZATIONS, ImageTransform, take_first
from core.errors import ConfigError
from trainables.models.probes import BACKBONES, build_backbone, get_backbone

CACHE_VERSION = 1
CROP_PADDING = 14  # RandomCrop(224, padding=14) of the ResNet probe
# SPEC 1.3 extraction batch sizes (train, test) and whether the train pass is augmented.
EXTRACTION = {"resnet18": ((128, 256), True), "vit_s16": ((256, 512), False)}

backbone_forward_passes = 0  # batches run through a backbone in this process (tests count them)
_MEMORY: dict[str, dict[str, torch.Tensor]] = {}
_WEIGHT_HASHES: dict[tuple, str] = {}


@dataclass(frozen=True)
class FeatureConfig(ConfigBase):
    """Trial-config keys of the cached-feature dataset.

    Attributes:
        backbone: "resnet18" (512-d) or "vit_s16" (384-d).
        weights: local checkpoint file, or a folder holding <backbone>.pth (one setting for a sweep
            over backbones), or None for the hub's pretrained weights.
        data_root / download: where CIFAR-10 lives (see Cifar10Config).
        feature_cache_dir: cache folder; None = <data_root>/feature_cache.
        train_subset / eval_subset: first N images only (smoke runs), None = all.
        normalization: ImageNet statistics by default, as the source (timm's ViT uses 0.5/0.5).
        resize: side the 32-px images are resized to (bilinear).
        augment: flip + RandomCrop(padding 14), drawn once per training image during extraction;
            None = the source's choice (ResNet-18 yes, ViT-S no).
        augment_seed: seed of those draws.
        feature_batch_size: extraction batch; None = the source's per-backbone sizes.
        feature_device: "auto" (CUDA when present), "cpu" or "cuda".
    """

    backbone: str = "resnet18"
    weights: str | None = None
    data_root: str = field(default_factory=default_data_root)
    download: bool = False
    feature_cache_dir: str | None = None
    train_subset: int | None = None
    eval_subset: int | None = None
    normalization: str = "imagenet"
    resize: int = 224
    augment: bool | None = None
    augment_seed: int = 42
    feature_batch_size: int | None = None
    feature_device: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        check_seed("augment_seed", self.augment_seed)
        check_at_most("resize", self.resize, IMAGE_SIDE_LARGEST)
        check(self.backbone in BACKBONES,
              f"backbone={self.backbone!r} not allowed; use one of {sorted(BACKBONES)}")
        allowed = ("imagenet", "half", "cifar", "none")
        check(self.normalization in allowed,
              f"normalization={self.normalization!r} not allowed for features; use one of {allowed}")
        check(self.feature_device in ("auto", "cpu", "cuda"),
              f"feature_device={self.feature_device!r} not allowed; use one of ('auto', 'cpu', 'cuda')")
        check(self.resize > 2 * CROP_PADDING, f"resize must be > {2 * CROP_PADDING}, got {self.resize}")
        for key in ("train_subset", "eval_subset", "feature_batch_size"):
            value = getattr(self, key)
            check(value is None or value >= 1, f"{key} must be >= 1 or None, got {value}")

    @property
    def cache_dir(self) -> Path:
        return Path(self.feature_cache_dir or Path(self.data_root) / "feature_cache").expanduser()

    @property
    def augmented(self) -> bool:
        return EXTRACTION[self.backbone][1] if self.augment is None else self.augment

    @property
    def input_shape(self) -> tuple[int]:
        return (get_backbone(self.backbone).dim,)

    def inactive_keys(self) -> dict[str, str]:
        """augment_seed only draws the flips and crops of an augmented extraction."""
        return {} if self.augmented else {"augment_seed": "augment_seed needs augment=True (or resnet18's default)"}

    def preflight(self) -> None:
        """Fail before any trial starts: weights file missing, or neither cached features nor CIFAR files."""
        weights_file(self.weights, self.backbone)
        if not self.download and not (self.cache_dir / f"{cache_key(self)}.pt").is_file():
            missing_cifar_files(self.data_root)


WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")


def weights_file(weights: str | None, backbone: str) -> Path | None:
    """The checkpoint to load: None (hub), the file itself, or <dir>/<backbone>{.pth,.pt,.safetensors}.

    A folder lets one `--set weights=DIR` serve a sweep over several backbones.
    """
    if weights is None:
        return None
    path = Path(weights).expanduser()
    if path.is_dir():
        found = [path / f"{backbone}{s}" for s in WEIGHT_SUFFIXES if (path / f"{backbone}{s}").is_file()]
        if not found:
            raise ConfigError(f"weights={weights!r} is a folder without {backbone}.pth, {backbone}.pt or "
                              f"{backbone}.safetensors; put the {backbone} checkpoint there or pass the file")
        return found[0]
    if not path.is_file():
        raise ConfigError(f"weights={weights!r}: no such file or folder; expected a local checkpoint of "
                          f"{backbone} (or a folder holding {backbone}.pth)")
    return path


def _weights_id(path: Path | None) -> str:
    if path is None:
        return "hub"
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _WEIGHT_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _WEIGHT_HASHES[memo] = h.hexdigest()
    return _WEIGHT_HASHES[memo]


def cache_key(c: FeatureConfig) -> str:
    """Hash of everything that changes the features: backbone, weights content, data, transform, subsets."""
    desc = {"version": CACHE_VERSION, "backbone": c.backbone,
            "weights": _weights_id(weights_file(c.weights, c.backbone)),
            "dataset": "cifar10",
            "transform": {"resize": c.resize, "normalization": NORMALIZATIONS[c.normalization],
                          "augment": c.augmented, "augment_seed": c.augment_seed if c.augmented else None},
            "train_subset": c.train_subset, "eval_subset": c.eval_subset}
    return f"{c.backbone}-" + hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]


def _flip_crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """RandomHorizontalFlip then RandomCrop(side, padding=14, zero fill), one draw per image."""
    n, side = x.shape[0], x.shape[-1]
    flips = torch.rand(n, generator=gen) < 0.5
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=gen)
    x = torch.where(flips.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(x, (CROP_PADDING,) * 4)
    return torch.stack([padded[i, :, top:top + side, left:left + side]
                        for i, (top, left) in enumerate(offsets.tolist())])


@torch.no_grad()
def extract(backbone: torch.nn.Module, images: torch.Tensor, transform: ImageTransform,
            batch_size: int, device: torch.device, gen: torch.Generator | None = None) -> torch.Tensor:
    """Features (N, d) float32 on CPU of uint8 images, in order (unshuffled), augmenting when `gen` is given."""
    global backbone_forward_passes
    out = []
    for start in range(0, len(images), batch_size):
        x = transform.to_unit(images[start:start + batch_size].to(device))
        if gen is not None:
            x = _flip_crop(x, gen)
        backbone_forward_passes += 1
        out.append(backbone(transform.normalize(x)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def _compute(c: FeatureConfig) -> dict[str, torch.Tensor]:
    x_tr, y_tr = take_first(*load_cifar10_uint8(c.data_root, True, c.download), c.train_subset)
    x_te, y_te = take_first(*load_cifar10_uint8(c.data_root, False), c.eval_subset)
    want = c.feature_device if c.feature_device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("feature_device='cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    device = torch.device(want)
    path = weights_file(c.weights, c.backbone)
    net = build_backbone(c.backbone, None if path is None else str(path)).to(device)
    mean, std = NORMALIZATIONS[c.normalization]
    transform = ImageTransform(mean, std, c.resize)
    (bs_train, bs_test), _ = EXTRACTION[c.backbone]
    gen = torch.Generator().manual_seed(c.augment_seed) if c.augmented else None
    return {"x_train": extract(net, x_tr, transform, c.feature_batch_size or bs_train, device, gen),
            "y_train": y_tr.clone(),
            "x_test": extract(net, x_te, transform, c.feature_batch_size or bs_test, device),
            "y_test": y_te.clone()}


def load_or_compute(c: FeatureConfig) -> tuple[dict[str, torch.Tensor], str, bool]:
    """Return (features, cache key, cache hit); computes under a file lock when the cache misses."""
    key = cache_key(c)
    if key in _MEMORY:
        return _MEMORY[key], key, True
    c.cache_dir.mkdir(parents=True, exist_ok=True)
    path = c.cache_dir / f"{key}.pt"
    with open(c.cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second trial waits here, then finds the file
        try:
            hit = path.is_file()
            if hit:
                try:
                    feats = torch.load(path, map_location="cpu", weights_only=True)
                except Exception:  # a damaged cache file is recomputed, not trusted
                    hit = False
            if not hit:
                feats = _compute(c)
                fd, tmp = tempfile.mkstemp(dir=c.cache_dir, suffix=".tmp")
                os.close(fd)
                torch.save(feats, tmp)
                os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _MEMORY[key] = feats
    return feats, key, hit


def clear_memory_cache() -> None:
    """Forget in-process features (tests use this to exercise the disk cache)."""
    _MEMORY.clear()


def build_cifar10_features(cfg: Mapping[str, Any], seed: int | None = None) -> DataBundle:
    """Cached backbone features of CIFAR-10: train (N, d) and test (10k, d) float32, eval_split "test".

    meta carries feature_cache_hit / feature_cache_key (the trainable tags the MLflow run with them).

    Raises:
        ConfigError: bad keys, missing data or weights, unusable weights file.
    """
    c = FeatureConfig.from_config(cfg)
    feats, key, hit = load_or_compute(c)
    return DataBundle(feats["x_train"], feats["y_train"], feats["x_test"], feats["y_test"],
                      num_classes=10, eval_split="test", class_names=list(CLASS_NAMES),
                      meta={"dataset": "cifar10_features", "backbone": c.backbone,
                            "feature_dim": int(feats["x_train"].shape[1]), "feature_cache_hit": hit,
                            "feature_cache_key": key, "weights": c.weights or "hub"})
