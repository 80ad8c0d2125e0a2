"""Tests parametrized over the registries (as timm does over its model list).

A new pairing, dataset, model or experiment is tested the moment it is registered: every pairing
trains one tiny epoch on its dataset's `tiny` settings, every experiment plans and resolves, and
every key a pairing accepts changes the built model, data or optimiser when changed.
"""
from __future__ import annotations

import hashlib
import inspect

import pytest
import torch

from fakedata import (fake_cifar, fake_cifar_root, fake_data_root, fake_mnist, fake_mnist_root,  # noqa: F401
                      weights_dir, write_fake_cifar10, write_fake_mnist)
from search_spaces import EXPERIMENTS
from search_spaces.experiment import PLOT_NAMES
from trainables.config import TrainConfig
from trainables.data import DATASETS, KINDS, build_data
from trainables.evaluators import EVALUATOR_CONFIGS
from trainables.models import DERIVED_KWARGS, MODELS, build_model, model_config_keys
from trainables.pairings import PAIRINGS
from trainables.spec import pairing_keys, resolve_config

FIVE = ("horizontal", "vertical", "diagonal", "both", "none")


@pytest.fixture(scope="module")
def roots(tmp_path_factory, weights_dir):  # noqa: F811
    """Settings that point each dataset kind at offline stand-ins: two fake data roots (different
    images) and random backbone weights."""
    a, b = tmp_path_factory.mktemp("root_a"), tmp_path_factory.mktemp("root_b")
    for root, seed in ((a, 0), (b, 1)):
        write_fake_cifar10(root, seed=seed)
        write_fake_mnist(root, seed=seed)
    other = b / "resnet18_other.pth"
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in torch.load(
        weights_dir / "resnet18.pth", weights_only=True).items()}, other)
    return {"a": str(a), "b": str(b), "weights": str(weights_dir), "other_weights": str(other)}


def offline(dataset: str, roots: dict) -> dict:
    """Keys a dataset of this kind needs to build offline (by kind, never by dataset name)."""
    keys = DATASETS[dataset].config.keys()
    out = {"data_root": roots["a"]} if "data_root" in keys else {}
    if DATASETS[dataset].kind == "features":
        out["weights"] = roots["weights"]
    return out


def tiny_cell(pairing: str, roots: dict) -> dict:
    dataset = PAIRINGS[pairing].dataset
    return {"pairing": pairing, "epochs": 1, "seed": 10, "log_to_mlflow": False,
            **DATASETS[dataset].tiny, **offline(dataset, roots)}


# ---------------------------------------------------------------- the registries are consistent

def test_registries_name_each_other():
    for name, p in PAIRINGS.items():
        assert p.model in MODELS and p.dataset in DATASETS and name == f"{p.model}/{p.dataset}"
    assert all(spec.kind in KINDS and spec.tiny for spec in DATASETS.values())
    for exp in EXPERIMENTS.values():
        assert set(exp.pairings) <= set(PAIRINGS), exp.name


def test_plot_names_match_the_report():
    """search_spaces may not import analysis; its copy of the plot names must match the report's."""
    from analysis.plots import PLOTS

    assert sorted(PLOT_NAMES) == sorted(PLOTS)
    for exp in EXPERIMENTS.values():
        exp.check_plots()


@pytest.mark.parametrize("pairing", sorted(PAIRINGS))
def test_pairing_defaults_are_all_applied(pairing):
    """A protocol default the pairing does not use would be logged as a param it never applied."""
    spec = resolve_config({"pairing": pairing})
    assert set(PAIRINGS[pairing].defaults) <= set(spec.applied_params())


@pytest.mark.parametrize("model", sorted(MODELS))
def test_model_keys_come_from_the_constructor(model):
    cls = MODELS[model]
    ctor = set(inspect.signature(cls).parameters)
    names = model_config_keys(model)
    assert set(names.values()) <= ctor
    skipped = ctor - set(names.values())
    assert skipped <= set(DERIVED_KWARGS) | set(getattr(cls, "NOT_CONFIG", ()))


