"""End to end: a two-experiment smoke study on local Ray (2 CPUs); a re-run skips both."""
from __future__ import annotations

import json

import pytest

from cluster.cli import main
from conftest import mlflow_runs
from cluster.infra.ray_setup import stop_ray

pytestmark = pytest.mark.slow
# A cross-experiment claim with a cell the smoke sizes (10, 30/class) run: edge-tuned-kernel's
# "3x3 CNN < 7x7 CNN at 10/class" against the study's own edge-domain-shift.
ONLY = "edge-domain-shift,edge-tuned-kernel"


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
            "edge-domain-shift": 8, "edge-tuned-kernel": 4}
    finally:
        stop_ray()
    state = json.loads((tmp_path / "rr" / "study-edge-smoke" / "study.json").read_text())
    assert [e["status"] for e in state["entries"]] == ["finished", "finished"]
    assert all(e["wall_s"] > 0 for e in state["entries"])
    html = (tmp_path / "report" / "index.html").read_text()
    # The cross-experiment hypothesis is answered from the study's own edge-data-per-class sweep.
    assert "3x3 CNN (lr 5e-2) &lt; 7x7 CNN across halves" in html
    assert "Cost" in html and "study-edge-smoke.edge-domain-shift" in html
    assert html.index("Reproduction") < html.index("Summary") and "source value" in html
    import pandas as pd

    rows = pd.read_csv(tmp_path / "report" / "study.csv")
    [tuned] = rows[rows["hypothesis"] == "3x3 CNN (lr 5e-2) < 7x7 CNN across halves at data_per_class=10"].itertuples()
    assert tuned.verdict != "not tested" and tuned.source_value == "66.7% vs 90.0%" and tuned.status != "not tested"
    # Claims against an experiment the study did not run say so.
    shifted = rows[rows["hypothesis"].str.contains("on the unshifted task")]
    assert len(shifted) == 2 and set(shifted["status"]) == {"not tested"}
    assert shifted["status_detail"].str.contains("no sweep of experiment 'edge-data-per-class' in this study").all()
