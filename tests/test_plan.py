"""Experiments -> plans -> Tune param spaces; every cell validated before anything runs."""
from __future__ import annotations

import pytest

from cluster.planning.plan import make_plan, to_tune_space
from fakedata import fake_data_root, weights_dir  # noqa: F401
from cluster.planning.values import parse_grids, parse_sets, parse_value
from search_spaces import EXPERIMENTS, get_experiment
from search_spaces.domains import Choice, LogUniform, RandInt
from search_spaces.experiment import Experiment
from core.errors import ConfigError, UnknownName


@pytest.mark.parametrize("name", sorted(n for n, e in EXPERIMENTS.items() if not e.analytic))
def test_every_experiment_plans_and_validates(name, fake_data_root, weights_dir):
    exp = EXPERIMENTS[name]
    # Locations, as --data-root passes them: applied where a pairing's dataset reads them.
    extra = {"data_root": str(fake_data_root), "weights": str(weights_dir)}
    plan = make_plan(exp, extra_fixed=extra)
    assert plan.seeds == exp.seed_values()
    assert len(plan.cells()) * plan.num_samples == plan.n_trials()
    smoke = make_plan(exp, smoke=True, extra_fixed=extra)
    assert smoke.n_trials() <= plan.n_trials()


def test_edge_data_per_class_grid():
    plan = make_plan(get_experiment("edge-data-per-class"))
    assert plan.n_trials() == 2 * 4 * 3
    assert plan.swept_keys == ["pairing", "data_per_class"]
    space = to_tune_space(plan)
    assert space["epochs"] == 500 and space["lr"] == 1e-2
    assert space["seed"] == {"grid_search": [10, 11, 12]}
    assert space["data_per_class"] == {"grid_search": [10, 30, 50, 100]}


def test_smoke_shrinks_epochs_and_data():
    plan = make_plan(get_experiment("edge-data-per-class"), smoke=True)
    assert plan.fixed["epochs"] == 3 and plan.axes["data_per_class"] == [10, 30] and plan.seeds == [10, 11]


def test_set_and_grid_overrides():
    exp = get_experiment("edge-tuned-kernel")
    plan = make_plan(exp, sets={"epochs": 7}, grids={"kernel_size": [3, 5], "lr": [0.01, 0.05]}, seeds=1)
    assert plan.fixed["epochs"] == 7 and plan.n_trials() == 4 * 2 * 2
    assert set(plan.swept_keys) >= {"kernel_size", "lr", "data_per_class"}


@pytest.mark.parametrize("sets, fragment", [
    ({"lr": 0}, "lr must be > 0"),
    ({"lr": -1.0}, "lr must be > 0"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": 29}, "kernel_size"),
    ({"data_per_class": 0}, "data_per_class"),
    ({"class_type": ["horizontal", "zigzag", "none"]}, "zigzag"),
    ({"lr": "fast"}, "lr='fast'"),
    ({"epochs": 2.5}, "epochs"),
    ({"optimizer": "rmsprop"}, "rmsprop"),
    ({"learning_rate": 0.1}, "unknown config key 'learning_rate'"),
    ({"fail_at_epoch": 1}, "fault-injection"),
])
def test_bad_values_refused_with_named_value(sets, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        make_plan(get_experiment("edge-data-per-class"), sets=sets)
    assert fragment in str(info.value)


def test_unknown_experiment_suggests_close_name():
    with pytest.raises(UnknownName) as info:
        get_experiment("edge-data-per-clas")
    assert "edge-data-per-class" in str(info.value)


def test_impossible_search_spaces_refused():
    with pytest.raises(ConfigError, match="lower bound"):
        LogUniform(1e-1, 1e-3)
    with pytest.raises(ConfigError, match="empty"):
        Choice(())
    with pytest.raises(ConfigError, match="lower bound"):
        RandInt(5, 1)
    with pytest.raises(ConfigError, match="non-empty"):
        Experiment("x", "d", ("simple_cnn/edges",), axes={"lr": []})


def test_sampled_domains_become_tune_domains():
    exp = Experiment("s", "d", ("simple_cnn/edges", "three_layer_mlp/edges"), fixed={"epochs": 2},
                     axes={"lr": LogUniform(1e-3, 1e-1)},
                     per_pairing={"simple_cnn/edges": {"kernel_size": Choice((3, 5, 7))}}, seeds=1)
    plan = make_plan(exp, num_samples=4)
    assert plan.sampled and "kernel_size" in plan.swept_keys
    space = to_tune_space(plan)
    assert type(space["lr"]).__name__ == "Float"
    with pytest.raises(ConfigError):  # kernel sizes are validated at both ends before running
        make_plan(Experiment("s2", "d", ("simple_cnn/edges",), per_pairing={
            "simple_cnn/edges": {"kernel_size": Choice((3, 99))}}, seeds=1))


def test_per_pairing_key_the_pairing_does_not_use_is_refused():
    # An experiment's per-pairing setting must be applied to that pairing: the MLP has no kernel,
    # so giving it one is an error naming the pairing and those that accept the key (never a
    # silently dropped setting).
    exp = Experiment("pp", "d", ("simple_cnn/edges", "three_layer_mlp/edges"), fixed={"epochs": 2},
                     per_pairing={"three_layer_mlp/edges": {"kernel_size": 5}}, seeds=1)
    with pytest.raises(ConfigError, match=r"'kernel_size' is not used by pairing three_layer_mlp/edges.*simple_cnn/edges"):
        make_plan(exp)


def test_value_parsing():
    assert parse_value("1e-3") == 1e-3 and parse_value("true") is True and parse_value("[50, 10]") == [50, 10]
    assert parse_value("adam") == "adam"
    assert parse_sets(["lr=0.1", "optimizer=adam"]) == {"lr": 0.1, "optimizer": "adam"}
    assert parse_grids(["lr=0.1,0.01"]) == {"lr": [0.1, 0.01]}
    with pytest.raises(ConfigError, match="key=value"):
        parse_sets(["lr"])


def test_missing_dataset_files_fail_before_running(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_plan(get_experiment("mnist-mlp-lenet-resnet"), extra_fixed={"data_root": str(tmp_path)})
    assert str(tmp_path) in str(info.value)


# --- search domains answer for themselves ------------------------------------------------------

@pytest.mark.parametrize("domain, representative, extremes, largest", [
    (LogUniform(1e-3, 1e-1), 1e-3, [1e-3, 1e-1], 1e-1),
    (RandInt(3, 9), 3, [3, 9], 9),
    (Choice((5, 3, 7)), 5, [5, 3, 7], 7),
])
def test_a_domain_knows_its_values(domain, representative, extremes, largest):
    assert domain.representative() == representative
    assert domain.extremes() == extremes
    assert domain.largest() == largest
    drawn = [domain.sample() for _ in range(50)]  # Tune's own sampler for the domain
    assert all(domain.contains(x) for x in drawn)
    assert type(drawn[0]) is type(representative)