def test_a_models_rules_read_the_constructors_defaults(monkeypatch):
    """check_fits and inactive_kwargs get every keyword, defaults filled in from the constructor, so
    a class never writes a default twice (and a changed default cannot leave a rule behind)."""
    from core.errors import ConfigError
    from trainables.models import check_model_fits, inactive_model_keys

    seen = []

    class Wide(torch.nn.Module):
        def __init__(self, kernel_size: int = 9, mode: str = "a", num_classes: int = 3):
            super().__init__()

        @staticmethod
        def check_fits(kwargs, input_shape):
            seen.append(dict(kwargs))
            if kwargs["kernel_size"] > input_shape[-1]:
                raise ConfigError(f"kernel_size={kwargs['kernel_size']} is larger than the image")

        @staticmethod
        def inactive_kwargs(kwargs):
            return {} if kwargs["mode"] == "b" else {"extra": "needs mode='b'"}

    monkeypatch.setitem(MODELS, "wide", Wide)
    with pytest.raises(ConfigError, match="kernel_size=9"):
        check_model_fits("wide", {"num_classes": 3}, (1, 8, 8))
    assert seen == [{"kernel_size": 9, "mode": "a", "num_classes": 3}]
    check_model_fits("wide", {"kernel_size": 3}, (1, 8, 8))  # a given value wins
    assert inactive_model_keys("wide", {}) == {"extra": "needs mode='b'"}
    assert inactive_model_keys("wide", {"mode": "b"}) == {}


# ---------------------------------------------------------------- every pairing trains

@pytest.mark.parametrize("pairing", sorted(PAIRINGS))
def test_every_pairing_trains_one_tiny_epoch(pairing, roots):
    from trainables.trainable import run_trial

    out = run_trial(tiny_cell(pairing, roots))
    assert out["epochs_completed"] == 1 and torch.isfinite(torch.tensor(out["train_loss"]))
    spec = resolve_config(tiny_cell(pairing, roots))
    model = build_model(spec.pairing.model, **spec.model_kwargs)
    assert out["n_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("pairing", sorted(PAIRINGS))
def test_the_spec_holds_what_the_data_decides(pairing, roots):
    """The model is built from the spec alone (trainables.trainable.make_model): the keywords the data
    decides (num_classes, in_features, in_channels, input_dim) are those of the data the trial builds."""
    from trainables.trainable import load_data

    spec = resolve_config(tiny_cell(pairing, roots))
    b = load_data(spec)
    shape = tuple(b.prepare(b.x_train[:1]).shape[1:])
    assert shape == spec.input_shape
    kw = spec.model_kwargs
    assert kw.get("num_classes", b.num_classes) == b.num_classes
    assert kw.get("in_features", shape[0]) == shape[0] and kw.get("in_channels", shape[0]) == shape[0]
    assert tuple(kw.get("input_dim", shape)) == shape


# ---------------------------------------------------------------- every experiment plans

@pytest.mark.parametrize("name", sorted(n for n, e in EXPERIMENTS.items() if not e.analytic))
def test_every_experiment_plans_and_resolves(name, fake_data_root, weights_dir):  # noqa: F811
    from cluster.planning.plan import make_plan

    exp = EXPERIMENTS[name]
    extra = {"data_root": str(fake_data_root), "weights": str(weights_dir)}  # used where a pairing reads them
    for smoke in (False, True):
        plan = make_plan(exp, smoke=smoke, extra_fixed=extra)
        cells = plan.cells()
        assert len(cells) == len(plan.specs) and plan.n_trials() == len(cells) * plan.num_samples
        assert len({repr(sorted(c.items())) for c in cells}) == len(cells), "duplicate cells"
        assert {c["pairing"] for c in cells} == set(exp.pairings)
        for cell, spec in zip(cells, plan.specs):
            # The trial rebuilds the same spec from its cell, and logs only what it applied.
            again = resolve_config(cell)
            assert again.applied_params() == spec.applied_params()
            assert set(cell) <= set(spec.applied_params())


# ---------------------------------------------------------------- every accepted key has an effect

# Settings under which a key has an effect (it is inactive otherwise, and then refused).
ENABLE = {
    "momentum": {"optimizer": "sgd"},
    "t_max": {"scheduler": "cosine"},
    "none_kernel": {"init": "edge_detector", "kernel_size": 7},
    "split_seed": {"split": "45k5k"},
    "augment_seed": {"augment": True},
    "permutation_seed": {"use_permutation": True},
    "notebook_train_sizes": {"data_stream": "notebook"},
    "num_diagonal_edge": {"class_type": FIVE, "max_edge_width": 6},
    "both_independent_locations": {"class_type": FIVE},
    "clip_before_quantise": {"class_type": FIVE},
    "vertical_intensity_fix": {"num_horizontal_edge": 2},
    "num_vertical_edge": {"num_horizontal_edge": 2},
    **{k: {"evaluators": (name,)} for name, cls in EVALUATOR_CONFIGS.items() for k in cls.keys()
       if k not in TrainConfig.keys()},
}
# Keys that are applied but by design change no model, data or optimiser, each with why.
OPERATIONAL = {
    "download": "lets torchvision fetch missing files (network; never in tests)",
    "feature_cache_dir": "where the feature cache is stored",
    "feature_batch_size": "extraction batch size (same features)",
    "feature_device": "where the features are computed",
}
# Values to try for keys whose type alone does not give a valid other value.
CANDIDATES = {
    "class_type": [FIVE, ("horizontal", "none")],
    "hidden_dims": [(20, 10), (64,)],
    "notebook_train_sizes": [(10, 30)],
    "evaluators": [("shift_robustness",), ("iou_probes",), ()],
    "kernel_size": [3, 5],
    "max_edge_width": [6, 3],
    "num_filter": [3, 4],
    "augment": [False],
    "amp": ["bf16"],
}
STRINGS = ["adam", "sgd", "cosine", "none", "mse", "cross_entropy", "train", "heldout", "cpu", "half", "cifar",
           "imagenet", "mnist", "45k5k", "test", "notebook", "framework", "edge_detector", "default", "zeros",
           "random_copy", "corrected", "faithful", "vit_s16", "resnet18", "left", "right", "down", "up", "bf16"]
TRAIN_KEYS = set(TrainConfig.keys())


def _candidates(key: str, value, roots: dict) -> list:
    return [v for v in _typed_candidates(key, value, roots) if v != value or type(v) is not type(value)]


def _typed_candidates(key: str, value, roots: dict) -> list:
    if key in CANDIDATES:
        return [v for v in CANDIDATES[key] if v != value]
    if key == "data_root":
        return [roots["b"]]
    if key == "weights":  # never None: that would fetch the hub's weights
        return [roots["other_weights"]]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, 2 * value, value - 1, 3]
    if isinstance(value, float):
        return [value * 0.5, value + 0.1, 0.3, 0.05]
    if isinstance(value, str):
        return [s for s in STRINGS if s != value]
    if value is None:
        return [4, 40, 0.5, True, "cpu"]
    return []


