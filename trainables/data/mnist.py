"""MNIST (SPEC 1.4) from torchvision's idx files under <data_root>/MNIST/raw, normalised on the device.

The idx files are read here (not by torchvision) so that each header is checked against the
sizes MNIST has before any array is built, and the array holds only bytes the file holds.
"""
from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config_base import ConfigBase, check
from trainables.data.bundle import DataBundle
from trainables.data.cifar import default_data_root, shown
from trainables.data.image_cache import NORMALIZATIONS, ImageTransform, cached_split, take_first
from core.errors import ConfigError

FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# What the official files hold: 60,000 training and 10,000 test images of 28x28 uint8 pixels.
MAX_IMAGES = {True: 60_000, False: 10_000}
SIDE = 28


def read_idx(path: Path, item_shape: tuple[int, ...], max_items: int) -> np.ndarray:
    """One uncompressed uint8 idx file as an (N, *item_shape) array, its header checked first.

    The header (magic 0x0000 0x08 ndim, then ndim big-endian sizes) must declare at most
    max_items items of item_shape, and the file must be exactly that long: the array is built
    from bytes the file holds, never from the sizes it claims.

    Raises:
        ValueError: bad magic, dimensions, counts or file length (named).
    """
    ndim = 1 + len(item_shape)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = f.read(4 + 4 * ndim)
        if len(header) < 4 + 4 * ndim or header[:3] != b"\x00\x00\x08" or header[3] != ndim:
            raise ValueError(f"{path.name} does not start with the idx header of a {ndim}-d uint8 array")
        dims = struct.unpack(f">{ndim}I", header[4:])
        if tuple(dims[1:]) != item_shape or dims[0] > max_items:
            raise ValueError(f"{path.name} declares {dims[0]} items of shape {tuple(dims[1:])}; expected at most "
                             f"{max_items} of shape {item_shape}")
        expected = len(header) + dims[0] * math.prod(item_shape)
        if size != expected:
            raise ValueError(f"{path.name} is {size:,} bytes; its header declares {expected:,}")
        data = bytearray(expected - len(header))  # writable: torch.from_numpy wants that
        got = f.readinto(data)
    if got != len(data):
        raise ValueError(f"{path.name} changed while it was read")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims[0], *item_shape)


@dataclass(frozen=True)
class MnistConfig(ConfigBase):
    """Trial-config keys of the MNIST dataset.

    Attributes:
        data_root: folder holding MNIST/raw/ (torchvision layout, uncompressed idx files).
        download: let torchvision download the files when they are missing.
        normalization: "half" (mean 0.5, std 0.5: MNIST-MLP) or "mnist" (0.1307, 0.3081).
        train_subset / eval_subset: keep the first N samples (smoke runs), None = all.
    """

    data_root: str = field(default_factory=default_data_root)
    download: bool = False
    normalization: str = "mnist"
    train_subset: int | None = None
    eval_subset: int | None = None

    def __post_init__(self):
        super().__post_init__()
        allowed = ("half", "mnist")
        check(self.normalization in allowed,
              f"normalization={self.normalization!r} not allowed for mnist; use one of {allowed}")
        for key in ("train_subset", "eval_subset"):
            value = getattr(self, key)
            check(value is None or value >= 1, f"{key} must be >= 1 or None, got {value}")

    def preflight(self) -> None:
        """Fail before any trial starts when the files are missing and download is off."""
        if not self.download:
            missing_mnist_files(self.data_root)


def _raw(data_root: str) -> Path:
    return Path(data_root).expanduser() / "MNIST" / "raw"


def missing_mnist_files(data_root: str) -> None:
    """Raise ConfigError naming the folder looked in and how to get the files, if any is missing."""
    raw = _raw(data_root)
    missing = [f for pair in FILES.values() for f in pair if not (raw / f).is_file()]
    if missing:
        raise ConfigError(
            f"MNIST not found: looked in {shown(raw)} and missing {missing}. Get it with "
            "--set download=true (needs internet), or copy the four uncompressed idx files "
            "(train-images-idx3-ubyte, ...) there (or set data_root / $SWEEP_DATA_ROOT)")


def load_mnist_uint8(data_root: str, train: bool, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N,1,28,28) uint8 and labels (N,) int64 of one MNIST split, cached per process and on disk.

    Raises:
        ConfigError: files missing (with download off or failing) or unreadable.
    """
    root = Path(data_root).expanduser()
    if download:
        try:
            from torchvision.datasets import MNIST

            MNIST(str(root), train=True, download=True)
        except Exception as err:
            raise ConfigError(f"download=true but MNIST could not be downloaded into {shown(_raw(data_root))} "
                              f"({type(err).__name__}: {err}); copy the idx files there instead") from None
    missing_mnist_files(data_root)
    raw = _raw(data_root)

    def load() -> tuple[np.ndarray, np.ndarray]:
        images, labels = FILES[train]
        try:
            x = read_idx(raw / images, (SIDE, SIDE), MAX_IMAGES[train])[:, None]
            y = read_idx(raw / labels, (), MAX_IMAGES[train]).astype(np.int64)
        except Exception as err:  # bad magic number, truncated file
            raise ConfigError(f"MNIST files in {shown(raw)} are corrupt or truncated "
                              f"({type(err).__name__}: {str(err)[:200]}); delete them and copy or "
                              "download them again") from None
        if len(x) != len(y) or x.shape[1:] != (1, 28, 28):
            raise ConfigError(f"MNIST files in {shown(raw)} are inconsistent: {len(x)} images of "
                              f"shape {x.shape[1:]} for {len(y)} labels; expected 1x28x28, one label each")
        if len(y) and not 0 <= int(y.min()) <= int(y.max()) <= 9:
            raise ConfigError(f"MNIST labels in {shown(raw / FILES[train][1])} are out of range "
                              f"({int(y.min())}..{int(y.max())}); expected digits 0-9: the file is corrupt")
        return x, y

    return cached_split(f"mnist-{'train' if train else 'test'}", [raw / f for f in FILES[train]],
                        load, root / "uint8_cache")


def build_mnist(cfg: Mapping[str, Any], seed: int | None = None) -> DataBundle:
    """MNIST as a DataBundle: train = 60k training set, held out = 10k test set (eval_split "test").

    Raises:
        ConfigError: bad keys, missing or corrupt files.
    """
    c = MnistConfig.from_config(cfg)
    x_train, y_train = take_first(*load_mnist_uint8(c.data_root, True, c.download), c.train_subset)
    x_val, y_val = take_first(*load_mnist_uint8(c.data_root, False), c.eval_subset)
    mean, std = NORMALIZATIONS[c.normalization]
    return DataBundle(x_train, y_train, x_val, y_val, num_classes=10, eval_split="test",
                      class_names=[str(d) for d in range(10)], input_transform=ImageTransform(mean[:1], std[:1]),
                      meta={"dataset": "mnist", "pixels": "uint8", "normalization": c.normalization})
