"""Round trip: a fabricated sqlite MLflow store -> SweepData, results table, artifacts."""
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow", reason="reads and writes MLflow stores")
from analysis_fakes import EPOCHS, PAIRINGS, SEEDS, accuracy, fake_store, trial_rows

from analysis.load import load_artifacts, load_sweep, parse_value
from analysis.results import results_table
from core.errors import ConfigError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fake_store(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("text, value", [
    ("10", 10), ("0.01", 0.01), ("1e-2", 0.01), ("[50, 10]", (50, 10)), ("(50, 10)", (50, 10)),
    ("True", True), ("true", True), ("None", None), ("null", None), ("simple_cnn/edges", "simple_cnn/edges"),
    ('["horizontal", "vertical"]', ("horizontal", "vertical")), ("sgd", "sgd"), ("", "")])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_load_round_trip(store):
    uri, parent_id = store
    data = load_sweep(uri, experiment="fake-exp")
    assert data.parent["run_id"] == parent_id and data.name == "fake-sweep"
    assert data.parent["params"] == {"epochs": EPOCHS}
    assert data.parent["declaration"]["plots"][0] == "accuracy_vs_data"
    assert data.swept_keys == ["pairing", "data_per_class"]
    runs = data.runs
    assert len(runs) == len(PAIRINGS) * 2 * len(SEEDS)
    assert set(runs["status_reason"]) == {"completed"}
    # Params typed back: numbers are numbers, JSON lists are tuples, "None" is None.
    assert runs["data_per_class"].dtype.kind == "i" and runs["lr"].dtype.kind == "f"
    assert runs["n_classes"].dtype.kind == "i" and set(runs["n_classes"]) == {3}  # a typed tag
    mlp = runs[runs["pairing"] == PAIRINGS[1]]
    assert set(mlp["hidden_dims"]) == {(50, 10)}
    assert runs.loc[runs["pairing"] == PAIRINGS[0], "hidden_dims"].isna().all()
    for _, r in runs.iterrows():
        assert r["val_acc"] == pytest.approx(accuracy(r["pairing"], r["data_per_class"], r["seed"]))
        assert r["model"] == r["pairing"].split("/")[0] and r["git_sha"] == "0123456"
    assert {"val_acc", "n_params", "best_val_acc", "iou_shifted"} <= set(data.metrics)
    assert {"lr", "data_per_class", "pairing"} <= set(data.params)


def test_history_is_long_and_complete(store):
    uri, _ = store
    data = load_sweep(uri, sweep="fake-sweep")
    h = data.history
    assert list(h.columns) == ["run_id", "key", "step", "value"]
    per_run = 4 * EPOCHS + 2 * 3  # four per-epoch curves, two shift histories of 3 shifts
    assert len(h) == len(data.runs) * per_run
    run = data.runs.iloc[0]
    val = h[(h["run_id"] == run["run_id"]) & (h["key"] == "val_acc")]
    assert list(val["step"]) == list(range(1, EPOCHS + 1))
    assert val["value"].iloc[-1] == pytest.approx(run["val_acc"])
    shift = h[(h["run_id"] == run["run_id"]) & (h["key"] == "shift_acc")]
    assert list(shift["step"]) == [0, 2, 4]


def test_final_values_alone_skip_the_histories(store):
    """histories=False (the study's loads and the adaptive searcher's other side): the same runs,
    no per-epoch histories (one store query per run and key saved)."""
    uri, _ = store
    full, final = load_sweep(uri, sweep="fake-sweep"), load_sweep(uri, sweep="fake-sweep", histories=False)
    assert len(full.history) and final.history.empty and list(final.history.columns) == list(full.history.columns)
    pd.testing.assert_frame_equal(full.runs, final.runs)
    assert full.metrics == final.metrics and full.swept_keys == final.swept_keys


def test_load_by_parent_id_and_results_table(store):
    uri, parent_id = store
    by_id = load_sweep(uri, parent_run_id=parent_id)
    assert sorted(by_id.runs["run_id"]) == sorted(load_sweep(uri, experiment="fake-exp").runs["run_id"])
    table = results_table(uri, experiment="fake-exp")
    row = table[(table["pairing"] == PAIRINGS[0]) & (table["data_per_class"] == 10)].iloc[0]
    assert row["n"] == len(SEEDS)
    assert row["val_acc_mean"] == pytest.approx(np.mean([accuracy(PAIRINGS[0], 10, s) for s in SEEDS]))
    assert row["val_acc_ci_low"] < row["val_acc_mean"] < row["val_acc_ci_high"]


def test_load_artifacts(store):
    uri, _ = store
    data = load_artifacts(load_sweep(uri, experiment="fake-exp"))
    assert len(data.confusion) == len(data.runs)
    cnn_runs = data.runs.loc[data.runs["pairing"] == PAIRINGS[0], "run_id"]
    assert sorted(data.kernels["run_id"]) == sorted(cnn_runs)
    assert data.kernels.iloc[0]["initial"].shape == (3, 1, 7, 7)
    expected = [m for _, _, _, _, m, _ in trial_rows()]
    assert any(np.allclose(data.confusion.iloc[0]["matrix"], m) for m in expected)


def test_errors_name_what_exists(store):
    uri, _ = store
    with pytest.raises(ConfigError, match="no MLflow experiment named 'nope'.*fake-exp"):
        load_sweep(uri, experiment="nope")
    with pytest.raises(ConfigError, match="no sweep 'other'.*fake-sweep"):
        load_sweep(uri, sweep="other")
    with pytest.raises(ConfigError, match="name an experiment"):
        load_sweep(uri)
    with pytest.raises(ConfigError, match="no parent run with id"):
        load_sweep(uri, parent_run_id="0" * 32)


def test_experiment_alone_selects_the_newest_sweep(store, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, _ = store  # a second experiment in the same store (a fresh sqlite schema costs seconds)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    now = int(time.time() * 1000)
    for name, start in (("old", now - 60_000), ("new", now), ("older", now - 120_000)):
        client.create_run(exp, run_name=name, start_time=start, tags={"role": "sweep", "sweep": name})
    assert load_sweep(uri, experiment="e").name == "new"
    assert load_sweep(uri, experiment="e", sweep="old").name == "old"
    assert load_sweep(uri, sweep="old").runs.empty


def test_results_table_reads_no_metric_history(store, monkeypatch):
    """`sweep results` needs each run's final values only: one history query per run and key cost
    2.5 of its 7 s on a 63-run store. load_sweep still loads them by default (the report's curves)."""
    from mlflow.tracking import MlflowClient

    uri, _ = store
    assert not load_sweep(uri, experiment="fake-exp").history.empty
    assert load_sweep(uri, experiment="fake-exp", histories=False).history.empty

    def forbidden(*a, **k):
        raise AssertionError("the results table fetched a metric history")

    monkeypatch.setattr(MlflowClient, "get_metric_history", forbidden)
    table = results_table(uri, experiment="fake-exp")
    assert (table["n"] == len(SEEDS)).all()
    # nor through the sqlite reader `sweep results` reads a sqlite store with (analysis.sqlite_store)
    from analysis.sqlite_store import SqliteReader

    monkeypatch.setattr(SqliteReader, "get_metric_histories", forbidden)
    assert (results_table(uri, experiment="fake-exp")["n"] == len(SEEDS)).all()
