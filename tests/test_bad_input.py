"""Bad input is refused before it costs compute: exit code 2, a message naming the bad value and
what is allowed, no MLflow database or run, no Ray, no sweep folder.

One table; each row runs `sweep run` in-process. `{data}` is a copy of the fake CIFAR-10 and
MNIST files (damaged per row where the row says so), `{weights}` the fake backbone weights,
`{tmp}` the test's temp dir.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from fakedata import fake_cifar, fake_mnist, weights_dir  # noqa: F401
from refusal import assert_refused
from search_spaces import EXPERIMENTS
from search_spaces.experiment import Experiment

EDGE = ["run", "edge-data-per-class", "--smoke"]
CIFAR = ["run", "cifar10-param-efficiency", "--smoke", "--data-root", "{data}"]
MNIST = ["run", "mnist-mlp-lenet-resnet", "--smoke", "--data-root", "{data}"]
PROBE = ["run", "pretrained-linear-probe", "--smoke", "--data-root", "{data}", "--set", "backbone=resnet18"]
# Experiments a user might declare with a typo in a pairing (registered for one row only).
TYPO_PAIRINGS = {"typo-model": "simple_cn/edges", "typo-dataset": "simple_cnn/edge", "typo-pairing": "lenet5/edges"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


# (id, argv, fragments the error must contain, damage to the data copy or None)
CASES = [
    ("unknown-experiment", ["run", "edge-data-per-clas"],
     ["'edge-data-per-clas'", "Did you mean 'edge-data-per-class'"], None),
    ("unknown-model", ["run", "typo-model"], ["unknown model 'simple_cn'", "Did you mean 'simple_cnn'"], None),
    ("unknown-dataset", ["run", "typo-dataset"], ["unknown dataset 'edge'", "Did you mean 'edges'"], None),
    ("unknown-pairing", ["run", "typo-pairing"], ["unknown pairing 'lenet5/edges'", "'lenet5/mnist'"], None),
    ("unknown-set-key", EDGE + ["--set", "kernel_sise=3"], ["unknown config key 'kernel_sise'", "'kernel_size'"], None),
    ("unknown-grid-key", EDGE + ["--grid", "learning_rate=0.1,0.2"], ["'learning_rate'", "sweep list keys"], None),
    ("set-without-value", EDGE + ["--set", "lr"], ["--set expects key=value", "'lr'"], None),
    ("type-lr-string", EDGE + ["--set", "lr=fast"], ["lr='fast'", "expected float"], None),
    ("type-epochs-float", EDGE + ["--set", "epochs=2.5"], ["epochs=2.5", "expected int"], None),
    ("type-class-type-string", ["run", "edge-five-class", "--smoke", "--set", "class_type=horizontal"],
     ["class_type='horizontal'", "expected tuple"], None),
    ("type-seeds-cli", EDGE + ["--seeds", "three"], ["--seeds", "invalid int value: 'three'"], None),
    ("lr-zero", EDGE + ["--set", "lr=0"], ["lr must be > 0", "got 0"], None),
    ("lr-negative", EDGE + ["--grid", "lr=0.1,-0.01"], ["lr must be > 0", "got -0.01"], None),
    ("epochs-zero", EDGE + ["--set", "epochs=0"], ["epochs must be >= 1", "got 0"], None),
    ("kernel-size-zero", EDGE + ["--set", "kernel_size=0"],
     ["kernel_size must be an integer in [1, 28]", "got 0"], None),
    ("kernel-size-above-image", EDGE + ["--set", "kernel_size=29"],
     ["kernel_size must be an integer in [1, 28]", "got 29"], None),
    ("kernel-size-no-room-after-pool", EDGE + ["--set", "kernel_size=28"],
     ["kernel_size=28", "(1, 28, 28) input", "choose model settings that fit"], None),
    ("data-per-class-zero", EDGE + ["--grid", "data_per_class=0,10"], ["data_per_class=0", "must be >= 1"], None),
    ("unknown-class-type", ["run", "edge-five-class", "--smoke", "--set", "class_type=['horizontal','diagonl']"],
     ["'diagonl'", "'diagonal'"], None),
    ("gpus-negative", EDGE + ["--gpus-per-trial", "-1"],
     ["--gpus-per-trial", "got -1", "[0, 1] or a whole number"], None),
    ("gpus-fractional-above-one", EDGE + ["--gpus-per-trial", "1.5"], ["got 1.5", "[0, 1] or a whole number"], None),
    ("gpus-more-than-machine", EDGE + ["--gpus-per-trial", "64"], ["--gpus-per-trial 64", "GPUs"], None),
    ("cpus-zero", EDGE + ["--cpus-per-trial", "0"], ["--cpus-per-trial", "whole number >= 1, got 0"], None),
    ("cpus-fractional", EDGE + ["--cpus-per-trial", "1.5"], ["whole number >= 1, got 1.5"], None),
    ("cpus-more-than-machine", EDGE + ["--cpus-per-trial", "4096"], ["--cpus-per-trial 4096", "CPUs"], None),
    ("max-failures-negative", EDGE + ["--max-failures", "-1"], ["--max-failures must be >= 0", "-1"], None),
    ("max-concurrent-zero", EDGE + ["--max-concurrent", "0"], ["--max-concurrent must be >= 1", "0"], None),
    ("bad-sweep-name", EDGE + ["--name", "a/b"], ["--name 'a/b'", "letters, digits"], None),
    ("unknown-search", EDGE + ["--search", "bayes"], ["--search 'bayes'", "random"], None),
    ("storage-not-writable", EDGE + ["--storage-path", "{tmp}/a_file/ray_results"],
     ["--storage-path", "a_file", "cannot be created"], None),
    ("storage-read-only", EDGE + ["--storage-path", "{tmp}/read_only"], ["read_only", "is not writable"], "read-only"),
    ("tracking-uri-file-scheme", EDGE + ["--tracking-uri", "file:///{tmp}/mlruns"], ["'file'", "sqlite://"], None),
    ("tracking-uri-ftp-scheme", EDGE + ["--tracking-uri", "ftp://127.0.0.1/x"], ["'ftp'", "http://"], None),
    ("tracking-server-unreachable", EDGE + ["--tracking-uri", "http://127.0.0.1:{port}"],
     ["http://127.0.0.1:{port}", "unreachable", "sweep server"], None),
    ("cifar-files-missing", CIFAR, ["CIFAR-10 not found", "data_batch_3"], "cifar-missing"),
    ("cifar-batch-truncated", CIFAR, ["CIFAR-10 files", "corrupt or truncated"], "cifar-truncated"),
    ("cifar-batch-not-a-pickle", CIFAR, ["CIFAR-10 files", "corrupt or truncated"], "cifar-garbage"),
    ("mnist-images-truncated", MNIST, ["MNIST files", "corrupt or truncated"], "mnist-truncated"),
    ("weights-missing", PROBE + ["--set", "weights={tmp}/nope.pth"], ["weights=", "nope.pth", "no such file"], None),
    ("weights-wrong-architecture", PROBE + ["--set", "weights={weights}/vit_s16.pth"],
     ["vit_s16.pth", "is not a checkpoint for backbone 'resnet18'"], None),
    ("weights-not-a-checkpoint", PROBE + ["--set", "weights={tmp}/notes.pth"],
     ["notes.pth", "not a readable PyTorch checkpoint"], None),
    ("weights-not-a-state-dict", PROBE + ["--set", "weights={tmp}/list.pth"], ["list.pth", "not a state_dict"], None),
]
N_CASES = len(CASES)


def _damage(data: Path, how: str | None) -> None:
    batches = data / "cifar-10-batches-py"
    if how == "cifar-missing":
        (batches / "data_batch_3").unlink()
    elif how == "cifar-truncated":
        raw = (batches / "data_batch_3").read_bytes()
        (batches / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    elif how == "cifar-garbage":
        (batches / "test_batch").write_bytes(b"this is not a pickle\n" * 100)
    elif how == "read-only":
        (data.parent / "read_only").mkdir(mode=0o500)
    elif how == "mnist-truncated":
        path = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:1000])


@pytest.fixture
def setup(tmp_path, fake_cifar, fake_mnist, weights_dir, monkeypatch):  # noqa: F811
    """Per-row inputs: a fresh copy of the fake data, stray files, the typo experiments."""
    data = tmp_path / "data"
    shutil.copytree(fake_cifar[0], data)
    shutil.copytree(fake_mnist[0] / "MNIST", data / "MNIST")
    (tmp_path / "a_file").write_text("a file, not a folder")
    (tmp_path / "notes.pth").write_text("my notes, not a checkpoint")
    import torch

    torch.save([1, 2, 3], tmp_path / "list.pth")
    for name, pairing in TYPO_PAIRINGS.items():
        monkeypatch.setitem(EXPERIMENTS, name, Experiment(name=name, description="typo", pairings=(pairing,),
                                                          fixed={"epochs": 1}))
    return {"data": str(data), "weights": str(weights_dir), "tmp": str(tmp_path), "port": str(_closed_port())}


# root writes into read-only folders, so that row only means something for other users.
AS_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a 0o500 folder")


@pytest.mark.parametrize("argv, fragments, damage", [
    pytest.param(a, f, d, id=i, marks=[AS_ROOT] if d == "read-only" else []) for i, a, f, d in CASES])
def test_bad_input_refused_cleanly(argv, fragments, damage, setup, tmp_path, capsys):
    _damage(Path(setup["data"]), damage)
    argv = [a.format(**setup) for a in argv]
    fragments = [f.format(**setup) for f in fragments]
    assert_refused(argv, fragments, tmp_path, capsys)

