"""CIFAR-10 / MNIST loaders on fake files in the real formats, the localisation task, and the evaluators."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from fakedata import fake_cifar, fake_cifar_root, fake_mnist, fake_mnist_root  # noqa: F401

from trainables.data import build_data
from trainables.data import image_cache
from trainables.data.cifar import Cifar10Config
from trainables.data.localization import PROBE_POSITIONS, generate
from trainables.data.mnist import MnistConfig
from core.errors import ConfigError
from trainables.evaluators import EVALUATORS
from trainables.evaluators.iou import box_iou
from trainables.evaluators.shift import translate


def test_cifar_loads_real_format_as_uint8_nchw(fake_cifar):
    root, arrays = fake_cifar
    b = build_data("cifar10", {"data_root": str(root)})
    assert b.x_train.dtype == torch.uint8 and b.x_train.shape == (100, 3, 32, 32)
    assert np.array_equal(b.x_train.numpy(), arrays["x_train"]) and np.array_equal(b.y_train.numpy(), arrays["y_train"])
    assert np.array_equal(b.x_val.numpy(), arrays["x_test"]) and b.eval_split == "test"
    assert b.num_classes == 10 and b.class_names[3] == "cat"


def test_cifar_45k5k_split_matches_random_split(fake_cifar):
    root, arrays = fake_cifar
    b = build_data("cifar10", {"data_root": str(root), "split": "45k5k"})
    train, valid = torch.utils.data.random_split(range(100), [90, 10], generator=torch.Generator().manual_seed(42))
    assert b.eval_split == "valid" and len(b.y_train) == 90 and len(b.y_val) == 10
    assert np.array_equal(b.y_val.numpy(), arrays["y_train"][list(valid)])
    assert np.array_equal(b.x_train.numpy(), arrays["x_train"][list(train)])


@pytest.mark.parametrize("norm,mean,std", [("half", 0.5, 0.5), ("cifar", 0.4914, 0.2470), ("none", 0.0, 1.0),
                                           ("imagenet", 0.485, 0.229)])
def test_cifar_normalisation_on_device(fake_cifar_root, norm, mean, std):
    b = build_data("cifar10", {"data_root": str(fake_cifar_root), "normalization": norm, "train_subset": 4})
    x = b.prepare(b.x_train)
    assert x.dtype == torch.float32 and len(b.y_train) == 4
    assert torch.allclose(x[:, 0], (b.x_train[:, 0].float() / 255 - mean) / std, atol=1e-6)
    # A float batch is taken as [0, 1] pixels: same result as the uint8 path.
    assert torch.allclose(b.prepare(b.x_train.float() / 255), x, atol=1e-6)


def test_cifar_resize_on_device(fake_cifar_root):
    b = build_data("cifar10", {"data_root": str(fake_cifar_root), "resize": 48, "eval_subset": 2})
    assert b.prepare(b.x_val).shape == (2, 3, 48, 48)


def test_cifar_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_data("cifar10", {"data_root": str(tmp_path)})
    assert str(tmp_path) in str(err.value) and "download=true" in str(err.value)
    with pytest.raises(ConfigError, match="cifar-10-batches-py"):
        Cifar10Config(data_root=str(tmp_path)).preflight()


def test_cifar_corrupt_file_is_a_config_error(fake_cifar_root, tmp_path):
    shutil.copytree(fake_cifar_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])  # truncated
    with pytest.raises(ConfigError, match="corrupt"):
        build_data("cifar10", {"data_root": str(tmp_path)})


def test_cifar_disk_cache_reused_after_process_cache_cleared(fake_cifar_root):
    first = build_data("cifar10", {"data_root": str(fake_cifar_root)})
    image_cache.clear_memory_cache()
    assert list((fake_cifar_root / "uint8_cache").glob("cifar10-train-*-x.npy"))
    again = build_data("cifar10", {"data_root": str(fake_cifar_root)})
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_val, again.y_val)


@pytest.mark.parametrize("bad", [{"normalization": "mnist"}, {"split": "50k"}, {"train_subset": 0}])
def test_cifar_bad_keys_name_the_value(bad):
    with pytest.raises(ConfigError, match=str(next(iter(bad.values())))):
        Cifar10Config.from_config(bad)


def test_mnist_loads_idx_files(fake_mnist):
    root, arrays = fake_mnist
    b = build_data("mnist", {"data_root": str(root)})
    assert b.x_train.shape == (60, 1, 28, 28) and b.x_val.shape == (30, 1, 28, 28) and b.eval_split == "test"
    assert np.array_equal(b.x_train[:, 0].numpy(), arrays["x_train"])
    assert np.array_equal(b.y_val.numpy(), arrays["y_test"])
    x = b.prepare(b.x_train[:3])
    assert torch.allclose(x, (b.x_train[:3].float() / 255 - 0.1307) / 0.3081, atol=1e-6)
    half = build_data("mnist", {"data_root": str(root), "normalization": "half"})
    assert torch.allclose(half.prepare(half.x_train[:3]), b.x_train[:3].float() / 255 * 2 - 1, atol=1e-6)


def test_mnist_missing_and_corrupt(fake_mnist_root, tmp_path):
    with pytest.raises(ConfigError, match="MNIST not found") as err:
        MnistConfig(data_root=str(tmp_path)).preflight()
    assert "download=true" in str(err.value)
    shutil.copytree(fake_mnist_root / "MNIST", tmp_path / "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x07\x03garbage")
    with pytest.raises(ConfigError, match="corrupt"):
        build_data("mnist", {"data_root": str(tmp_path)})


def test_localization_follows_spec():
    b = build_data("localization", {"n_samples": 20})
    assert b.x_train.shape == (20, 1, 64, 64) and b.task == "regression" and b.num_classes == 0
    assert b.x_train.min() >= 0 and b.x_train.max() <= 1 and b.eval_split == "probe"
    rng = np.random.RandomState(42)
    x, y = rng.randint(0, 48), rng.randint(0, 48)
    assert torch.allclose(b.y_train[0], torch.tensor([(x + 8) / 64, (y + 8) / 64, 0.25, 0.25]))
    ring = b.x_train[0, 0, y:y + 16, x:x + 16]
    assert abs(ring[0].mean() - 1.0) < 0.05 and abs(ring[3:13, 3:13].mean() - 0.4) < 0.02
    assert torch.equal(generate(20, 42)[0], b.x_train)  # same seed, same images
    assert b.x_val.shape == (4, 1, 64, 64) and torch.equal(b.x_val, b.meta["probes"])
    assert torch.equal(b.meta["probes_shifted"][:, :, 16:, 16:], b.meta["probes"][:, :, :48, :48])


class _OracleDetector(torch.nn.Module):
    """Returns the box of the bright pixels: the true visible extent of the object."""

    def forward(self, x):
        boxes = []
        for img in x[:, 0]:
            rows, cols = (img > 0.9).nonzero(as_tuple=True)
            y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            boxes.append(torch.stack([(x0 + x1) / 128, (y0 + y1) / 128, (x1 - x0) / 64, (y1 - y0) / 64]).float())
        return torch.stack(boxes)


def test_iou_faithful_clamp_vs_corrected_ground_truth():
    assert box_iou([0.5, 0.5, 0.25, 0.25], [0.5, 0.5, 0.25, 0.25]) == pytest.approx(1.0)
    assert box_iou([0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]) == 0.0
    assert box_iou([0.5, 0.5, 0.25, 0.25], [0.5 + 0.125, 0.5, 0.25, 0.25]) == pytest.approx(1 / 3)
    fn = EVALUATORS["iou_probes"]
    faithful = fn(_OracleDetector(), build_data("localization", {"n_samples": 1}), {}, "cpu")
    corrected = fn(_OracleDetector(), build_data("localization", {"n_samples": 1, "probe_ground_truth": "corrected"}),
                   {}, "cpu")
    assert faithful.metrics["iou_original"] == pytest.approx(1.0)
    assert corrected.metrics["iou_shifted"] == pytest.approx(1.0)
    # (36,8) and (8,36) move to 52 px, cropped to 12, but the faithful box is clamped to 48.
    rows = json.loads(faithful.artifacts["iou_probes.json"])["probes"]
    shifted = {tuple(r["position"]): r["iou"] for r in rows if r["kind"] == "shifted"}
    assert shifted[(8, 8)] == pytest.approx(1.0) and shifted[(30, 30)] == pytest.approx(1.0)
    assert shifted[(36, 8)] < 0.9 and shifted[(8, 36)] < 0.9
    assert set(shifted) == set(PROBE_POSITIONS)


def test_translate_moves_content_and_fills_zero():
    x = torch.arange(16.0).view(1, 1, 4, 4) + 1
    right = translate(x, 1, 0)
    assert torch.equal(right[..., :, 1:], x[..., :, :3]) and torch.all(right[..., :, 0] == 0)
    down = translate(x, 0, 2)
    assert torch.equal(down[..., 2:, :], x[..., :2, :]) and torch.all(down[..., :2, :] == 0)
    assert torch.equal(translate(x, 0, 0), x) and torch.all(translate(x, 5, 0) == 0)


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_shift_robustness_histories_and_probe_table(dataset, fake_cifar_root, fake_mnist_root):
    root = fake_cifar_root if dataset == "cifar10" else fake_mnist_root
    b = build_data(dataset, {"data_root": str(root), "normalization": "half"})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
    out = EVALUATORS["shift_robustness"](model, b, {"shift_max": 4, "shift_step": 2}, "cpu")
    assert [s for s, _ in out.histories["shift_acc"]] == [0, 2, 4]
    with torch.no_grad():
        logits = model(b.prepare(b.x_val))
    assert out.histories["shift_acc"][0][1] == pytest.approx((logits.argmax(1) == b.y_val).float().mean().item())
    true_prob = logits.softmax(1).gather(1, b.y_val[:, None]).mean().item()
    assert out.histories["shift_confidence"][0][1] == pytest.approx(true_prob, rel=1e-5)
    assert out.histories["shift_cosine"][0][1] == pytest.approx(1.0)
    assert all(c < 1.0 for _, c in out.histories["shift_cosine"][1:])
    table = json.loads(out.artifacts["shift_probes.json"])
    if dataset == "cifar10":
        assert [c["index"] for c in table["candidates"]] == [3, 13, 23, 33]  # the test cats, in order
        assert len(table["candidates"][0]["shifts"]) == 8
    else:
        assert [c["index"] for c in table["candidates"]] == [0]
        assert [(r["dx"], r["dy"]) for r in table["candidates"][0]["shifts"]] == [(0, 0), (5, 0)]
    assert table["chosen_index"] in [c["index"] for c in table["candidates"]]


def test_shift_robustness_refuses_non_image_data():
    b = build_data("localization", {"n_samples": 2})
    with pytest.raises(ConfigError, match="shift_robustness"):
        EVALUATORS["shift_robustness"](torch.nn.Identity(), b, {}, "cpu")
    with pytest.raises(ConfigError, match="shift_direction"):
        from trainables.evaluators.shift import ShiftConfig
        ShiftConfig(shift_direction="up")


def test_shift_keys_are_trial_config_keys():
    from trainables.spec import resolve_config
    base = {"pairing": "lab_cnn/cifar10", "evaluators": ("shift_robustness",)}
    assert resolve_config({**base, "shift_max": 4, "shift_step": 2}).config["shift_max"] == 4
    with pytest.raises(ConfigError, match="shift_step"):
        resolve_config({**base, "shift_step": 0})
