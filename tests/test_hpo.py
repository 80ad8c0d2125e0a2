"""Hyper-parameter search: domains from the CLI, ASHA settings, searchers, `sweep confirm`, search analysis."""
from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pandas as pd
import pytest

from cluster.cli import main
from cluster.flow.confirm import NOT_CONFIG, confirmation_experiment, pick_best
from cluster.planning.plan import make_plan
from cluster.flow.options import RunOptions
from cluster.flow.sweep import build_plan
from cluster.tuner.search import OptunaSpace, asha_settings, check_search, parse_domain, parse_samples, tune_space
from search_spaces import EXPERIMENTS, get_experiment
from search_spaces.domains import Choice, LogUniform, RandInt, Uniform
from search_spaces.hpo import HPO_EXPERIMENTS
from core.errors import ConfigError

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"


# ---------------------------------------------------------------- experiments and ASHA settings

@pytest.mark.parametrize("exp", HPO_EXPERIMENTS, ids=lambda e: e.name)
def test_hpo_experiments_are_registered_searches(exp):
    assert EXPERIMENTS[exp.name] is exp and exp.search is not None and exp.seeds == 1
    plan = build_plan(RunOptions(exp.name))
    assert plan.sampled and plan.num_samples == exp.search.num_samples and "lr" in plan.swept_keys
    asha = asha_settings(plan, RunOptions(exp.name, scheduler="asha"))
    assert asha["grace_period"] == exp.search.grace_period and asha["max_t"] == max(exp.axes["epochs"].values)
    # every rung falls on a Tune report
    assert exp.search.grace_period % exp.fixed["report_every"] == 0


def test_edge_hpo_searches_kernel_for_cnn_and_width_for_mlp():
    exp = get_experiment("edge-hpo")
    assert exp.pairings == (CNN, MLP) and exp.fixed["data_per_class"] == 30
    assert isinstance(exp.axes["lr"], LogUniform) and isinstance(exp.axes["epochs"], Choice)
    assert set(exp.per_pairing[CNN]) == {"kernel_size"} and set(exp.per_pairing[MLP]) == {"hidden_dims"}


def test_smoke_search_is_small_and_grace_shrinks_to_the_budget():
    opts = RunOptions("edge-hpo", smoke=True)
    plan = build_plan(opts)
    assert plan.num_samples == 4 and plan.axes["epochs"] == [8]
    assert asha_settings(plan, opts) == {"max_t": 8, "grace_period": 2, "reduction_factor": 3}


def test_cli_grace_and_reduction_override_the_experiment():
    opts = RunOptions("edge-hpo", sets={"epochs": 8}, grace_period=1, reduction_factor=2)
    assert asha_settings(build_plan(opts), opts) == {"max_t": 8, "grace_period": 1, "reduction_factor": 2}


def test_asha_without_a_declared_search_waits_a_twentieth_of_the_budget():
    # edge-data-per-class declares no Search: ASHA's grace period is one twentieth of its 500 epochs
    opts = RunOptions("edge-data-per-class", scheduler="asha")
    assert asha_settings(build_plan(opts), opts) == {"max_t": 500, "grace_period": 25, "reduction_factor": 3}


def test_asha_flags_from_the_command_line_are_accepted_with_scheduler_asha():
    from cluster.cli import build_parser
    from cluster.flow.options import from_args

    # argv strings are built at run time, as sys.argv's are (never the interned literal "asha")
    argv = [w.strip() for w in " run edge-hpo --scheduler asha --grace-period 2 --reduction-factor 2 ".split()]
    args = build_parser().parse_args(argv)
    opts = from_args(RunOptions, args, experiment=args.experiment)
    assert asha_settings(build_plan(opts), opts) == {"max_t": 400, "grace_period": 2, "reduction_factor": 2}


