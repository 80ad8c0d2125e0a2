"""Shared pieces of the image datasets: uint8 tensor caches and on-device normalisation.

Each split is decoded once per process (a dict) and once per machine (a memory-mapped .npy
copy under <data_root>/uint8_cache, opened copy-on-write, so trials in other processes map
the same pages instead of unpickling the originals again). Tensors stay uint8 until the
trial's device normalises each batch.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import ConfigError

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # LAB scratch models, MNIST-MLP
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),  # BASE
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # pretrained probes
    "mnist": ((0.1307,), (0.3081,)),  # LeNet-5, ModifiedResNet18
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # PARAM: ToTensor only, values in [0, 1]
}

_MEMORY: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _stamp(sources: Sequence[Path]) -> str:
    """Hash of the source files' names, sizes and mtimes: a changed file invalidates the disk cache."""
    h = hashlib.sha256()
    for p in sources:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _write_npy(path: Path, array: np.ndarray) -> None:
    # Write to a temporary name and rename, so a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_split(name: str, sources: Sequence[Path], load: Callable[[], tuple[np.ndarray, np.ndarray]],
                 cache_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images uint8, labels int64) of one split, decoding the originals at most once.

    Args:
        name: split id, e.g. "cifar10-train".
        sources: the original files (their sizes and mtimes key the disk cache).
        load: decodes the originals; returns (uint8 images, integer labels) as arrays.
        cache_dir: where the memory-mapped copies live; None (or unwritable) keeps only the
            in-process cache.

    Returns:
        Tensors sharing memory with the cache: treat them as read-only.
    """
    stamp = _stamp(sources)
    source_bytes = sum(p.stat().st_size for p in sources)

    def bounded(x: np.ndarray, y: np.ndarray) -> bool:
        # Every pixel must come from a byte of the originals, one label per image: a cache (or a
        # decoder) claiming more cannot be the dataset and is never written or trusted.
        return x.ndim >= 1 and y.shape == (len(x),) and x.nbytes <= source_bytes
    key = (name, tuple(str(p.resolve()) for p in sources), stamp)
    if key in _MEMORY:
        return _MEMORY[key]
    x = y = None
    if cache_dir is not None:
        xp, yp = cache_dir / f"{name}-{stamp}-x.npy", cache_dir / f"{name}-{stamp}-y.npy"
        if xp.exists() and yp.exists():
            try:
                x, y = np.load(xp, mmap_mode="c"), np.load(yp, mmap_mode="r")
                if x.dtype != np.uint8 or y.dtype != np.int64 or not bounded(x, y):
                    x = y = None
                else:
                    y = np.array(y)
            except (OSError, ValueError):  # a damaged cache file: rebuild from the originals
                x = y = None
    if x is None:
        x, y = load()
        x, y = np.ascontiguousarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)
        if not bounded(x, y):
            raise ConfigError(f"{name}: decoding {[str(p) for p in sources]} gave {len(x)} images "
                              f"({x.nbytes:,} bytes) for {len(y)} labels from {source_bytes:,} bytes of files; "
                              "the files are not the dataset. Replace them with the official ones")
        if cache_dir is not None:
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                _write_npy(cache_dir / f"{name}-{stamp}-x.npy", x)
                _write_npy(cache_dir / f"{name}-{stamp}-y.npy", y)
            except OSError:
                pass  # read-only data_root: the in-process cache still works
    out = torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64))
    _MEMORY[key] = out
    return out


def clear_memory_cache() -> None:
    """Forget the in-process copies (tests use this to force a reload)."""
    _MEMORY.clear()


class ImageTransform:
    """Batch transform run on the trial's device: uint8 (or float in [0,1]) -> resized, normalised float.

    A float batch is taken to be in [0, 1] pixel space already, so evaluators can shift images
    there (zero fill = black) and reuse the same normalisation.

    Args:
        mean, std: per-channel statistics (one value each for greyscale).
        resize: output side in pixels (bilinear, as torchvision's Resize of a square image), or None.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], resize: int | None = None):
        self.mean, self.std, self.resize = tuple(mean), tuple(std), resize
        self._stats: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (str(device), channels)
        if key not in self._stats:
            mean = torch.tensor(self.mean[:channels], device=device).view(1, -1, 1, 1)
            std = torch.tensor(self.std[:channels], device=device).view(1, -1, 1, 1)
            self._stats[key] = (mean, std)
        return self._stats[key]

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1] (as ToTensor), resized; floats are taken as [0, 1] already."""
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if self.resize is not None and x.shape[-1] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a [0, 1] batch with this transform's statistics."""
        mean, std = self._on(x.device, x.shape[1])
        return (x - mean) / std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.to_unit(x))

    def __getstate__(self):  # device tensors are a cache, not state (Ray pickles bundles)
        return {"mean": self.mean, "std": self.std, "resize": self.resize, "_stats": {}}

    def __repr__(self) -> str:
        return f"ImageTransform(mean={self.mean}, std={self.std}, resize={self.resize})"


def take_first(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """First n samples (smoke runs), or all when n is None."""
    return (x, y) if n is None else (x[:n], y[:n])
