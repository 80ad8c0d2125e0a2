"""End to end: a two-experiment smoke study on local Ray (2 CPUs); a re-run skips both."""
from __future__ import annotations

import json

import pytest

from cluster.cli import main
from conftest import mlflow_runs

pytestmark = pytest.mark.slow
ONLY = "edge-data-per-class,edge-detector-init"


def test_smoke_study_runs_reports_and_skips_when_rerun(tmp_path):
    import ray

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["study", "edge", "--smoke", "--only", ONLY, "--tracking-uri", uri, "--storage-path",
            str(tmp_path / "rr"), "--out", str(tmp_path / "report")]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        assert main(args) == 0
        first = {e: len(mlflow_runs(uri, e)[1]) for e in ONLY.split(",")}
        assert main(args) == 0  # everything finished: nothing runs again
        assert {e: len(mlflow_runs(uri, e)[1]) for e in ONLY.split(",")} == first == {
            "edge-data-per-class": 8, "edge-detector-init": 4}
    finally:
        ray.shutdown()
    state = json.loads((tmp_path / "rr" / "study-edge-smoke" / "study.json").read_text())
    assert [e["status"] for e in state["entries"]] == ["finished", "finished"]
    assert all(e["wall_s"] > 0 for e in state["entries"])
    html = (tmp_path / "report" / "index.html").read_text()
    # The cross-experiment hypothesis is answered from the study's own edge-data-per-class sweep.
    assert "edge-initialised CNN &gt; randomly initialised CNN" in html and "not tested (no sweep" not in html
    assert "Cost" in html and "study-edge-smoke.edge-data-per-class" in html
    rows = (tmp_path / "report" / "study.csv").read_text()
    assert "edge-detector-init" in rows
