"""A real search on local Ray (ASHA on a tiny budget), then `sweep confirm` on it (slow: ~30 s)."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.cli import main
from cluster.flow.confirm import NOT_CONFIG
from cluster.flow.options import RunOptions
from cluster.flow.run import run_sweep
from conftest import mlflow_runs
from search_spaces import get_experiment
from cluster.infra.ray_setup import stop_ray

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"


# edge-hpo ranked by validation loss: on an 8-epoch budget many trials sit at chance accuracy, and
# ASHA stops only trials strictly below a rung's cutoff, so accuracy ties would stop nothing.
EXP = dataclasses.replace(get_experiment("edge-hpo"),
                          search=dataclasses.replace(get_experiment("edge-hpo").search, metric="val_loss", mode="min"))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """An edge-hpo search on a tiny ASHA budget, then `sweep confirm` on it, once for the module.

    The search is `sweep run edge-hpo --num-samples 4 --set epochs=8 --set report_every=1
    --grace-period 1 --reduction-factor 2` with the metric above.
    """

    tmp = tmp_path_factory.mktemp("hpo")
    uri = f"sqlite:///{tmp}/mlflow.db"
    opts = RunOptions("edge-hpo", num_samples=4, sets={"epochs": 8, "report_every": 1}, grace_period=1,
                      reduction_factor=2, name="s1", tracking_uri=uri, storage_path=str(tmp / "ray_results"),
                      max_concurrent=2)
    try:
        run = run_sweep(opts, definition=EXP)
        confirm = main(["confirm", "s1", "--seeds", "2", "--tracking-uri", uri, "--max-concurrent", "2"])
    finally:
        stop_ray()
    return SimpleNamespace(run=run, confirm=confirm, uri=uri, tmp=Path(tmp))


def _search_children(uri):
    _, children = mlflow_runs(uri, "edge-hpo")
    return [c for c in children if c.data.tags["sweep"] == "s1"]


@pytest.mark.slow
def test_asha_stops_some_trials_and_logs_them_as_stopped(searched):
    from mlflow.tracking import MlflowClient

    assert searched.run == 0
    children = _search_children(searched.uri)
    assert len(children) == 8
    stopped = [c for c in children if c.data.tags.get("status_reason") == "stopped_early"]
    done = [c for c in children if c.data.tags.get("status_reason") == "completed"]
    assert stopped and len(stopped) + len(done) == 8
    client = MlflowClient(searched.uri)
    for c in stopped:
        assert c.info.status == "KILLED" and 1 <= int(c.data.tags["stopped_epoch"]) < 8
        assert "epochs_completed" not in c.data.metrics
        # Metric writes are bounded in time, not per report: the epochs a stopped trial reported
        # were still written (the trial flushes when Tune stops it inside tune.report).
        steps = sorted(m.step for m in client.get_metric_history(c.info.run_id, "train_loss"))
        assert steps == list(range(1, int(c.data.tags["stopped_epoch"]) + 1)), (c.info.run_name, steps)
    for c in done:
        assert c.info.status == "FINISHED" and c.data.metrics["epochs_completed"] == 8
    assert {c.data.tags["pairing"] for c in done} == {CNN, MLP}  # ASHA ranks within a pairing


@pytest.mark.slow
def test_stopped_trials_never_count_as_results(searched):
    from analysis.load import load_sweep
    from analysis.results import sweep_results

    data = load_sweep(searched.uri, sweep="s1")
    n_done = int((data.runs["status_reason"] == "completed").sum())
    assert len(data.completed) == n_done < len(data.runs)
    assert int(sweep_results(data)["n"].sum()) == n_done


@pytest.mark.slow
def test_confirm_reruns_each_models_best_config_with_fresh_seeds(searched):
    from mlflow.tracking import MlflowClient

    from analysis.load import parse_value

    assert searched.confirm == 0
    parents, children = mlflow_runs(searched.uri, "edge-hpo")
    search = next(p for p in parents if p.data.tags["sweep"] == "s1")
    conf = next(p for p in parents if p.data.tags.get("confirms") == "s1")
    assert search.data.tags["confirmed_by"] == conf.data.tags["sweep"] == "s1-confirm"
    assert conf.data.tags["search"] == "grid" and conf.data.tags["confirms_run_id"] == search.info.run_id
    assert conf.data.tags["confirm_metric"] == "val_loss" and conf.data.tags["confirm_mode"] == "min"
    reruns = [c for c in children if c.data.tags["sweep"] == "s1-confirm"]
    assert len(reruns) == 2 * 2 and all(c.data.tags["status_reason"] == "completed" for c in reruns)
    assert sorted(int(c.data.tags["seed"]) for c in reruns) == [11, 11, 12, 12]  # the search used seed 10
    done = [c for c in _search_children(searched.uri) if c.data.tags["status_reason"] == "completed"]
    for pairing in (CNN, MLP):
        mine = [c for c in done if c.data.tags["pairing"] == pairing]
        best = min(mine, key=lambda c: c.data.metrics["val_loss"])  # the declared metric and mode
        want = {k: parse_value(v) for k, v in best.data.params.items() if k not in NOT_CONFIG}
        for c in (c for c in reruns if c.data.tags["pairing"] == pairing):
            got = {k: parse_value(v) for k, v in c.data.params.items() if k not in NOT_CONFIG}
            assert got == want
    client = MlflowClient(searched.uri)
    assert client.get_run(search.info.run_id).data.tags["confirmed_by"] == "s1-confirm"


@pytest.mark.slow
def test_confirmation_table_puts_ci_beside_search_best(searched):
    from analysis.confirmation import confirmation_table, format_confirmation

    table = confirmation_table(searched.uri, "s1").set_index("model")
    assert set(table.index) == {CNN, MLP} and (table["n"] == 2).all()
    for _, r in table.iterrows():
        assert 0 <= r["search_best"] <= 1 and r["confirmed_ci_low"] <= r["confirmed_mean"] <= r["confirmed_ci_high"]
        assert r["seeds"] == "11,12" and r["confirmation"] == "s1-confirm" and not math.isnan(r["confirmed_mean"])
    assert "± " in format_confirmation(confirmation_table(searched.uri, "s1"))  # val_loss: a symmetric t-interval
