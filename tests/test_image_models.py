"""CIFAR-10, MNIST, localisation and probe models (SPEC 2.2-2.5), and the image experiments' smoke runs."""
from __future__ import annotations

import math

import pytest
import torch
from fakedata import fake_cifar, fake_cifar_root, fake_mnist, fake_mnist_root, weights_dir  # noqa: F401

from analysis.param_explosion import explosion_table, mlp_param_count
from search_spaces.images import IMAGE_EXPERIMENTS
from core.errors import ConfigError
from trainables.models import MODELS, build_model, count_params
from trainables.pairings import PAIRINGS
from trainables.spec import resolve_config

# SPEC 2.2-2.5 parameter counts (stated or computed there).
EXPECTED_PARAMS = {
    "lab_mlp": 820_874, "lab_cnn": 268_650, "mlp_baseline": 1_578_506, "base_cnn": 60_362,
    "simple_mlp": 308_310, "convnet": 42_362, "convnet_small": 5_538, "convnet_tiny": 4_146,
    "mnist_mlp": 535_818, "lenet5": 61_706, "modified_resnet18": 11_175_370,
    "mlp_detector": 2_230_020, "cnn_detector": 1_073_156, "linear_probe": 5_130,
}
IMAGE_PAIRINGS = sorted(p for p, v in PAIRINGS.items() if v.dataset != "edges")
# Each image model's input shape as its pairing's dataset makes it (the registries hold it).
INPUTS = {PAIRINGS[p].model: resolve_config({"pairing": p}).input_shape for p in IMAGE_PAIRINGS}


def test_every_image_model_has_a_spec_count_and_an_input():
    image_models = {n for n, cls in MODELS.items() if getattr(cls, "__module__", "").split(".")[-1] != "edge"}
    assert set(EXPECTED_PARAMS) == set(INPUTS) == image_models


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts_match_spec(name):
    total, trainable = count_params(build_model(name))
    assert total == trainable == EXPECTED_PARAMS[name]


def test_probe_heads_and_vit_total():
    from trainables.models.probes import BACKBONES
    assert count_params(build_model("linear_probe", backbone="resnet18"))[0] == 5_130
    head = build_model("linear_probe", backbone="vit_s16")
    assert count_params(head)[0] == 3_850
    vit = BACKBONES["vit_s16"].make()
    assert count_params(vit)[0] + count_params(head)[0] == 21_669_514


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_forward_shapes_batch_two_train_and_one_eval(name):
    torch.manual_seed(0)
    model = build_model(name)
    out_dim = 4 if "detector" in name else 10
    assert model(torch.rand(2, *INPUTS[name])).shape == (2, out_dim)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, *INPUTS[name]))
    assert out.shape == (1, out_dim)
    if "detector" in name:
        assert ((out >= 0) & (out <= 1)).all()  # sigmoid boxes


@pytest.mark.parametrize("name", ["lab_mlp", "lab_cnn", "convnet_tiny", "lenet5", "modified_resnet18"])
def test_num_classes_is_configurable(name):
    model = build_model(name, num_classes=3)
    assert model(torch.rand(2, *INPUTS[name])).shape == (2, 3)


def test_lab_mlp_kaiming_uniform_and_zero_bias():
    torch.manual_seed(0)
    model = build_model("lab_mlp")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in linears] == [3072, 256, 128]
    for m in linears:
        bound = math.sqrt(6.0 / m.in_features)  # kaiming_uniform_, relu gain sqrt(2)
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.95 * bound
        assert torch.all(m.bias == 0)
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in model.modules()) == 2


def test_lab_mlp_configurable_and_validated():
    assert count_params(build_model("lab_mlp", hidden_dims=(64,), dropout=0.0))[0] == 3072 * 64 + 64 + 650
    with pytest.raises(ConfigError, match="dropout"):
        build_model("lab_mlp", dropout=1.5)
    with pytest.raises(ConfigError, match="hidden_dims"):
        build_model("lab_mlp", hidden_dims=())
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("lenet5", num_classes=0)


def test_modified_resnet18_is_one_channel_without_pretrained_weights():
    net = build_model("modified_resnet18").net
    assert net.conv1.in_channels == 1 and net.conv1.bias is None and net.conv1.stride == (2, 2)
    assert net.fc.in_features == 512 and net.fc.out_features == 10


def test_linear_probe_rejects_contradicting_width():
    with pytest.raises(ConfigError, match="contradicts"):
        build_model("linear_probe", in_features=512, backbone="vit_s16")


def test_every_image_model_is_registered_and_paired():
    assert set(EXPECTED_PARAMS) <= set(MODELS)
    assert {PAIRINGS[p].model for p in IMAGE_PAIRINGS} == set(EXPECTED_PARAMS)


def test_param_explosion_counts():
    assert [params for _, _, params in explosion_table()] == [820_874, 50_366_090, 707_823_242, 6_370_133_642]
    assert mlp_param_count(3072) == count_params(build_model("lab_mlp"))[0]


def test_image_experiments_names_and_pairings():
    names = {e.name for e in IMAGE_EXPERIMENTS}
    assert names == {"cifar10-mlp-vs-cnn", "cifar10-param-efficiency", "mnist-mlp-lenet-resnet", "shift-robustness",
                     "object-localization", "pretrained-linear-probe", "mlp-param-explosion"}
    allowed_plots = {"curves", "confusion", "params_vs_accuracy", "accuracy_vs_shift", "leaderboard",
                     "iou_table", "param_explosion", "samples"}
    for e in IMAGE_EXPERIMENTS:
        assert set(e.pairings) <= set(PAIRINGS) and set(e.plots) <= allowed_plots
        for h in e.hypotheses:
            assert h.better in PAIRINGS and (h.worse in PAIRINGS or h.kind in ("threshold", "chance"))


def _smoke_cells(exp, paths):
    from cluster.planning.plan import make_plan
    # Paths as `--data-root` passes them: used where a pairing reads files, no error elsewhere.
    plan = make_plan(exp, sets={"log_to_mlflow": False}, smoke=True, seeds=1, extra_fixed=paths)
    return plan.cells()


@pytest.mark.parametrize("exp", [e for e in IMAGE_EXPERIMENTS if not e.analytic and "probe" not in e.name],
                         ids=lambda e: e.name)
def test_smoke_variant_runs_every_trial_on_fake_data(exp, fake_cifar_root, fake_mnist_root, tmp_path):
    from trainables.trainable import run_trial
    # One data_root for both datasets: the CIFAR and MNIST folders sit side by side.
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-batches-py").symlink_to(fake_cifar_root / "cifar-10-batches-py")
    (root / "MNIST").symlink_to(fake_mnist_root / "MNIST")
    cells = _smoke_cells(exp, {"data_root": str(root)})
    assert {c["pairing"] for c in cells} == set(exp.pairings)
    for cfg in cells:
        out = run_trial(cfg)
        assert out["epoch"] == out["epochs_completed"] >= 1
        assert out["n_params"] == EXPECTED_PARAMS[PAIRINGS[cfg["pairing"]].model]
        if "shift_robustness" in cfg.get("evaluators", ()):
            assert 0.0 <= out["shift_acc_at_max"] <= 1.0 and "shift_acc_drop" in out
        if PAIRINGS[cfg["pairing"]].dataset == "localization":
            assert 0.0 <= out["iou_original"] <= 1.0 and 0.0 <= out["iou_shifted"] <= 1.0
        else:
            assert 0.0 <= out["val_acc"] <= 1.0
