"""Tiny stand-ins for the external assets, written in the real on-disk formats.

CIFAR-10 as python pickle batches under <root>/cifar-10-batches-py (with batches.meta), MNIST
as uncompressed idx files under <root>/MNIST/raw, and randomly initialised backbone
checkpoints, so the real torchvision loaders and backbone code run offline. Import the
fixtures into a test module: `from fakedata import fake_cifar_root  # noqa: F401`.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(rng: np.random.RandomState, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Noise plus a class-dependent brightness band, so a model can learn something in a few steps."""
    x = rng.randint(0, 96, size=(len(labels), *shape)).astype(np.int64)
    rows = shape[-2]
    for i, label in enumerate(labels):
        start = int(label) * rows // 10
        x[i, ..., start:start + max(rows // 10, 2), :] += 150
    return np.clip(x, 0, 255).astype(np.uint8)


def write_fake_cifar10(root: Path, per_batch: int = 20, n_test: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Write data_batch_1..5, test_batch and batches.meta; return the arrays written (NCHW uint8)."""
    rng = np.random.RandomState(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list] = {"x_train": [], "y_train": []}

    def dump(name: str, labels: np.ndarray) -> np.ndarray:
        x = _images(rng, labels, (3, 32, 32))
        batch = {"batch_label": name, "labels": labels.tolist(), "data": x.reshape(len(x), 3072),
                 "filenames": [f"{name}_{i}.png" for i in range(len(x))]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        return x

    for b in range(1, 6):
        labels = rng.randint(0, 10, size=per_batch)
        written["x_train"].append(dump(f"data_batch_{b}", labels))
        written["y_train"].append(labels)
    y_test = np.arange(n_test) % 10  # every class present, cats (3) included
    x_test = dump("test_batch", y_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2)
    return {"x_train": np.concatenate(written["x_train"]), "y_train": np.concatenate(written["y_train"]),
            "x_test": x_test, "y_test": y_test}


def _write_idx(path: Path, array: np.ndarray) -> None:
    # idx format: 0x00 0x00, dtype code 0x08 (uint8), number of dims, big-endian int32 sizes, data.
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_fake_mnist(root: Path, n_train: int = 60, n_test: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four uncompressed MNIST idx files; return the arrays written ((N,28,28) uint8)."""
    rng = np.random.RandomState(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        x = _images(rng, y, (28, 28))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def full_backbone_state(name: str) -> dict[str, torch.Tensor]:
    """A randomly initialised state_dict laid out like the published checkpoint (classifier included)."""
    if name == "resnet18":
        from torchvision.models import resnet18
        return resnet18(weights=None).state_dict()
    import timm
    return timm.create_model("vit_small_patch16_224", pretrained=False).state_dict()


def write_backbone_weights(path: Path, name: str) -> Path:
    """torch.save a random-init checkpoint of backbone `name` to `path`."""
    torch.manual_seed(0)
    torch.save(full_backbone_state(name), path)
    return Path(path)


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """(data_root with a fake CIFAR-10, the arrays written). Read-only: copy it to damage files."""
    root = tmp_path_factory.mktemp("cifar_root")
    return root, write_fake_cifar10(root)


@pytest.fixture(scope="session")
def fake_cifar_root(fake_cifar) -> Path:
    return fake_cifar[0]


@pytest.fixture(scope="session")
def fake_mnist(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("mnist_root")
    return root, write_fake_mnist(root)


@pytest.fixture(scope="session")
def fake_mnist_root(fake_mnist) -> Path:
    return fake_mnist[0]


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """A folder with resnet18.pth and vit_s16.pth: random weights in the published layouts."""
    d = tmp_path_factory.mktemp("weights")
    write_backbone_weights(d / "resnet18.pth", "resnet18")
    write_backbone_weights(d / "vit_s16.pth", "vit_s16")
    return d


@pytest.fixture(scope="session")
def fake_data_root(tmp_path_factory) -> Path:
    """One data_root holding both a fake CIFAR-10 and a fake MNIST (for whole-experiment sweeps)."""
    root = tmp_path_factory.mktemp("data")
    write_fake_cifar10(root)
    write_fake_mnist(root)
    return root
