"""Guards against seeded bugs that the rest of the suite once let through (issue 17).

Each test names the behaviour it pins; `make test-mutants` (tests/mutation/run.py) applies the
matching mutant and checks that this file (or another mapped one) then fails.
"""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.hypotheses import ALPHA, evaluate, verdict
from cluster.planning.plan import make_plan, to_tune_space
from search_spaces import get_experiment
from search_spaces.domains import RandInt
from search_spaces.experiment import Hypothesis
from core.errors import ConfigError

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"


# --- verdicts --------------------------------------------------------------------------------

def test_verdict_is_significant_only_strictly_below_alpha():
    """p == alpha is not significant (the semantics of analysis.hypotheses.verdict: p < alpha)."""
    assert verdict(0.9, 0.6, ALPHA) == "inconclusive"
    assert verdict(0.6, 0.9, ALPHA) == "inconclusive"
    below = ALPHA - 1e-9
    assert verdict(0.9, 0.6, below) == "yes" and verdict(0.6, 0.9, below) == "no"
    assert verdict(0.2, 0.5, below, "min") == "yes" and verdict(0.5, 0.2, below, "min") == "no"
    assert verdict(0.5, 0.5, 0.0) == "inconclusive"


def _loss_frame() -> pd.DataFrame:
    rows = []
    for pairing, losses in ((CNN, (0.10, 0.12, 0.14)), (MLP, (0.80, 0.85, 0.90))):
        for seed, loss in zip((10, 11, 12), losses):
            rows.append({"run_id": f"{pairing}-{seed}", "pairing": pairing, "data_per_class": 10, "seed": seed,
                         "val_loss": loss, "val_acc": 1.0 - loss, "status_reason": "completed"})
    return pd.DataFrame(rows)


def test_min_mode_hypothesis_is_evaluated_as_min():
    """"CNN has lower val_loss than MLP" (mode="min") is a yes when the CNN's loss is lower."""
    lower = Hypothesis("CNN loss < MLP loss", better=CNN, worse=MLP, metric="val_loss", mode="min")
    [r] = evaluate(lower, _loss_frame(), ["data_per_class"])
    assert r.verdict == "yes", r.sentence
    higher = Hypothesis("MLP loss < CNN loss", better=MLP, worse=CNN, metric="val_loss", mode="min")
    [r] = evaluate(higher, _loss_frame(), ["data_per_class"])
    assert r.verdict == "no", r.sentence
    as_max = Hypothesis("CNN loss > MLP loss", better=CNN, worse=MLP, metric="val_loss", mode="max")
    [r] = evaluate(as_max, _loss_frame(), ["data_per_class"])
    assert r.verdict == "no", r.sentence


# --- credential redaction ----------------------------------------------------------------------

@pytest.mark.parametrize("key", ["password", "DB_PASSWORD", "Hub_Token", "client_secret", "CLIENT_SECRET",
                                 "aws_credentials", "GCP_Credential_File", "api_key", "OPENAI_API_KEY"])
def test_redaction_is_case_insensitive_and_covers_every_marker(key):
    from trainables.tracking import redact

    out = redact({key: "s3cr3t-value", "lr": 0.1, "nested": {key: "s3cr3t-nested", "epochs": 3}})
    assert out[key] == "***" and out["nested"][key] == "***"
    assert out["lr"] == 0.1 and out["nested"]["epochs"] == 3


def test_redaction_leaves_ordinary_keys_alone():
    from trainables.tracking import redact

    cfg = {"lr": 0.1, "kernel_size": 7, "pairing": CNN, "data_root": "/data"}
    assert redact(cfg) == cfg


# --- search spaces -------------------------------------------------------------------------------

def _randint_plan(low: int, high: int):
    exp = get_experiment("edge-data-per-class")
    from cluster.tuner.search import apply_samples

    return make_plan(apply_samples(exp, {"batch_size": RandInt(low, high)}), smoke=True, num_samples=2)


def test_randint_search_domain_reaches_its_upper_bound():
    """randint(LO, HI) is inclusive at both ends (search_spaces.domains.RandInt); Tune's randint
    excludes its upper bound, so the translation must pass HI + 1."""
    space = to_tune_space(_randint_plan(7, 8))
    seen = set(space["batch_size"].sample(size=200, random_state=0))
    assert seen == {7, 8}


def test_randint_per_pairing_domain_reaches_its_upper_bound():
    exp = get_experiment("edge-hpo")
    import dataclasses

    exp = dataclasses.replace(exp, per_pairing={CNN: {"kernel_size": RandInt(3, 4)}, MLP: {}})
    plan = make_plan(exp, smoke=True, num_samples=2)
    sampler = to_tune_space(plan)["kernel_size"].func
    random.seed(0)
    np.random.seed(0)  # the domain samples with Tune's sampler, which draws from numpy's global generator
    assert {sampler({"pairing": CNN}) for _ in range(200)} == {3, 4}


def test_randint_upper_bound_is_validated_before_running():
    """Both ends of a sampled domain are resolved: kernel_size 29 > the 28-pixel image is refused."""
    from cluster.tuner.search import apply_samples

    exp = apply_samples(get_experiment("edge-hpo"), {"kernel_size": RandInt(3, 29)})
    with pytest.raises(ConfigError, match="kernel_size"):
        make_plan(exp, smoke=True, num_samples=2)


def test_optuna_randint_is_inclusive():
    class Trial:
        def suggest_int(self, name, low, high):
            return (low, high)

    assert RandInt(3, 9).suggest(Trial(), "k") == (3, 9)


# --- overrides -----------------------------------------------------------------------------------

