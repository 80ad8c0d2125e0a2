"""write_report on a fabricated sqlite store: files, HTML contents, parent-run artifacts, a real browser."""
import io
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("mlflow", reason="reads and writes MLflow stores")
from analysis_fakes import PAIRINGS, fake_store
from matplotlib.image import imread

from analysis.report import DEFAULT_PLOTS, _run_link, report_spec, write_report
from analysis.sweep_data import SweepData
from core.errors import UnknownName

CHROMIUM = Path("/usr/bin/chromium")
EXPECTED_IMAGES = ["accuracy_vs_data", "curves_data_per_class_10", "curves_data_per_class_30",
                   "kernels_simple_cnn_edges", "confusion", "params_vs_accuracy", "leaderboard",
                   "param_explosion", "samples"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-store")
    uri, parent_id = fake_store(root)
    index = write_report(uri, experiment="fake-exp", out_dir=root / "out")
    return uri, parent_id, index


def test_report_files_and_html(report):
    _, _, index = report
    html = index.read_text(encoding="utf-8")
    for stem in EXPECTED_IMAGES:
        png = index.parent / f"{stem}.png"
        assert png.stat().st_size > 5000, stem
        assert f'href="{stem}.png"' in html and f'alt="{stem}"' in html, stem
    # Self-contained: every figure is embedded, nothing is fetched from elsewhere.
    assert html.count('src="data:image/png;base64,') == len(EXPECTED_IMAGES)
    assert not re.search(r'src="(?!data:)', html)
    results = pd.read_csv(index.parent / "results.csv")
    assert len(results) == 4 and {"val_acc_mean", "val_acc_ci_low", "val_acc_ci_high"} <= set(results.columns)
    assert "92.0% [91.0, 93.0]" in html  # mean [bounded bootstrap interval] in the results table
    assert "at chance" in html and "val_acc median" in html
    # Subject changed (issue 20): learned k/n beside each side, the learned-seed difference at the
    # verdict's level (two parts at 0.0125 each: a 97.5% interval), the two-part p.
    assert ("CNN &gt; MLP at data_per_class=10: yes (92.0% [91.0, 93.0], median 92.0%, learned 3/3 [29-100%] vs "
            "62.0% [61.0, 63.0], median 62.0%, learned 3/3 [29-100%]; learned-seed difference +30.0 pts "
            "[+27.1, +32.9] (97.5% interval); two-part p&lt;0.001; n=3/3)") in html
    assert "a single-seed run would have said yes in 3 of 3 seeds" in html
    assert "fabricated CNN vs MLP sweep" in html and "0123456" in html
    assert "Notes" not in html  # every declared plot had something to draw


def test_parent_run_lists_the_report(report):
    from mlflow.tracking import MlflowClient

    uri, parent_id, _ = report
    listed = {Path(a.path).name for a in MlflowClient(tracking_uri=uri).list_artifacts(parent_id, "report")}
    assert {"index.html", "results.csv"} | {f"{s}.png" for s in EXPECTED_IMAGES} <= listed


def test_run_links_only_for_http_servers():
    assert _run_link("http://127.0.0.1:5000/", "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert _run_link("sqlite:///x.db", "3", "abc") is None


def _data(declaration) -> SweepData:
    return SweepData(parent={"name": "s", "experiment": "not-registered", "declaration": declaration,
                             "tags": {"search": "grid"}},
                     runs=pd.DataFrame({"pairing": [PAIRINGS[0]]}))


def test_declaration_decides_the_content():
    spec = report_spec(_data({"plots": ["curves", "leaderboard"], "hypotheses": [
        {"text": "a > b", "better": "a", "worse": "b", "metric": "val_acc", "mode": "max", "at": {},
         "other_experiment": None}], "compare_with": ["edge-data-per-class"]}))
    assert spec.plots == ("curves", "leaderboard") and spec.hypotheses[0].better == "a"
    assert spec.compare_with == ("edge-data-per-class",)
    fallback = report_spec(_data(None))
    assert fallback.plots == DEFAULT_PLOTS and not fallback.declared and fallback.hypotheses == ()
    with pytest.raises(UnknownName, match="curves"):
        report_spec(_data({"plots": ["curve"]}))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    _, _, index = report
    shot = tmp_path / "report.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           index.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    img = imread(io.BytesIO(shot.read_bytes()))
    assert img.shape[:2] == (2000, 1280)
    assert img[..., :3].std() > 0.05  # text, tables and figures, not a blank page
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_analytic_experiment_needs_no_sweep(report, tmp_path):
    uri = report[0]  # a store without any run of mlp-param-explosion
    index = write_report(uri, experiment="mlp-param-explosion", out_dir=tmp_path / "explosion")
    html = index.read_text(encoding="utf-8")
    assert (tmp_path / "explosion" / "param_explosion.png").stat().st_size > 5000
    for count in ("820,874", "50,366,090", "707,823,242", "6,370,133,642"):
        assert count in html