def test_asha_runs_when_chosen_and_only_then():
    from ray.tune.schedulers import ASHAScheduler

    from cluster.tuner.schedulers import PerPairingASHA
    from cluster.tuner.search import make_search

    # edge-hpo declares ASHA: two pairings get one ASHA each, with the declared rungs
    scheduler, _, metric, mode = make_search(make_plan(get_experiment("edge-hpo"), seeds=1), RunOptions("edge-hpo"))
    assert isinstance(scheduler, PerPairingASHA) and (metric, mode) == ("val_acc", "max")
    assert scheduler.asha == {"time_attr": "epoch", "max_t": 400, "grace_period": 10, "reduction_factor": 3}
    # one pairing: Ray's own ASHAScheduler; --scheduler none: no scheduler, the search still ranks by its metric
    opts = RunOptions("edge-deeper-hpo", grace_period=4, reduction_factor=2)
    assert isinstance(make_search(make_plan(get_experiment("edge-deeper-hpo"), seeds=1), opts)[0], ASHAScheduler)
    assert make_search(make_plan(get_experiment("edge-hpo"), seeds=1),
                       RunOptions("edge-hpo", scheduler="none")) == (None, None, "val_acc", "max")


def test_the_objective_is_read_one_way_from_a_declaration_its_stored_form_or_neither():
    from search_spaces.experiment import DEFAULT_METRIC, DEFAULT_MODE, Search, objective

    assert (DEFAULT_METRIC, DEFAULT_MODE) == ("val_acc", "max") == objective(None) == objective(Search())
    assert objective(Search(metric="val_loss", mode="min")) == ("val_loss", "min")
    assert objective({"metric": "val_loss", "mode": "min"}) == ("val_loss", "min")  # a stored declaration
    assert objective({"mode": "min"}) == ("val_acc", "min")
    for hostile in ({}, {"metric": None, "mode": ""}, ["val_loss"], "val_loss", 3):  # a stored file says anything
        assert objective(hostile) == ("val_acc", "max")


def test_confirm_reads_the_stored_objective_and_leaves_no_download_behind(tmp_path, monkeypatch):
    import tempfile

    from mlflow.tracking import MlflowClient

    from cluster.flow.confirm import _objective
    from core import store_schema as S

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    stored = client.create_run(exp_id).info.run_id
    client.log_text(stored, json.dumps({"search": {"metric": "val_loss", "mode": "min"}}), S.ART_DECLARATION)
    bare = client.create_run(exp_id).info.run_id  # no declaration: the registry's entry, else the default
    downloads = tmp_path / "tmp"
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    assert _objective(uri, stored, "edge-hpo") == ("val_loss", "min")
    assert _objective(uri, bare, "edge-hpo") == ("val_acc", "max")
    assert _objective(uri, bare, "no-such-experiment") == ("val_acc", "max")
    assert not list(downloads.iterdir())  # each download went to a temporary folder, removed


