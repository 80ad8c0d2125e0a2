"""Bounded decoding (issue 24): crafted CIFAR-10 / MNIST files are refused before any array larger
than the files is built, and nothing is written to the uint8 cache. Each case asserts the refusal
and a peak of Python-allocated memory far below what the file asks for."""
from __future__ import annotations

import pickle
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from fakedata import fake_cifar, fake_cifar_root, fake_mnist, fake_mnist_root  # noqa: F401

from core.errors import ConfigError
from trainables.data import build_data, image_cache
from trainables.data.safe_pickle import PickleTooLarge, load_restricted

P2 = b"\x80\x02"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _call(fn: bytes, *args: bytes) -> bytes:
    return fn + b"(" + b"".join(args) + b"tR"


def _dict(**items: bytes) -> bytes:
    return b"}(" + b"".join(_str(k) + v for k, v in items.items()) + b"u."


def black_images_pickle(n: int) -> bytes:
    """~160 bytes: an uninitialised (n, 3072) array via _reconstruct and n labels via list(bytes(n))."""
    shape = b"(" + _int(n) + _int(3072) + b"t"
    data = _call(_global("numpy.core.multiarray", "_reconstruct"), _global("numpy", "ndarray"), shape,
                 b"C\x01B")
    labels = _call(_global("__builtin__", "list"), _call(_global("__builtin__", "bytes"), _int(n)))
    return P2 + _dict(data=data, labels=labels)


def amplified_pickle(chunk: int, copies: int) -> bytes:
    """One memoised string of `chunk` chars encoded `copies` times: chunk + ~10 bytes per copy."""
    body = _str("\xff" * chunk) + b"q\x00"  # BINPUT 0
    enc = _global("_codecs", "encode") + b"q\x01" + _str("latin1") + b"q\x02"
    items = b"".join(b"h\x01(h\x00h\x02tR" for _ in range(copies))  # encode(memo0, 'latin1')
    return P2 + body + enc + b"0" * 3 + b"](" + items + b"e."


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the caller checks what was raised
        tracemalloc.stop()
        return err
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_black_image_pickle_is_refused_without_allocating(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(black_images_pickle(100_000))
    assert path.stat().st_size < 300
    # The same file through plain pickle really is 100,000 images (proof the case is hostile).
    plain = pickle.loads(path.read_bytes())
    assert plain["data"].shape == (100_000, 3072) and len(plain["labels"]) == 100_000
    del plain
    tracemalloc.start()
    with pytest.raises(PickleTooLarge, match="more than a data_batch_1 file"):
        load_restricted(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000


def test_amplifying_pickle_is_refused_within_its_budget(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(amplified_pickle(56_000, 2_000))  # ~76 KB asking for 112 MB
    tracemalloc.start()
    with pytest.raises(PickleTooLarge):
        load_restricted(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000
    ok = tmp_path / "ok"
    ok.write_bytes(amplified_pickle(1_000, 2))  # the same shape at a size the budget allows
    assert [len(b) for b in load_restricted(ok)] == [1_000, 1_000]


def test_oversized_batch_file_refused_before_reading(tmp_path):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        f.truncate(50 << 20)  # sparse: 50 MB, larger than any CIFAR-10 batch
    with pytest.raises(PickleTooLarge, match="at most"):
        load_restricted(path, 40 << 20)


def _cifar_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "cifar-10-batches-py", dst / "cifar-10-batches-py")
    return dst / "cifar-10-batches-py"


def test_six_tiny_cifar_files_are_not_600k_images(fake_cifar_root, tmp_path):  # noqa: F811
    folder = _cifar_copy(fake_cifar_root, tmp_path)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(black_images_pickle(100_000))
    image_cache.clear_memory_cache()
    with pytest.raises(ConfigError, match="not a plain CIFAR-10 batch") as err:
        build_data("cifar10", {"data_root": str(tmp_path)})
    assert "Replace it" in str(err.value)
    assert not (tmp_path / "uint8_cache").exists() or not any((tmp_path / "uint8_cache").iterdir())


def test_cifar_batch_with_more_rows_than_labels_is_refused(fake_cifar_root, tmp_path):  # noqa: F811
    folder = _cifar_copy(fake_cifar_root, tmp_path)
    batch = {"labels": [1, 2], "data": np.zeros((3, 3072), np.uint8)}
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    image_cache.clear_memory_cache()
    with pytest.raises(ConfigError, match=r"shape \(3, 3072\) for 2 labels"):
        build_data("cifar10", {"data_root": str(tmp_path)})


def _idx(dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("name,content,needle", [
    ("train-images-idx3-ubyte", _idx((600_000, 28, 28), b""), "at most 60000"),
    ("train-images-idx3-ubyte", _idx((60_000, 28, 28), b"\x00" * 100), "header declares"),
    ("train-images-idx3-ubyte", _idx((60, 2800, 28), b""), "shape (2800, 28)"),
    ("t10k-labels-idx1-ubyte", _idx((4_000_000_000,), b""), "at most 10000"),
], ids=["600k-images", "short-file", "wrong-shape", "4e9-labels"])
def test_mnist_headers_checked_before_any_array(fake_mnist_root, tmp_path, name, content, needle):  # noqa: F811
    shutil.copytree(fake_mnist_root / "MNIST", tmp_path / "MNIST")
    (tmp_path / "MNIST" / "raw" / name).write_bytes(content)
    image_cache.clear_memory_cache()
    err = _peak(lambda: build_data("mnist", {"data_root": str(tmp_path)}))
    assert isinstance(err, ConfigError) and needle in str(err) and "corrupt" in str(err)
    split = "train" if name.startswith("train") else "test"
    assert not list(tmp_path.glob(f"uint8_cache/mnist-{split}-*"))


def test_planted_oversized_cache_is_not_trusted(fake_mnist_root, tmp_path):  # noqa: F811
    shutil.copytree(fake_mnist_root / "MNIST", tmp_path / "MNIST")
    image_cache.clear_memory_cache()
    first = build_data("mnist", {"data_root": str(tmp_path)})
    xs = sorted((tmp_path / "uint8_cache").glob("mnist-train-*-x.npy"))
    assert len(xs) == 1
    np.save(xs[0], np.zeros((6000, 1, 28, 28), np.uint8))  # 100x the source files
    np.save(str(xs[0]).replace("-x.npy", "-y.npy"), np.zeros(6000, np.int64))
    image_cache.clear_memory_cache()
    again = build_data("mnist", {"data_root": str(tmp_path)})
    assert again.x_train.shape == first.x_train.shape == (60, 1, 28, 28)
