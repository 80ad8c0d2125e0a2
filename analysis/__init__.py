"""From MLflow runs to seed-aggregated statistics, plots and a report.

Reads the MLflow store (and search_spaces declarations); never builds a model. Statistics and
plots take DataFrames (a SweepData), so they are testable without MLflow.

The names below are imported on first use (PEP 562), so `import analysis.results` for `sweep
results` does not pull in the report's plots and matplotlib.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "aggregate": "analysis.aggregate", "compare": "analysis.aggregate", "t_interval": "analysis.aggregate",
    "welch": "analysis.aggregate",
    "HypothesisResult": "analysis.hypotheses", "evaluate": "analysis.hypotheses", "evaluate_all": "analysis.hypotheses",
    "load_artifacts": "analysis.load", "load_sweep": "analysis.load",
    "write_report": "analysis.report",
    "format_results": "analysis.results", "results_table": "analysis.results", "sweep_results": "analysis.results",
    "SampleImages": "analysis.sweep_data", "SweepData": "analysis.sweep_data",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