def test_grid_overrides_a_per_pairing_value():
    """`edge-hpo --grid kernel_size=3,5`: the CNN trains both kernels, not the experiment's own domain."""
    from cluster.planning.values import parse_grids

    plan = make_plan(get_experiment("edge-hpo"), grids=parse_grids(["kernel_size=3,5"]), smoke=True, num_samples=2)
    cnn = sorted(c["kernel_size"] for c in plan.cells() if c["pairing"] == CNN)
    assert cnn == [3, 5]
    assert "kernel_size" not in plan.per_pairing[CNN]
    from ray.tune.search.variant_generator import generate_variants

    trials = [cfg for _, cfg in generate_variants(to_tune_space(plan))]  # what Tune's grid turns into
    assert sorted(c["kernel_size"] for c in trials if c["pairing"] == CNN) == [3, 5]


def test_set_overrides_a_per_pairing_value():
    plan = make_plan(get_experiment("edge-hpo"), sets={"kernel_size": 5}, smoke=True, num_samples=2)
    assert {c["kernel_size"] for c in plan.cells() if c["pairing"] == CNN} == {5}
    from ray.tune.search.variant_generator import generate_variants

    trials = [cfg for _, cfg in generate_variants(to_tune_space(plan))]
    assert {c["kernel_size"] for c in trials if c["pairing"] == CNN} == {5}


# --- --cpus-per-trial reaches the trial's torch threads -------------------------------------------

def test_trainable_applies_its_thread_count_while_training():
    from trainables.trainable import run_trial

    seen = []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run_trial({"pairing": CNN, "data_per_class": 5, "valid_per_class": 5, "epochs": 2, "report_every": 1,
                   "seed": 10, "log_to_mlflow": False, "threads": 2},
                  report=lambda m, s: seen.append(torch.get_num_threads()))
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {2}


def test_packed_trainable_applies_its_thread_count():
    from trainables.packed_trainable import run_pack

    seen = []
    base = {"pairing": MLP, "data_per_class": 5, "valid_per_class": 5, "epochs": 2, "report_every": 1,
            "log_to_mlflow": False, "threads": 2}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run_pack([{**base, "seed": 10}, {**base, "seed": 11}], report=lambda m, s: seen.append(torch.get_num_threads()))
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {2}


def test_cpus_per_trial_becomes_the_trials_threads_and_resources(monkeypatch, tmp_path):
    """`sweep run --cpus-per-trial 2`: Ray reserves 2 CPUs per trial and every trial config says threads=2."""
    from cluster.planning import preflight
    from cluster.infra import ray_setup
    from cluster.flow import run as runner
    from cluster.tuner import assemble

    captured = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight, "run_checks", lambda plan, opts: None)
    monkeypatch.setattr(ray_setup, "init_ray", lambda *a, **kw: None)
    monkeypatch.setattr(ray_setup, "cluster_resources", lambda: (4.0, 0.0, 1))

    def fake_tuner(plan, opts, record):
        from cluster.tuner.search import tune_space

        captured.update(resources=record.resources, space=tune_space(plan, opts))
        return None

    monkeypatch.setattr(assemble, "make_tuner", fake_tuner)
    monkeypatch.setattr(runner, "fit_and_close", lambda *args, **kwargs: 0)
    opts = runner.RunOptions("edge-data-per-class", smoke=True, seeds=1, cpus_per_trial=2, quiet=True,
                             tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", storage_path=str(tmp_path / "rr"))
    assert runner.run_sweep(opts) == 0
    assert captured["resources"]["cpu"] == 2
    assert captured["space"]["threads"] == 2


# --- boundaries the mutation check found unpinned ----------------------------------------------------

def test_one_value_against_a_constant_side_is_not_a_test():
    """Welch needs two values per side: one run against three identical ones gives no p-value."""
    from analysis.aggregate import welch

    w = welch([0.9], [0.5, 0.5, 0.5])
    assert w.p != w.p and w.n_a == 1 and w.n_b == 3
    assert verdict(w.mean_a, w.mean_b, w.p) == "inconclusive"


def test_n_trials_counts_every_sample():
    plan = make_plan(get_experiment("edge-hpo"), smoke=True, num_samples=4)
    assert len(plan.cells()) == 2 and plan.n_trials() == 8


def test_asha_grace_period_equal_to_the_budget_shrinks():
    """A grace period that reaches max_t would never stop a trial: it shrinks to a quarter of the budget."""
    from cluster.flow.options import RunOptions
    from cluster.flow.sweep import build_plan
    from cluster.tuner.search import asha_settings

    opts = RunOptions("edge-hpo", sets={"epochs": 8}, grace_period=8)
    assert asha_settings(build_plan(opts), opts)["grace_period"] == 2
    opts = RunOptions("edge-hpo", sets={"epochs": 8}, grace_period=7)
    assert asha_settings(build_plan(opts), opts)["grace_period"] == 7


@pytest.mark.parametrize("key", ["epochs", "batch_size", "data_per_class"])
def test_a_bool_is_not_an_int(key):
    """`--set epochs=true` must not become 1 epoch: bool is refused where an int is expected."""
    with pytest.raises(ConfigError, match=f"{key}=True has type bool; expected int"):
        make_plan(get_experiment("edge-data-per-class"), sets={key: True})


def test_min_mode_survives_the_holm_correction():
    """evaluate_all re-decides every verdict after Holm's correction: mode="min" must survive it."""
    from analysis.hypotheses import evaluate_all

    hs = [Hypothesis("CNN loss < MLP loss", better=CNN, worse=MLP, metric="val_loss", mode="min"),
          Hypothesis("MLP loss < CNN loss", better=MLP, worse=CNN, metric="val_loss", mode="min")]
    assert [r.verdict for r in evaluate_all(hs, _loss_frame(), ["data_per_class"])] == ["yes", "no"]
