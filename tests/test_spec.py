"""The trial spec and strict keys: every key set is used, every logged param was applied."""
from __future__ import annotations

import sys

import pytest

from cluster.cli import main
from cluster.planning.plan import make_plan, to_tune_space
from search_spaces import get_experiment
from search_spaces.experiment import Experiment
from core.errors import ConfigError
from trainables.spec import TrialSpec, resolve_config

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"


def _no_ray_no_mlflow(tmp_path):
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("argv, key, accepting", [
    (["edge-deeper", "--smoke", "--seeds", "1", "--set", "init=edge_detector"], "'init'",
     ["simple_cnn/edges", "simple_cnn_avgpool/edges"]),
    (["cifar10-mlp-vs-cnn", "--smoke", "--seeds", "1", "--set", "kernel_size=5"], "'kernel_size'",
     ["simple_cnn/edges", "deeper_cnn/edges", "wider_cnn/edges"]),
])
def test_repro_commands_exit_2_naming_key_and_accepting_pairings(argv, key, accepting, tmp_path, capsys):
    """The issue's two commands: a key the sweep's pairings ignore stops before Ray and MLflow."""
    code = main(["run", *argv, "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--storage-path", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert key in err and "pairings that accept it" in err and all(p in err for p in accepting)
    _no_ray_no_mlflow(tmp_path)


def test_resolve_refuses_a_key_its_pairing_ignores():
    with pytest.raises(ConfigError, match="'kernel_size' is not used by pairing lab_cnn/cifar10") as info:
        resolve_config({"pairing": "lab_cnn/cifar10", "kernel_size": 5})
    assert "simple_cnn/edges" in str(info.value)
    with pytest.raises(ConfigError, match="'init' is not used by pairing deeper_cnn/edges"):
        resolve_config({"pairing": "deeper_cnn/edges", "init": "edge_detector"})


def test_a_key_without_effect_is_refused_saying_what_it_needs():
    with pytest.raises(ConfigError, match="momentum needs optimizer='sgd'"):
        resolve_config({"pairing": "lab_cnn/cifar10", "momentum": 0.5})
    with pytest.raises(ConfigError, match="none_kernel needs init='edge_detector'"):
        resolve_config({"pairing": CNN, "none_kernel": "zeros"})
    with pytest.raises(ConfigError, match="momentum"):
        make_plan(get_experiment("cifar10-mlp-vs-cnn"), sets={"momentum": 0.5})


def test_spec_is_typed_and_frozen_with_model_keys_from_the_constructor():
    spec = resolve_config({"pairing": "three_layer_cnn/edges", "kernel_size": 5, "num_filter": 4})
    assert isinstance(spec, TrialSpec)
    # ThreeLayerCNN names them filter_size/num_filters; the class maps the framework's keys.
    assert spec.model_kwargs["filter_size"] == 5 and spec.model_kwargs["num_filters"] == 4
    assert spec.model_kwargs["input_dim"] == (1, 28, 28) and spec.input_shape == (1, 28, 28)
    assert "hidden_dim" not in spec.model_kwargs  # accepted by the constructor, but without effect
    with pytest.raises(Exception):
        spec.train = None
    mlp = resolve_config({"pairing": MLP, "model_seed": 3, "spatial_resolution": 20})
    assert mlp.model_kwargs["seed"] == 3 and mlp.model_kwargs["input_dim"] == (1, 20, 20)


def test_shape_rules_live_with_the_model():
    with pytest.raises(ConfigError, match=r"kernel_size must be an integer in \[1, 20\], got 21"):
        resolve_config({"pairing": CNN, "kernel_size": 21, "spatial_resolution": 20})
    assert resolve_config({"pairing": CNN, "kernel_size": 21}).model_kwargs["kernel_size"] == 21


def test_a_key_one_pairing_ignores_goes_only_to_the_other():
    plan = make_plan(get_experiment("edge-data-per-class"), seeds=1)
    cells = plan.cells()
    assert plan.n_trials() == len(cells) == 2 * 4 and not plan.explicit
    assert all(("kernel_size" in c) == (c["pairing"] == CNN) for c in cells)
    assert all(("hidden_dims" in c) == (c["pairing"] == MLP) for c in cells)
    assert [resolve_config(c).applied_params() for c in cells] == [s.applied_params() for s in plan.specs]


def _tune_cells(plan) -> list[dict]:
    """The trial configs Tune generates from the plan's param space (no Ray needed)."""
    from ray.tune.search.variant_generator import generate_variants

    out = []
    for _ in range(plan.num_samples):
        for _, cfg in generate_variants(to_tune_space(plan)):
            out.append({k: v for k, v in cfg.items() if v is not None and k != "_cell"})
    return out


def _key(cfg: dict) -> str:
    return repr(sorted(cfg.items()))


def test_a_grid_axis_one_pairing_ignores_does_not_multiply_its_cells():
    plan = make_plan(get_experiment("edge-data-per-class"), grids={"kernel_size": [3, 5, 7]}, seeds=1)
    cells = plan.cells()
    assert plan.explicit and plan.n_trials() == 4 * 3 + 4
    assert len({_key(c) for c in cells}) == len(cells)
    assert sum(c["pairing"] == MLP for c in cells) == 4 and all("kernel_size" not in c for c in cells
                                                                if c["pairing"] == MLP)
    tune_cells = _tune_cells(plan)
    assert sorted(map(_key, tune_cells)) == sorted(map(_key, cells))
    for cfg in tune_cells:  # each Tune trial resolves strictly, as the trainable does
        resolve_config(cfg)


def test_routed_fixed_keys_reach_tune_per_pairing():
    plan = make_plan(get_experiment("edge-data-per-class"), seeds=2)
    assert sorted(map(_key, _tune_cells(plan))) == sorted(map(_key, plan.cells()))


def test_sampled_key_one_pairing_ignores_is_sampled_for_the_other_only():
    exp = Experiment("s", "d", (CNN, MLP), axes={"kernel_size": __import__("search_spaces").Choice((3, 5))}, seeds=1)
    plan = make_plan(exp, num_samples=2)
    assert "kernel_size" not in plan.axes and "kernel_size" in plan.per_pairing[CNN]
    assert all("kernel_size" not in c for c in _tune_cells(plan) if c["pairing"] == MLP)


@pytest.mark.parametrize("exp, fragment", [
    (Experiment("x", "d", (CNN, MLP), per_pairing={MLP: {"kernel_size": 3}}), "'kernel_size' is not used by pairing"),
    (Experiment("x", "d", (MLP,), fixed={"init": "edge_detector"}), "pairings that accept it: simple_cnn/edges"),
    (Experiment("x", "d", (CNN,), axes={"dropout": [0.1, 0.2]}), "'dropout' is not used by pairing simple_cnn"),
    (Experiment("x", "d", (CNN,), smoke={"hidden_dims": (5, 5)}), "'hidden_dims'"),
    (Experiment("x", "d", (CNN,), plots=("curvs",)), "unknown plot 'curvs'. Did you mean 'curves'"),
])
def test_experiment_declarations_are_strict(exp, fragment):
    with pytest.raises(ConfigError) as info:
        make_plan(exp, smoke=True)
    assert fragment in str(info.value)


def test_sample_flag_is_strict():
    from cluster.flow.options import RunOptions
    from cluster.flow.sweep import build_plan
    from cluster.tuner.search import parse_samples

    with pytest.raises(ConfigError, match="'dropout' is not used by any pairing of edge-hpo"):
        build_plan(RunOptions("edge-hpo", samples=parse_samples(["dropout=uniform(0, 0.5)"])))


def test_path_options_apply_only_where_used():
    """--data-root (extra_fixed) is a location, not a setting: pairings that read no files ignore it."""
    plan = make_plan(get_experiment("edge-data-per-class"), seeds=1, extra_fixed={"data_root": "/tmp/x"})
    assert all("data_root" not in c for c in plan.cells())
    with pytest.raises(ConfigError, match="data_root"):
        make_plan(get_experiment("edge-data-per-class"), seeds=1, sets={"data_root": "/tmp/x"})


def test_driver_checks_reuse_the_plan_specs(monkeypatch):
    """search (max_epochs), preflight and packing read the plan's specs; none resolves a cell again."""
    import cluster.planning.plan
    import trainables.spec
    import trainables.trainable  # noqa: F401  (imported before the patch: it binds resolve_config)
    from cluster.planning import preflight
    from cluster.tuner.packing import make_packs
    from cluster.tuner.search import max_epochs

    plan = make_plan(get_experiment("edge-data-per-class"), smoke=True, seeds=1)

    def refuse(*a, **k):
        raise AssertionError("a cell was resolved again")

    for module in (cluster.planning.plan, trainables.spec):
        monkeypatch.setattr(module, "resolve_config", refuse)
    assert max_epochs(plan) == 3
    preflight.dry_run_plan(plan, local=True)
    packs = make_packs(plan.cells(), 8, specs=plan.specs)
    assert sum(len(p) for p in packs.packs) == len(plan.cells())


def test_every_logged_param_was_applied(tracking_uri):
    """A multi-pairing sweep's MLP trial logs no kernel_size, and each param is an applied setting."""
    from mlflow.tracking import MlflowClient

    from trainables.tracking import TrackingInfo, param_value
    from trainables.trainable import run_trial

    plan = make_plan(get_experiment("edge-data-per-class"), smoke=True, seeds=1,
                     sets={"epochs": 1, "valid_per_class": 3})
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("spec")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s", "spec")
    seen = set()
    for i, (cell, spec) in enumerate(zip(plan.cells(), plan.specs)):
        if cell["pairing"] in seen:
            continue
        seen.add(cell["pairing"])
        out = run_trial({**cell, "log_artifacts": False}, tracking=info, trial_id=f"t{i}")
        params = client.get_run(out["mlflow_run_id"]).data.params
        applied = {k: param_value(v) for k, v in spec.applied_params().items()}
        assert set(params) - {"log_artifacts"} == set(applied) and all(params[k] == applied[k] for k in applied)
        assert ("kernel_size" in params) == (cell["pairing"] == CNN)
        assert ("hidden_dims" in params) == (cell["pairing"] == MLP)
    assert seen == {CNN, MLP}


def test_confirm_drops_settings_an_old_store_logged_but_never_applied():
    """Stores written before strict keys logged kernel_size on the MLP: a confirmation reruns
    only what each pairing uses, so its plan is not refused."""
    from cluster.flow.confirm import confirmation_experiment, pick_best

    trials = [{"run_id": "a", "params": {"pairing": MLP, "kernel_size": 7, "hidden_dims": (50, 10), "lr": 0.1,
                                         "seed": 1}, "metrics": {"val_acc": 0.5}},
              {"run_id": "b", "params": {"pairing": CNN, "kernel_size": 5, "hidden_dims": (50, 10), "lr": 0.1,
                                         "seed": 1}, "metrics": {"val_acc": 0.6}}]
    bests = {b.pairing: b for b in pick_best(trials, "val_acc", "max")}
    assert bests[MLP].config == {"hidden_dims": (50, 10), "lr": 0.1}
    assert bests[CNN].config == {"kernel_size": 5, "lr": 0.1}
    plan = make_plan(confirmation_experiment("edge-hpo", "s", list(bests.values()), seeds=2, seed_start=100))
    assert plan.n_trials() == 4


def test_an_evaluators_settings_are_applied_when_it_runs():
    """A key of an evaluator the trial runs is used (logged, in its config); without the evaluator it
    is an error naming what it needs."""
    spec = resolve_config({"pairing": "simple_cnn/edges", "evaluators": ("shift_robustness",), "shift_max": 4})
    assert spec.config["shift_max"] == 4 and spec.evaluators["shift_robustness"].shift_max == 4
    assert "shift_max" in spec.applied_params()
    with pytest.raises(ConfigError, match="shift_max needs evaluators to include 'shift_robustness'"):
        resolve_config({"pairing": "simple_cnn/edges", "shift_max": 4})


def test_a_dataset_no_pairing_uses_still_names_its_keys(monkeypatch):
    """known_keys covers every registered dataset's config, paired or not (so `sweep list keys` and
    the unknown-key check know a freshly registered dataset's settings)."""
    from dataclasses import dataclass, replace

    from core.config_base import ConfigBase
    from trainables.data import DATASETS
    from trainables.spec import known_keys

    @dataclass(frozen=True)
    class LonelyConfig(ConfigBase):
        lonely_setting_xyz: int = 1

    assert "lonely_setting_xyz" not in known_keys()
    monkeypatch.setitem(DATASETS, "lonely", replace(DATASETS["edges"], config=LonelyConfig))
    assert "lonely_setting_xyz" in known_keys()
