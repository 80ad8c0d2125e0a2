"""Frozen backbones from local weight files, the feature cache, and probe trials (SPEC 2.5)."""
from __future__ import annotations

import dataclasses
import datetime
import threading
import urllib.error

import pytest
import torch
from fakedata import fake_cifar, fake_cifar_root, full_backbone_state, weights_dir  # noqa: F401

from trainables.data import build_data, features
from core.errors import ConfigError
from trainables.models.probes import BACKBONES, build_backbone

# Small extraction so ResNet-18 runs in about a second on one CPU thread.
SMALL = {"train_subset": 12, "eval_subset": 6, "feature_batch_size": 4, "resize": 64, "feature_device": "cpu"}


@pytest.fixture
def feature_cfg(fake_cifar_root, weights_dir, tmp_path):
    features.clear_memory_cache()
    return {"data_root": str(fake_cifar_root), "weights": str(weights_dir / "resnet18.pth"),
            "feature_cache_dir": str(tmp_path / "fcache"), **SMALL}


def test_resnet_backbone_loads_local_weights_frozen(weights_dir):
    from torchvision.models import resnet18
    net = build_backbone("resnet18", str(weights_dir / "resnet18.pth"))
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    ref = resnet18(weights=None)
    ref.load_state_dict(torch.load(weights_dir / "resnet18.pth", weights_only=True))
    ref.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), ref.eval()(x), atol=1e-6)
    assert net(x).shape == (2, 512)


def test_vit_backbone_loads_local_weights(weights_dir):
    net = build_backbone("vit_s16", str(weights_dir / "vit_s16.pth"))
    with torch.no_grad():
        assert net(torch.rand(1, 3, 224, 224)).shape == (1, 384)
    assert not any(p.requires_grad for p in net.parameters())


def test_wrong_architecture_weights_are_refused(weights_dir, tmp_path):
    with pytest.raises(ConfigError, match="not a checkpoint for backbone 'vit_s16'"):
        build_backbone("vit_s16", str(weights_dir / "resnet18.pth"))
    with pytest.raises(ConfigError, match="not a checkpoint for backbone 'resnet18'"):
        build_backbone("resnet18", str(weights_dir / "vit_s16.pth"))
    state = full_backbone_state("resnet18")
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)  # right keys, wrong shape
    torch.save(state, tmp_path / "bad_shape.pth")
    with pytest.raises(ConfigError, match="shape mismatches"):
        build_backbone("resnet18", str(tmp_path / "bad_shape.pth"))


def test_non_checkpoint_files_are_refused(tmp_path):
    (tmp_path / "notes.pth").write_text("not a checkpoint at all")
    with pytest.raises(ConfigError, match="not a readable PyTorch checkpoint"):
        build_backbone("resnet18", str(tmp_path / "notes.pth"))
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(ConfigError, match="not a state_dict"):
        build_backbone("resnet18", str(tmp_path / "meta.pth"))
    # weights_only=True must refuse pickled objects other than tensors and containers.
    torch.save({"w": datetime.date(2020, 1, 1)}, tmp_path / "evil.pth")
    with pytest.raises(ConfigError, match="not a readable"):
        build_backbone("resnet18", str(tmp_path / "evil.pth"))
    with pytest.raises(ConfigError, match="no such file"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))


def test_offline_hub_gives_a_clear_message(monkeypatch):
    def offline():
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setitem(BACKBONES, "resnet18", dataclasses.replace(BACKBONES["resnet18"], make_pretrained=offline))
    with pytest.raises(ConfigError, match="--set weights=PATH"):
        build_backbone("resnet18", None)


