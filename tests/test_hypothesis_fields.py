"""Hypothesis kinds: each kind's required fields are checked at construction, with a clear error."""
from __future__ import annotations

import pytest

from core.errors import ConfigError
from search_spaces import EXPERIMENTS
from search_spaces.experiment import HYPOTHESIS_KINDS, Hypothesis

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"


def test_existing_declarations_keep_working_as_differences():
    hyps = [h for e in EXPERIMENTS.values() for h in e.hypotheses]
    assert hyps and all(h.kind in HYPOTHESIS_KINDS for h in hyps)
    plain = Hypothesis("CNN > MLP", CNN, MLP)
    assert (plain.kind, plain.margin, plain.threshold, plain.at_other) == ("difference", None, None, {})
    assert plain.better_fixed == {} and plain.worse_fixed == {}


@pytest.mark.parametrize("kwargs", [
    dict(kind="equivalence", worse=MLP, margin=0.05),
    dict(kind="threshold", threshold=0.95),
    dict(kind="threshold", threshold=0.1, mode="min", metric="val_loss"),
    dict(kind="chance"),
    dict(kind="chance", margin=0.05),
    dict(kind="interaction", worse=MLP, at={"epochs": 100}, at_other={"epochs": 1000}),
    dict(kind="difference", worse=MLP, margin=0.05, better_fixed={"init": "edge_detector"}, worse_fixed={"init": "default"}),
])
def test_valid_kinds(kwargs):
    h = Hypothesis("claim", CNN, **kwargs)
    assert h.kind == kwargs["kind"]


@pytest.mark.parametrize("kwargs, words", [
    (dict(kind="different", worse=MLP), "kind must be one of"),
    (dict(kind="equivalence", worse=MLP), "needs `margin`"),
    (dict(kind="threshold"), "needs `threshold`"),
    (dict(kind="threshold", threshold=0.9, worse=MLP), "worse would not be used"),
    (dict(kind="threshold", threshold=0.9, margin=0.05), "one-sided"),
    (dict(kind="chance", worse=MLP), "worse would not be used"),
    (dict(kind="chance", worse_fixed={"init": "x"}), "worse_fixed would not be used"),
    (dict(kind="chance", other_experiment="edge-data-per-class"), "other_experiment would not be used"),
    (dict(kind="difference"), "needs `worse`"),
    (dict(kind="difference", worse=MLP, threshold=0.9), "only by kind='threshold'"),
    (dict(kind="difference", worse=MLP, at_other={"epochs": 100}), "only by kind='interaction'"),
    (dict(kind="interaction", worse=MLP, at={"epochs": 100}), "needs `at_other`"),
    (dict(kind="interaction", worse=MLP, at={"epochs": 100}, at_other={"epochs": 100}), "they are equal"),
    (dict(kind="equivalence", worse=MLP, margin=0), "must be > 0"),
    (dict(kind="equivalence", worse=MLP, margin=float("nan")), "finite number"),
    (dict(kind="threshold", threshold="0.9"), "finite number"),
    (dict(kind="difference", worse=MLP, better_fixed=["init"]), "must be a dict"),
])
def test_invalid_kinds_name_the_problem(kwargs, words):
    with pytest.raises(ConfigError, match="'claim'") as err:
        Hypothesis("claim", CNN, **kwargs)
    assert words in str(err.value)
