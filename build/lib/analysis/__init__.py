"""From MLflow runs to seed-aggregated statistics, plots and a report.

Reads the MLflow store (and search_spaces declarations); never builds a model. Statistics and
plots take DataFrames (a SweepData), so they are testable without MLflow.
"""
from analysis.aggregate import aggregate, compare, t_interval, welch
from analysis.hypotheses import HypothesisResult, evaluate, evaluate_all
from analysis.load import load_artifacts, load_sweep
from analysis.report import write_report
from analysis.results import format_results, results_table, sweep_results
from analysis.sweep_data import SampleImages, SweepData

__all__ = ["HypothesisResult", "SampleImages", "SweepData", "aggregate", "compare", "evaluate",
           "evaluate_all", "format_results", "load_artifacts", "load_sweep", "results_table",
           "sweep_results", "t_interval", "welch", "write_report"]
