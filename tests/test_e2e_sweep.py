"""End to end: a real smoke sweep on local Ray into a temporary MLflow store, then results and report."""
from __future__ import annotations

import json

import pytest

from cluster.cli import main
from conftest import mlflow_runs
from cluster.infra.ray_setup import stop_ray

EXP = "edge-data-per-class"


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    """Run `sweep run edge-data-per-class --smoke` once for the whole module."""

    tmp = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{tmp}/mlflow.db"
    try:
        code = main(["run", EXP, "--smoke", "--name", "e2e", "--tracking-uri", uri,
                     "--storage-path", str(tmp / "ray_results"), "--max-concurrent", "2"])
    finally:
        stop_ray()
    return code, uri, tmp


def test_sweep_exits_zero_and_writes_sweep_state(smoke_sweep):
    code, _, tmp = smoke_sweep
    assert code == 0
    meta = json.loads((tmp / "ray_results" / "e2e" / "sweep.json").read_text())
    assert meta["experiment"] == EXP and meta["swept_keys"] == ["pairing", "data_per_class"]


def test_one_parent_and_a_child_per_trial(smoke_sweep):
    _, uri, _ = smoke_sweep
    parents, children = mlflow_runs(uri, EXP)
    assert len(parents) == 1 and len(children) == 2 * 2 * 2  # pairings x data sizes x seeds
    parent = parents[0]
    assert parent.data.tags["sweep"] == "e2e" and parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    cells = {(c.data.tags["pairing"], c.data.params["data_per_class"], c.data.tags["seed"]) for c in children}
    assert len(cells) == 8


def test_children_have_histories_params_tags_artifacts(smoke_sweep):
    from mlflow.tracking import MlflowClient

    _, uri, _ = smoke_sweep
    client = MlflowClient(uri)
    _, children = mlflow_runs(uri, EXP)
    for run in children:
        assert run.info.status == "FINISHED"
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == [1, 2, 3], (key, steps)
        assert 0 <= run.data.metrics["val_acc"] <= 1
        for tag in ("experiment", "pairing", "model", "dataset", "seed", "git_sha", "sweep", "trial_id"):
            assert run.data.tags.get(tag), tag
        assert run.data.params["epochs"] == "3" and "lr" in run.data.params
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "confusion_matrix.json", "history.json", "samples.npz"} <= files
        if run.data.tags["model"] == "simple_cnn":
            assert "kernels" in files


def test_results_command_reads_back_cells(smoke_sweep, capsys):
    _, uri, _ = smoke_sweep
    capsys.readouterr()
    assert main(["results", EXP, "--format", "json", "--tracking-uri", uri]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    for row in rows:
        assert row["n"] == 2
        assert row["val_acc_ci_low"] <= row["val_acc_mean"] <= row["val_acc_ci_high"]


def test_report_round_trip(smoke_sweep, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    _, uri, _ = smoke_sweep
    assert main(["report", "--sweep", "e2e", "--out", str(tmp_path / "rep"), "--tracking-uri", uri]) == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs and all(p in html or p.removesuffix(".png") in html for p in pngs)
    assert (tmp_path / "rep" / "results.csv").exists()
    parents, _ = mlflow_runs(uri, EXP)
    arts = {a.path for a in MlflowClient(uri).list_artifacts(parents[0].info.run_id, "report")}
    assert "report/index.html" in arts


@pytest.mark.parametrize("histories", [False, True])
def test_the_fast_reader_loads_what_mlflow_loads_from_a_real_sweep(smoke_sweep, histories):
    """`sweep results` reads the store with sqlite3 (analysis.sqlite_store): on the store a real
    sweep wrote, the loaded sweep equals MlflowClient's exactly (tests/test_sqlite_store.py has the
    awkward cases)."""
    import pandas as pd

    from analysis.load import load_sweep
    from analysis.sqlite_store import open_reader

    _, uri, _ = smoke_sweep
    assert open_reader(uri) is not None  # the revision the sweep's MLflow wrote is the verified one
    fast = load_sweep(uri, sweep="e2e", histories=histories)
    slow = load_sweep(uri, sweep="e2e", histories=histories, fast=False)
    pd.testing.assert_frame_equal(fast.runs, slow.runs, check_exact=True)
    pd.testing.assert_frame_equal(fast.history, slow.history, check_exact=True)
    assert fast.parent == slow.parent and fast.parent["declaration"]
    assert (fast.swept_keys, fast.metrics, fast.params) == (slow.swept_keys, slow.metrics, slow.params)
    assert len(fast.runs) == 8 and fast.history.empty != histories