def _walk_cases():
    for pairing in sorted(PAIRINGS):
        for key in sorted(pairing_keys(pairing) - {"pairing", "fail_at_epoch"}):
            yield pytest.param(pairing, key, id=f"{pairing}-{key}")


def _current(spec, key: str):
    """The value `key` has in this spec (given or default)."""
    if key in spec.config:
        return spec.config[key]
    for part in (spec.train, spec.data, *(c for c in spec.evaluators.values() if c is not None)):
        if key in part.keys():
            return getattr(part, key)
    names = model_config_keys(spec.pairing.model)
    return inspect.signature(MODELS[spec.pairing.model]).parameters[names[key]].default


def _digest(*values) -> str:
    h = hashlib.sha256()
    for v in values:
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().contiguous().numpy()
        h.update(v.tobytes() if hasattr(v, "tobytes") else repr(v).encode())
    return h.hexdigest()


def _model_fingerprint(spec) -> tuple:
    torch.manual_seed(0)
    model = build_model(spec.pairing.model, **spec.model_kwargs)
    return (repr(model), tuple((n, tuple(p.shape), p.requires_grad, float(p.detach().double().sum()))
                               for n, p in model.named_parameters()))


def _data_fingerprint(spec) -> str:
    """Every byte of the built data: inputs as the model sees them, targets, and tensor metadata
    (e.g. the localisation probes)."""
    if DATASETS[spec.pairing.dataset].kind == "features":
        from trainables.data.features import clear_memory_cache

        clear_memory_cache()  # the in-process cache is keyed by the features' identity, not the files read
    b = build_data(spec.pairing.dataset, spec.config)
    prep = b.prepare if b.input_transform is not None else (lambda t: t)
    meta = [v for _, v in sorted(b.meta.items()) if isinstance(v, torch.Tensor) or hasattr(v, "tobytes")]
    return _digest(prep(b.x_train), b.y_train, prep(b.x_val), b.y_val, *meta)


