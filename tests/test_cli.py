"""The thin CLI: listings, the analytic experiment, argument errors."""
from __future__ import annotations

import pytest

from cluster.cli import build_parser, main
from conftest import mlflow_runs
from search_spaces import EXPERIMENTS


def test_list_experiments_names_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)


def test_list_models_shows_spec_parameter_counts(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    for count in ("606", "39,793", "820,874", "268,650", "61,706", "11,175,370", "5,130"):
        assert count in out


def test_list_keys(capsys):
    assert main(["list", "keys"]) == 0
    out = capsys.readouterr().out
    assert "data_per_class" in out and "lr" in out and "report_every" in out


def test_analytic_experiment_prints_and_logs(tracking_uri, capsys):
    assert main(["run", "mlp-param-explosion", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    for count in ("820,874", "50,366,090", "707,823,242", "6,370,133,642"):
        assert count in out
    parents, children = mlflow_runs(tracking_uri, "mlp-param-explosion")
    assert len(parents) == 1 and not children
    assert parents[0].data.metrics["mlp_params"] == 6_370_133_642


def test_results_without_target_is_refused(tracking_uri, capsys):
    assert main(["results", "--tracking-uri", tracking_uri]) == 2
    assert "EXPERIMENT" in capsys.readouterr().err


def test_parser_rejects_non_numeric_gpus():
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "edge-wider", "--gpus-per-trial", "lots"])
    assert info.value.code == 2
