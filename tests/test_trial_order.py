"""A plain grid sweep starts its largest cells first (cluster.tuner.order); only the order changes."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("ray", reason="enumerates the grid as Ray Tune does")

from ray.tune.search.variant_generator import generate_variants  # noqa: E402

from cluster.planning.plan import make_plan, to_tune_space  # noqa: E402
from cluster.tuner.order import largest_first, ordered_space  # noqa: E402
from search_spaces import get_experiment  # noqa: E402
from search_spaces.domains import LogUniform  # noqa: E402
from search_spaces.experiment import Experiment  # noqa: E402
from trainables.spec import CELL_KEY, resolve_config  # noqa: E402


def configs(space: dict) -> list[dict]:
    """The trial configs Tune generates from `space`, in Tune's order, with the cell index and the
    keys a cell does not use (None) dropped: what each trial resolves and records."""
    return [{k: v for k, v in cfg.items() if k != CELL_KEY and v is not None} for _, cfg in generate_variants(space)]


def key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def test_edge_sweep_starts_its_largest_cells_first_with_the_same_cells():
    plan = make_plan(get_experiment("edge-data-per-class"), sets={"epochs": 200}, seeds=1)
    plain = to_tune_space(plan)
    ordered = ordered_space(plan, plain)
    before, after = configs(plain), configs(ordered)
    assert [(c["pairing"], c["data_per_class"]) for c in before][:4] == [
        ("simple_cnn/edges", 10), ("simple_cnn/edges", 30), ("simple_cnn/edges", 50), ("simple_cnn/edges", 100)]
    assert [c["data_per_class"] for c in after] == [100, 100, 50, 50, 30, 30, 10, 10]
    assert [c["pairing"] for c in after[:2]] == ["simple_cnn/edges", "three_layer_mlp/edges"]  # ties: plan order
    # The same trials, config for config (so the same specs, params, seeds and metrics): only the order differs.
    assert sorted(map(key, before)) == sorted(map(key, after))
    assert [resolve_config(c).config for c in after] == [resolve_config(c).config for c in sorted(
        before, key=lambda c: (-c["data_per_class"], c["pairing"] != "simple_cnn/edges"))]


def test_longer_trials_count_as_more_work():
    plan = make_plan(get_experiment("edge-data-per-class"), grids={"epochs": [5, 50]}, sets={"data_per_class": 10},
                     seeds=1)
    order = largest_first(plan.specs)
    assert [plan.specs[i].train.epochs for i in order] == [50, 50, 5, 5]


def test_a_grid_already_largest_first_or_of_equal_cells_keeps_tunes_own_space():
    equal = make_plan(get_experiment("edge-data-per-class"), sets={"data_per_class": 10}, seeds=2)
    space = to_tune_space(equal)
    assert ordered_space(equal, space) is space
    exp = Experiment("order-descending", "d", ("simple_cnn/edges",), fixed={"epochs": 2},
                     axes={"data_per_class": [50, 10]})
    descending = make_plan(exp, seeds=1)
    space = to_tune_space(descending)
    assert ordered_space(descending, space) is space


def test_sampled_or_repeated_plans_are_left_alone():
    exp = Experiment("order-sampled", "d", ("simple_cnn/edges",), fixed={"epochs": 2},
                     axes={"data_per_class": [10, 50], "lr": LogUniform(1e-3, 1e-1)})
    sampled = make_plan(exp, seeds=1)
    space = to_tune_space(sampled)
    assert ordered_space(sampled, space) is space
    repeated = make_plan(get_experiment("edge-data-per-class"), seeds=1, num_samples=2)
    space = to_tune_space(repeated)
    assert ordered_space(repeated, space) is space