def _optimiser_fingerprint(spec) -> tuple:
    from trainables.loop import make_optimizer, make_scheduler

    opt = make_optimizer(torch.nn.Linear(2, 2), spec.train)
    sched = make_scheduler(opt, spec.train)
    return (type(opt).__name__, repr({k: v for k, v in opt.defaults.items() if k != "fused"}),
            None if sched is None else repr(sched.state_dict()))


@pytest.mark.parametrize("pairing, key", list(_walk_cases()))
def test_every_accepted_key_changes_the_trial(pairing, key, roots):
    """Changing any key a pairing accepts changes its model, its data, its optimiser, the training
    settings the loop reads, or its evaluator's settings; else the key would be logged but ignored."""
    if key in OPERATIONAL:
        assert key in pairing_keys(pairing)
        return
    base = {**tiny_cell(pairing, roots), **ENABLE.get(key, {})}
    spec = resolve_config(base)
    value = _current(spec, key)
    errors = []
    model_keys = model_config_keys(spec.pairing.model)
    for other in _candidates(key, value, roots):
        try:
            changed = resolve_config({**base, key: other})
            if key in model_keys:  # the constructor checks its own values
                _model_fingerprint(changed)
        except Exception as err:  # an invalid value for this pairing: try the next one
            errors.append(f"{other!r}: {err}")
            continue
        break
    else:
        pytest.fail(f"no valid other value for {key} (was {value!r}); add one to CANDIDATES: {errors[:3]}")
    assert key in changed.applied_params()
    if key in model_keys:
        assert _model_fingerprint(changed) != _model_fingerprint(spec), f"{key} changed nothing in the model"
    elif key in spec.data.keys():
        assert _data_fingerprint(changed) != _data_fingerprint(spec), f"{key} changed nothing in the data"
    elif key in TRAIN_KEYS:
        assert changed.train != spec.train
        if key in ("optimizer", "lr", "momentum", "weight_decay", "scheduler", "t_max"):
            assert _optimiser_fingerprint(changed) != _optimiser_fingerprint(spec), f"{key}: same optimiser"
    else:
        assert changed.evaluators != spec.evaluators, f"{key} changed no evaluator setting"


# ---------------------------------------------------------------- the README's worked example

def test_readme_extending_example_works(monkeypatch, tmp_path):
    """The README's new model (class + MODELS line) and new experiment (one value) plan, train and
    are strict, exactly as written there."""
    import re
    import textwrap
    from pathlib import Path

    import search_spaces.edge as edge
    from cluster.planning.plan import make_plan
    from trainables import pairings
    from core.errors import ConfigError
    from trainables.trainable import run_trial

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = re.search(r"^## Extending\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    model_code, experiment_code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(model_code, namespace)  # noqa: S102 - our own README
    monkeypatch.setitem(MODELS, "tiny_cnn", namespace["TinyCNN"])
    for name, pairing in pairings.declared_pairings({"tiny_cnn": namespace["TinyCNN"]}).items():
        monkeypatch.setitem(PAIRINGS, name, pairing)
    exp = eval(textwrap.dedent(experiment_code), vars(edge))[0]  # noqa: S307

    plan = make_plan(exp, smoke=True, seeds=1)
    tiny = [c for c in plan.cells() if c["pairing"] == "tiny_cnn/edges"]
    assert len(tiny) == 2 * 2 and all(c["num_filter"] in (2, 4) for c in tiny)
    spec = resolve_config(tiny[0])
    assert spec.model_kwargs == {"num_filter": tiny[0]["num_filter"], "kernel_size": 5, "num_classes": 3}
    out = run_trial({**tiny[0], "epochs": 1, "log_to_mlflow": False})
    assert out["epochs_completed"] == 1
    assert make_plan(exp, smoke=True, seeds=1, grids={"kernel_size": [3, 5]}).n_trials() == 2 * plan.n_trials()
    with pytest.raises(ConfigError, match="'hidden_dims' is not used by any pairing of edge-tiny-cnn"):
        make_plan(exp, smoke=True, sets={"hidden_dims": (5, 5)})
    with pytest.raises(ConfigError, match="kernel_size must be in"):
        make_plan(exp, smoke=True, sets={"kernel_size": 29})
