"""CIFAR-10 (SPEC 1.3) from the python batches under data_root, as uint8 tensors normalised on the device.

The batches are pickles; they are read with a restricted unpickler (trainables.data.safe_pickle)
that builds only the format's dicts, lists, strings and numpy arrays, so a crafted file in a
data folder cannot run code.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config_base import IMAGE_SIDE_LARGEST, ConfigBase, check, check_at_most, check_seed
from trainables.data.bundle import DataBundle
from trainables.data.image_cache import NORMALIZATIONS, ImageTransform, cached_split, take_first
from core.errors import ConfigError
from trainables.data.safe_pickle import UnsafePickle, load_restricted

CLASS_NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
SPLITS = ("test", "45k5k")
# What the official archive holds: five training batches and one test batch of 10,000 images each
# (30,720,000 pixel bytes plus labels and file names, about 31 MB per file). A file larger than
# MAX_BATCH_BYTES or declaring more images is refused before any array is built.
IMAGES_PER_BATCH = 10_000
PIXELS = 3 * 32 * 32
MAX_BATCH_BYTES = IMAGES_PER_BATCH * PIXELS + (4 << 20)
MAX_META_BYTES = 64 << 10


def shown(path) -> str:
    """An absolute path for messages; never fails (Path.resolve raises on a symlink loop)."""
    return os.path.abspath(os.path.expanduser(str(path)))


def default_data_root() -> str:
    """Data root when the config gives none: $SWEEP_DATA_ROOT, else ./data."""
    return os.environ.get("SWEEP_DATA_ROOT", "./data")


@dataclass(frozen=True)
class Cifar10Config(ConfigBase):
    """Trial-config keys of the CIFAR-10 dataset.

    Attributes:
        data_root: folder holding cifar-10-batches-py/ (torchvision layout).
        download: let torchvision download the archive when the files are missing.
        normalization: "half" (LAB), "cifar" (BASE per-channel), "imagenet" or "none" (PARAM).
        split: "test" (50k train, test set evaluated every epoch) or "45k5k" (BASE split).
        split_seed: seed of the 45k/5k permutation (42 in BASE).
        train_subset / eval_subset: keep the first N samples (smoke runs), None = all.
        resize: side length to resize to on the device (bilinear), None = keep 32.
    """

    data_root: str = field(default_factory=default_data_root)
    download: bool = False
    normalization: str = "half"
    split: str = "test"
    split_seed: int = 42
    train_subset: int | None = None
    eval_subset: int | None = None
    resize: int | None = None

    def __post_init__(self):
        super().__post_init__()
        check_seed("split_seed", self.split_seed)
        check_at_most("resize", self.resize, IMAGE_SIDE_LARGEST)
        allowed = ("half", "cifar", "imagenet", "none")
        check(self.normalization in allowed,
              f"normalization={self.normalization!r} not allowed for cifar10; use one of {allowed}")
        check(self.split in SPLITS, f"split={self.split!r} not allowed; use one of {SPLITS}")
        for key in ("train_subset", "eval_subset", "resize"):
            value = getattr(self, key)
            check(value is None or value >= 1, f"{key} must be >= 1 or None, got {value}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        side = self.resize or 32
        return (3, side, side)

    def inactive_keys(self) -> dict[str, str]:
        """split_seed only draws the 45k/5k split."""
        return {} if self.split == "45k5k" else {"split_seed": "split_seed needs split='45k5k'"}

    def preflight(self) -> None:
        """Fail before any trial starts when the files are missing and download is off."""
        if not self.download:
            missing_cifar_files(self.data_root)


def missing_cifar_files(data_root: str) -> None:
    """Raise ConfigError naming the folder looked in and how to get the files, if any is missing."""
    folder = Path(data_root).expanduser() / FOLDER
    missing = [f for f in TRAIN_FILES + TEST_FILES + ["batches.meta"] if not (folder / f).is_file()]
    if missing:
        raise ConfigError(
            f"CIFAR-10 not found: looked in {shown(folder)} and missing {missing}. Get it with "
            f"--set download=true (needs internet), or copy the extracted cifar-10-batches-py folder "
            f"from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into "
            f"{shown(data_root)} (or set data_root / $SWEEP_DATA_ROOT)")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N,3,32,32) uint8 and labels (N,) of one CIFAR-10 batch file, read with the restricted
    unpickler (trainables.data.safe_pickle): the same arrays torchvision's loader builds, without
    running whatever a crafted file asks for.

    Raises:
        ConfigError: the file asks for anything outside the format (named, nothing run), or is not a
            batch (corrupt, truncated, wrong keys or sizes).
    """
    try:
        entry = load_restricted(path, MAX_BATCH_BYTES)
    except UnsafePickle as err:
        raise ConfigError(f"CIFAR-10 file {path} is not a plain CIFAR-10 batch and was not loaded: {err}. "
                          "Replace it with the file from the official archive") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path.name} holds a {type(entry).__name__}, not a batch dict")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data = entry.get("data")
    labels = entry.get("labels", entry.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or not isinstance(labels, list):
        raise ValueError(f"{path.name} has no uint8 'data' array and 'labels' list")
    n = len(labels)
    if n > IMAGES_PER_BATCH or data.shape not in ((n, PIXELS), (n, 3, 32, 32)):
        raise ValueError(f"{path.name} holds data of shape {data.shape} for {n} labels; a batch is at most "
                         f"{IMAGES_PER_BATCH} rows of {PIXELS} pixels, one label each")
    if not all(type(v) is int for v in labels):
        raise ValueError(f"{path.name} has labels that are not integers")
    return data.reshape(n, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def check_meta(path: Path) -> None:
    """batches.meta, read with the restricted unpickler: a dict naming the 10 classes."""
    try:
        meta = load_restricted(path, MAX_META_BYTES)
    except UnsafePickle as err:
        raise ConfigError(f"CIFAR-10 file {path} is not a plain batches.meta and was not loaded: {err}") from None
    names = meta.get("label_names", meta.get(b"label_names")) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise ValueError(f"{path.name} does not name 10 classes")


def _download(root: Path) -> None:
    """torchvision's downloader (imported only here: reading the files needs no torchvision)."""
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as err:  # URLError, md5 mismatch, disk full
        raise ConfigError(f"download=true but CIFAR-10 could not be downloaded into {shown(root)} "
                          f"({type(err).__name__}: {err}); copy cifar-10-batches-py there instead") from None


def load_cifar10_uint8(data_root: str, train: bool, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N,3,32,32) uint8 and labels (N,) int64 of one CIFAR-10 split, cached per process and on disk.

    Raises:
        ConfigError: files missing (with download off or failing) or unreadable.
    """
    root = Path(data_root).expanduser()
    if download:
        _download(root)
    missing_cifar_files(data_root)
    folder = root / FOLDER
    sources = [folder / f for f in (TRAIN_FILES if train else TEST_FILES)]

    def load() -> tuple[np.ndarray, np.ndarray]:
        try:
            check_meta(folder / "batches.meta")
            parts = [read_batch(p) for p in sources]
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
        except ConfigError:
            raise
        except Exception as err:  # truncated pickle, wrong sizes, not a pickle at all
            raise ConfigError(f"CIFAR-10 files in {shown(folder)} are corrupt or truncated "
                              f"({type(err).__name__}: {str(err)[:200]}); delete them and copy or "
                              "download them again") from None
        if len(x) != len(y) or x.shape[1:] != (3, 32, 32) or (len(y) and not 0 <= y.min() <= y.max() <= 9):
            raise ConfigError(f"CIFAR-10 files in {shown(folder)} are inconsistent: {len(x)} images "
                              f"of shape {x.shape[1:]} for {len(y)} labels; expected 3x32x32 and labels 0-9")
        return x, y

    return cached_split(f"cifar10-{'train' if train else 'test'}", sources, load, root / "uint8_cache")


def split_45k5k(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train/valid indices as torch.utils.data.random_split(range(n), [0.9 n, 0.1 n], generator seeded `seed`).

    For n = 50,000 this is BASE's 45,000 / 5,000 split with the same indices.
    """
    n_valid = n // 10
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n - n_valid], perm[n - n_valid:]


def build_cifar10(cfg: Mapping[str, Any], seed: int | None = None) -> DataBundle:
    """CIFAR-10 as a DataBundle of uint8 images; normalisation (and resize) run on the device.

    split "test": train = the 50k training set, held out = the 10k test set (eval_split "test").
    split "45k5k": train/valid from the training set (eval_split "valid"); the test set is unused.

    Raises:
        ConfigError: bad keys, missing or corrupt files.
    """
    c = Cifar10Config.from_config(cfg)
    x, y = load_cifar10_uint8(c.data_root, train=True, download=c.download)
    if c.split == "45k5k":
        tr, va = split_45k5k(len(y), c.split_seed)
        x_train, y_train, x_val, y_val = x[tr], y[tr], x[va], y[va]
        eval_split = "valid"
    else:
        x_train, y_train = x, y
        x_val, y_val = load_cifar10_uint8(c.data_root, train=False)
        eval_split = "test"
    x_train, y_train = take_first(x_train, y_train, c.train_subset)
    x_val, y_val = take_first(x_val, y_val, c.eval_subset)
    mean, std = NORMALIZATIONS[c.normalization]
    return DataBundle(x_train, y_train, x_val, y_val, num_classes=10, eval_split=eval_split,
                      class_names=list(CLASS_NAMES), input_transform=ImageTransform(mean, std, c.resize),
                      meta={"dataset": "cifar10", "pixels": "uint8", "normalization": c.normalization})