def test_feature_cache_computes_once(feature_cfg):
    start = features.backbone_forward_passes
    first = build_data("cifar10_features", feature_cfg)
    batches = -(-12 // 4) + -(-6 // 4)
    assert features.backbone_forward_passes - start == batches
    assert first.meta["feature_cache_hit"] is False and first.x_train.shape == (12, 512)
    assert first.x_val.shape == (6, 512) and first.x_train.dtype == torch.float32
    second = build_data("cifar10_features", feature_cfg)  # same process: memory
    features.clear_memory_cache()
    third = build_data("cifar10_features", feature_cfg)  # fresh process view: the disk file
    assert features.backbone_forward_passes - start == batches
    assert second.meta["feature_cache_hit"] and third.meta["feature_cache_hit"]
    assert first.meta["feature_cache_key"] == third.meta["feature_cache_key"]
    assert torch.equal(first.x_train, third.x_train) and torch.equal(first.y_val, third.y_val)


def test_concurrent_builds_compute_once(feature_cfg):
    start = features.backbone_forward_passes
    results, errors = [], []

    def build():
        try:
            results.append(features.load_or_compute(features.FeatureConfig.from_config(feature_cfg)))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert features.backbone_forward_passes - start == -(-12 // 4) + -(-6 // 4)
    assert sorted(hit for _, _, hit in results) == [False, True, True]


def test_cache_key_tracks_weights_transform_and_subset(feature_cfg, weights_dir, tmp_path):
    key = lambda **kw: features.cache_key(features.FeatureConfig.from_config({**feature_cfg, **kw}))  # noqa: E731
    base = key()
    assert key(augment=False) != base and key(resize=96) != base and key(train_subset=8) != base
    assert key(normalization="half") != base
    assert key(weights=str(weights_dir)) == base  # a folder resolves to <dir>/resnet18.pth
    state = full_backbone_state("resnet18")
    state["fc.bias"] += 1.0
    torch.save(state, tmp_path / "other.pth")
    assert key(weights=str(tmp_path / "other.pth")) != base  # content, not the name, is hashed


def test_resnet_augmentation_is_seeded(feature_cfg):
    a = features.load_or_compute(features.FeatureConfig.from_config(feature_cfg))[0]["x_train"]
    features.clear_memory_cache()
    plain = features.load_or_compute(features.FeatureConfig.from_config({**feature_cfg, "augment": False}))[0]
    assert not torch.allclose(a, plain["x_train"])  # one frozen random flip/crop per training image
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    one = features._flip_crop(x, torch.Generator().manual_seed(1))
    assert torch.equal(one, features._flip_crop(x, torch.Generator().manual_seed(1))) and one.shape == x.shape


def test_preflight_and_bad_keys(feature_cfg, tmp_path):
    with pytest.raises(ConfigError, match="backbone"):
        features.FeatureConfig.from_config({**feature_cfg, "backbone": "resnet50"})
    with pytest.raises(ConfigError, match="no such file"):
        features.FeatureConfig.from_config({**feature_cfg, "weights": str(tmp_path / "nope.pth")}).preflight()
    with pytest.raises(ConfigError, match="CIFAR-10 not found"):
        features.FeatureConfig.from_config({**feature_cfg, "data_root": str(tmp_path)}).preflight()


@pytest.mark.parametrize("backbone,dim", [("resnet18", 512), ("vit_s16", 384)])
def test_probe_trial_trains_head_on_cached_features(backbone, dim, fake_cifar_root, weights_dir, tmp_path):
    from trainables.trainable import run_trial
    features.clear_memory_cache()
    cfg = {"pairing": "linear_probe/cifar10_features", "backbone": backbone, "weights": str(weights_dir),
           "data_root": str(fake_cifar_root), "feature_cache_dir": str(tmp_path), "train_subset": 8,
           "eval_subset": 4, "feature_batch_size": 4, "epochs": 2, "log_to_mlflow": False}
    if backbone == "resnet18":
        cfg["resize"] = 64
    out = run_trial(cfg)
    assert out["n_params"] == out["n_trainable_params"] == dim * 10 + 10
    assert 0.0 <= out["val_acc"] <= 1.0


def test_probe_sweep_smoke_extracts_once_per_backbone(fake_cifar_root, weights_dir, tmp_path):
    """The smoke sweep (2 backbones x 2 seeds): every trial after a backbone's first reuses its features."""
    from cluster.planning.plan import make_plan
    from search_spaces.images import IMAGE_EXPERIMENTS, PROBE_SMOKE
    from trainables.trainable import run_trial
    features.clear_memory_cache()
    exp = next(e for e in IMAGE_EXPERIMENTS if e.name == "pretrained-linear-probe")
    plan = make_plan(exp, sets={"data_root": str(fake_cifar_root), "weights": str(weights_dir),
                                "feature_cache_dir": str(tmp_path), "log_to_mlflow": False}, smoke=True, seeds=2)
    cells = plan.cells()
    assert sorted((c["backbone"], c["seed"]) for c in cells) == [("resnet18", 42), ("resnet18", 43),
                                                                 ("vit_s16", 42), ("vit_s16", 43)]
    start = features.backbone_forward_passes
    for cfg in cells:
        assert 0.0 <= run_trial(cfg)["val_acc"] <= 1.0
    bs = PROBE_SMOKE["feature_batch_size"]
    per_backbone = -(-PROBE_SMOKE["train_subset"] // bs) + -(-PROBE_SMOKE["eval_subset"] // bs)
    assert features.backbone_forward_passes - start == 2 * per_backbone
    assert len(list(tmp_path.glob("*.pt"))) == 2  # one cache file per backbone
