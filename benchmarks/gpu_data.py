"""Generated CIFAR-10 and MNIST for GPU tests and benchmarks, usable with torch and numpy alone.

The files are written in the real on-disk formats (CIFAR-10 python pickle batches, MNIST idx),
then the project's own uint8 cache (`trainables.data.image_cache.cached_split`) is primed with
the arrays written, so the real dataset builders (`build_data("mnist", ...)`, `"cifar10"`) read
them without torchvision (MNIST's decoder, used only on a cache miss; tests/test_gpu.py checks
that the decoders give exactly the primed arrays). Images are noise plus a
class-dependent bright band, so a model learns something within an epoch.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images (N, *shape): noise in [0, 96) plus 150 on rows [label*H/10, +H/10) (at most 245)."""
    x = rng.integers(0, 96, size=(len(labels), *shape), dtype=np.uint8)
    rows = shape[-2]
    band = max(rows // 10, 2)
    start = labels.astype(np.int64) * rows // 10
    r = np.arange(rows)
    on = (r[None, :] >= start[:, None]) & (r[None, :] < start[:, None] + band)  # (N, H)
    x += (150 * on).astype(np.uint8).reshape(len(labels), *([1] * (len(shape) - 2)), rows, 1)
    return x


def write_cifar10(root: Path, n_train: int = 500, n_test: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """data_batch_1..5 (n_train / 5 images each), test_batch and batches.meta under
    root/cifar-10-batches-py; returns the arrays (NCHW uint8, int64 labels) and primes the cache."""
    if n_train % 5:
        raise ValueError(f"n_train must be a multiple of 5 (five batches), got {n_train}")
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, labels: np.ndarray) -> np.ndarray:
        x = images(rng, labels, (3, 32, 32))
        batch = {"batch_label": name, "labels": labels.tolist(), "data": x.reshape(len(x), 3072),
                 "filenames": [f"{name}_{i}.png" for i in range(len(x))]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        return x

    per = n_train // 5
    ys = [rng.integers(0, 10, size=per) for _ in range(5)]
    xs = [dump(f"data_batch_{b + 1}", y) for b, y in enumerate(ys)]
    y_test = np.arange(n_test) % 10
    x_test = dump("test_batch", y_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": per, "num_vis": 3072}, f, protocol=2)
    out = {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys).astype(np.int64),
           "x_test": x_test, "y_test": y_test.astype(np.int64)}
    _prime("cifar10", root, out)
    return out


def _write_idx(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # 0x00 0x00, 0x08 (uint8), ndim, big-endian int32 sizes, data
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """The four uncompressed idx files under root/MNIST/raw; returns (N,1,28,28) arrays, primes the cache."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        y = rng.permutation(np.arange(n) % 10)
        x = images(rng, y, (28, 28))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[f"x_{split}"], out[f"y_{split}"] = x[:, None], y.astype(np.int64)
    _prime("mnist", root, out)
    return out


def _prime(dataset: str, root: Path, arrays: dict[str, np.ndarray]) -> None:
    """Fill the project's uint8 cache (memory and <root>/uint8_cache) with the arrays just written."""
    from trainables.data import cifar, mnist
    from trainables.data.image_cache import cached_split

    root = Path(root).expanduser()
    for train in (True, False):
        split = "train" if train else "test"
        if dataset == "cifar10":
            folder = root / cifar.FOLDER
            sources = [folder / f for f in (cifar.TRAIN_FILES if train else cifar.TEST_FILES)]
        else:
            sources = [root / "MNIST" / "raw" / f for f in mnist.FILES[train]]
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        cached_split(f"{dataset}-{split}", sources, lambda x=x, y=y: (x, y), root / "uint8_cache")