def test_a_search_on_another_metric_is_what_the_sweep_the_tuner_and_its_record_use():
    import dataclasses

    from cluster.flow.sweep import plan_sweep
    from cluster.tuner.search import make_search
    from search_spaces.experiment import Search

    exp = get_experiment("edge-hpo")
    exp = dataclasses.replace(exp, search=Search(metric="val_loss", mode="min", scheduler="none"))
    sweep = plan_sweep(RunOptions(exp.name, smoke=True), definition=exp)
    assert sweep.metric == ("val_loss", "min")
    assert make_search(sweep.plan, sweep.options)[2:] == ("val_loss", "min")
    plain = plan_sweep(RunOptions("edge-data-per-class", smoke=True))  # no search: the default
    assert plain.metric == ("val_acc", "max")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"grace_period": 0}, "--grace-period must be >= 1"),
    ({"reduction_factor": 1}, "--reduction-factor must be >= 2"),
    ({"grace_period": 2, "scheduler": "none"}, "ASHA only"),
    ({"search": "bayes"}, "--search 'bayes' not allowed"),
])
def test_bad_scheduler_options_refused(kwargs, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        build_plan(RunOptions("edge-hpo", **kwargs))
    assert fragment in str(info.value)


# ---------------------------------------------------------------- domains from the command line

def test_parse_domain_forms():
    assert parse_domain("loguniform(1e-4, 1e-1)") == LogUniform(1e-4, 1e-1)
    assert parse_domain("uniform(0, 0.5)") == Uniform(0, 0.5)
    assert parse_domain("randint(1,5)") == RandInt(1, 5)
    assert parse_domain("choice(3, 5, 7)").values == (3, 5, 7)
    assert parse_domain("choice(sgd, adam)").values == ("sgd", "adam")
    assert parse_domain("choice([50, 10], [100, 10])").values == ((50, 10), (100, 10))
    assert parse_samples(["lr=loguniform(1e-3,1e-1)"]) == {"lr": LogUniform(1e-3, 1e-1)}


@pytest.mark.parametrize("text, fragment", [
    ("choice()", "empty"),
    ("loguniform(0.1, 0.001)", "lower bound 0.1 must be < upper bound 0.001"),
    ("uniform(1, 1)", "lower bound"),
    ("randint(5, 1)", "lower bound 5 must be <= upper bound 1"),
    ("randint(1.5, 3)", "integer bounds"),
    ("loguniform(1e-3)", "two numeric bounds"),
    ("normal(0, 1)", "not a domain"),
])
def test_impossible_or_malformed_domains_refused(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_domain(text)
    assert fragment in str(info.value)


def test_samples_replace_the_experiment_space_and_are_validated():
    plan = build_plan(RunOptions("edge-hpo", samples=parse_samples(["kernel_size=choice(3, 5)"])))
    # The sample replaces the experiment's domain; only the CNN uses kernel_size, so only it samples one.
    assert plan.per_pairing[CNN]["kernel_size"] == Choice((3, 5)) and "kernel_size" not in plan.axes
    assert "kernel_size" not in plan.per_pairing[MLP]
    with pytest.raises(ConfigError, match="kernel_size"):  # both ends of every domain are resolved
        build_plan(RunOptions("edge-hpo", samples=parse_samples(["kernel_size=choice(3, 99)"])))
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        parse_samples(["learning_rate=loguniform(1e-3,1e-1)"])
    with pytest.raises(ConfigError, match="seed"):
        parse_samples(["seed=randint(1,5)"])


@pytest.mark.parametrize("sample, fragment", [
    ("kernel_size=choice()", "empty"),
    ("lr=loguniform(0.1,0.001)", "lower bound 0.1 must be < upper bound 0.001"),
])
def test_cli_refuses_impossible_space_before_any_run(tmp_path, capsys, sample, fragment):
    db = tmp_path / "mlflow.db"
    code = main(["run", "edge-hpo", "--sample", sample, "--tracking-uri", f"sqlite:///{db}",
                 "--storage-path", str(tmp_path / "ray_results")])
    err = capsys.readouterr().err
    assert code == 2 and "sweep run: error:" in err and fragment in err
    assert not db.exists() and not (tmp_path / "ray_results").exists()  # no MLflow run, no Tune state


# ---------------------------------------------------------------- optional searchers

@pytest.mark.parametrize("name", ["hyperopt", "optuna"])
def test_missing_searcher_package_gives_install_hint(tmp_path, capsys, name):
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    code = main(["run", "edge-hpo", "--search", name, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2 and f"pip install {name}" in err and not (tmp_path / "m.db").exists()


def test_model_based_searchers_refuse_what_they_cannot_express(monkeypatch):
    import cluster.tuner.search as search

    monkeypatch.setattr(search.importlib.util, "find_spec", lambda name: object())  # pretend installed
    with pytest.raises(ConfigError, match="per-pairing"):
        check_search(make_plan(get_experiment("edge-hpo")), RunOptions("edge-hpo", search="hyperopt"))
    with pytest.raises(ConfigError, match="one seed"):
        check_search(make_plan(get_experiment("edge-hpo"), seeds=3), RunOptions("edge-hpo", search="optuna"))
    with pytest.raises(ConfigError, match="sampled axes"):
        exp = get_experiment("edge-data-per-class")
        check_search(make_plan(exp), RunOptions(exp.name, search="optuna"))
    check_search(make_plan(get_experiment("edge-hpo")), RunOptions("edge-hpo", search="optuna"))


class FakeOptunaTrial:
    """Records suggestions; picks the first choice / the lower bound."""

    def __init__(self):
        self.asked = {}

    def suggest_float(self, name, low, high, log=False):
        self.asked[name] = ("float", low, high, log)
        return low

    def suggest_int(self, name, low, high):
        self.asked[name] = ("int", low, high)
        return low

    def suggest_categorical(self, name, choices):
        self.asked[name] = ("cat", tuple(choices))
        return choices[-1]


def test_optuna_space_is_conditional_on_the_pairing():
    plan = make_plan(get_experiment("edge-hpo"), seeds=1)
    trial = FakeOptunaTrial()
    cfg = OptunaSpace(plan)(trial)
    assert cfg["pairing"] == MLP and cfg["hidden_dims"] == (200, 10)  # tuples chosen by index
    assert "kernel_size" not in cfg and trial.asked["lr"] == ("float", 1e-3, 2e-1, True)
    assert trial.asked["pairing"] == ("cat", (CNN, MLP))
    constants = tune_space(plan, SimpleNamespace(search="optuna"))
    assert constants["data_per_class"] == 30 and constants["seed"] == 10 and "lr" not in constants


@pytest.mark.parametrize("searcher, exp_name", [("optuna", "edge-hpo"), ("hyperopt", "edge-deeper-hpo")])
def test_each_model_based_searcher_gets_its_own_ray_search_algorithm(monkeypatch, searcher, exp_name):
    # Without optuna/hyperopt installed here, Ray's wrappers are replaced by recorders: what is
    # checked is which wrapper `--search NAME` builds and with what (space, metric, mode, seed).
    import sys
    import types

    import cluster.tuner.search as search

    monkeypatch.setattr(search.importlib.util, "find_spec", lambda name: object())  # pretend installed
    built = {}

    def recorder(kind):
        class Recorder:
            def __init__(self, **kwargs):
                built[kind] = kwargs
        return Recorder

    for kind, cls in (("optuna", "OptunaSearch"), ("hyperopt", "HyperOptSearch")):
        monkeypatch.setitem(sys.modules, f"ray.tune.search.{kind}", types.SimpleNamespace(**{cls: recorder(kind)}))
    exp = get_experiment(exp_name)
    plan = make_plan(exp, seeds=1)
    scheduler, alg, metric, mode = search.make_search(plan, RunOptions(exp_name, search=searcher))
    assert list(built) == [searcher] and (metric, mode) == (exp.search.metric, exp.search.mode)
    if searcher == "optuna":
        assert isinstance(built["optuna"]["space"], OptunaSpace) and built["optuna"]["seed"] == plan.seeds[0]
        assert (built["optuna"]["metric"], built["optuna"]["mode"]) == (metric, mode)
    else:
        assert built["hyperopt"] == {"random_state_seed": plan.seeds[0]}


def test_hyperopt_space_turns_grid_axes_into_choices():
    from ray.tune.search.sample import Categorical

    plan = make_plan(get_experiment("edge-deeper-hpo"), grids={"data_per_class": [10, 30]})
    space = tune_space(plan, SimpleNamespace(search="hyperopt"))
    assert isinstance(space["data_per_class"], Categorical) and space["seed"] == 10


# ---------------------------------------------------------------- picking and confirming the best

def trial(run_id, pairing, acc, loss=0.5, seed=10, **params):
    return {"run_id": run_id, "params": {"pairing": pairing, "seed": seed, "threads": 1, "lr": 0.01, **params},
            "metrics": {"val_acc": acc, "val_loss": loss}}


def test_pick_best_per_pairing_with_ties_and_top_k():
    trials = [trial("a", CNN, 0.9, 0.4, lr=0.1), trial("b", CNN, 0.9, 0.2, lr=0.2), trial("c", CNN, 0.5, lr=0.3),
              trial("d", MLP, 0.7, lr=0.05), trial("e", MLP, float("nan"), lr=0.06)]
    best = pick_best(trials, "val_acc", "max", top=2, swept_keys=("pairing", "lr"))
    assert [(b.pairing, b.rank, b.run_id) for b in best] == [(CNN, 1, "b"), (CNN, 2, "a"), (MLP, 1, "d")]
    assert best[0].searched == {"lr": 0.2} and not set(NOT_CONFIG) & set(best[0].config)
    low = pick_best(trials, "val_loss", "min", top=1)
    assert {b.pairing: b.run_id for b in low} == {CNN: "b", MLP: "d"}  # equal losses: first seen
    with pytest.raises(ConfigError, match="nothing to confirm"):
        pick_best([trial("x", CNN, float("nan"))], "val_acc", "max")


def test_confirmation_experiment_plans_fresh_seeds_and_exact_configs():
    best = pick_best([trial("a", CNN, 0.9, lr=0.1, kernel_size=5, epochs=4, data_per_class=30),
                      trial("b", MLP, 0.8, lr=0.2, hidden_dims=(25, 10), epochs=4, data_per_class=30)],
                     "val_acc", "max")
    exp = confirmation_experiment("edge-hpo", "s1", best, seeds=3, seed_start=11)
    assert exp.fixed == {"data_per_class": 30, "epochs": 4}
    assert exp.per_pairing == {CNN: {"lr": 0.1, "kernel_size": 5}, MLP: {"lr": 0.2, "hidden_dims": (25, 10)}}
    plan = make_plan(exp)
    assert plan.seeds == [11, 12, 13] and plan.n_trials() == 6 and plan.swept_keys == ["pairing"]
    cells = {c["pairing"]: c for c in plan.cells()}
    assert cells[CNN]["kernel_size"] == 5 and cells[MLP]["hidden_dims"] == (25, 10)


# ---------------------------------------------------------------- search analysis without MLflow

def search_data(rows, swept=("pairing", "lr"), tags=None):
    from analysis.sweep_data import SweepData

    return SweepData(parent={"name": "s", "experiment": "edge-hpo", "tags": {"search": "random", **(tags or {})},
                             "declaration": {"search": {"metric": "val_acc", "mode": "max", "grace_period": 1,
                                                        "reduction_factor": 2}}},
                     runs=pd.DataFrame(rows), swept_keys=list(swept))


ROWS = [
    {"run_id": "a", "pairing": CNN, "lr": 0.1, "val_acc": 0.9, "val_loss": 0.3, "status_reason": "completed",
     "epochs_completed": 8.0},
    {"run_id": "b", "pairing": CNN, "lr": 0.2, "val_acc": 0.95, "val_loss": 0.3, "status_reason": "stopped_early",
     "stopped_epoch": 2},
    {"run_id": "c", "pairing": MLP, "lr": 0.3, "val_acc": 0.6, "val_loss": 0.3, "status_reason": "completed",
     "epochs_completed": 8.0},
    {"run_id": "d", "pairing": MLP, "lr": 0.4, "val_acc": 0.5, "val_loss": 0.3, "status_reason": "stopped_early",
     "stopped_epoch": 4},
]


def test_best_per_model_ignores_stopped_trials():
    from analysis.confirmation import best_per_model

    best = best_per_model(search_data(ROWS)).set_index("model")
    assert best.loc[CNN, "run_id"] == "a" and best.loc[MLP, "search_best"] == 0.6  # b was stopped early


def test_asha_rungs_counts_stopped_trials_at_their_stopped_epoch():
    from analysis.plots.search import asha_rungs

    figs = asha_rungs(search_data(ROWS, tags={"asha": json.dumps({"grace_period": 1, "reduction_factor": 2})}))
    ax = figs["asha_rungs"].axes[0]
    alive = {line.get_label().split(" (")[0]: list(line.get_ydata()) for line in ax.get_lines()
             if "trials" in line.get_label()}
    assert alive[CNN][:3] == [2, 2, 1] and alive[MLP][:5] == [2, 2, 2, 2, 1]
    assert {t.get_text().strip() for t in ax.texts} == {"rung 1", "rung 2", "rung 4", "rung 8"}


def test_confirm_refuses_bad_input_before_running(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["confirm", "nope", "--tracking-uri", uri]) == 2
    assert "no sweep 'nope'" in capsys.readouterr().err
    assert main(["confirm", "nope", "--seeds", "0", "--tracking-uri", uri]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, fragment", [
    ({"grace_period": 0}, "grace_period"), ({"reduction_factor": 1}, "reduction_factor"),
    ({"num_samples": 0}, "num_samples"), ({"mode": "maximise"}, "mode"),
])
def test_search_declaration_validates_itself(kwargs, fragment):
    from search_spaces.experiment import Search

    with pytest.raises(ConfigError, match=fragment):
        Search(**kwargs)
