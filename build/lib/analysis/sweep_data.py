"""The tidy, MLflow-free form of one sweep that every statistic and plot takes."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from core.store_schema import FINAL_METRICS, HISTORY_KEYS, STATUS_COMPLETED, TAG_STATUS_REASON

COMPLETED = STATUS_COMPLETED
# Keys that never define a cell: the replicate seed and per-trial bookkeeping.
NOT_CELL_KEYS = ("seed", "model_seed", "series", "source")


@dataclass
class SampleImages:
    """A few dataset images for the sample grid.

    Attributes:
        images: (N, H, W) or (N, H, W, 3) floats in [0, 1], as the model sees them.
        labels: (N,) int class indices.
        class_names: label -> name.
        unpermuted: the same images with a pixel permutation undone (None if not permuted).
        title: e.g. "edges (data_per_class=10)".
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    unpermuted: np.ndarray | None = None
    title: str = ""


@dataclass
class SweepData:
    """One sweep (plus runs of compared experiments), as DataFrames.

    Attributes:
        parent: the parent run: run_id, name, experiment, experiment_id, tracking_uri, tags,
            params, declaration (the parsed sweep/experiment.json, or None).
        runs: one row per trial: run_id, run_name, every param (typed back), every final
            metric, every tag; plus `series` (pairing, or "pairing · experiment" for runs of a
            compared experiment) and `source` (experiment the run belongs to).
        history: long table run_id, key, step, value of the per-epoch/per-shift metrics.
        swept_keys: config keys that vary between cells (without seed).
        metrics: names of the final-metric columns of `runs`.
        params: names of the param columns of `runs`.
        kernels: run_id, initial, final (conv1 weights as arrays), for CNN runs that logged them.
        confusion: run_id, labels (list), matrix (array), for runs that logged one.
        samples: dataset images for the sample grid, when the report could build them.
    """

    parent: dict[str, Any]
    runs: pd.DataFrame
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["run_id", "key", "step", "value"]))
    swept_keys: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    kernels: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["run_id", "initial", "final"]))
    confusion: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["run_id", "labels", "matrix"]))
    samples: SampleImages | None = None

    def __post_init__(self):
        runs = self.runs.copy()
        if "run_id" not in runs:
            runs["run_id"] = [f"run{i}" for i in range(len(runs))]
        if "pairing" not in runs:
            runs["pairing"] = "unknown"
        if "series" not in runs:
            runs["series"] = runs["pairing"]
        if "source" not in runs:
            runs["source"] = self.parent.get("experiment", "")
        if not self.metrics:
            self.metrics = [c for c in runs.columns if c in HISTORY_KEYS or c in FINAL_METRICS]
        self.runs = runs.reset_index(drop=True)

    @property
    def name(self) -> str:
        return str(self.parent.get("name") or self.parent.get("experiment") or "sweep")

    @property
    def completed(self) -> pd.DataFrame:
        """Trials that ran to the end: the only ones that count as results."""
        if TAG_STATUS_REASON not in self.runs:
            return self.runs
        return self.runs[self.runs[TAG_STATUS_REASON] == COMPLETED]

    @property
    def cell_keys(self) -> list[str]:
        """Columns that define a cell for plots: series, then the other swept keys present."""
        keys = [k for k in self.swept_keys if k not in NOT_CELL_KEYS and k != "pairing"
                and k in self.runs.columns]
        return ["series"] + keys

    def history_of(self, key: str) -> pd.DataFrame:
        """History rows of metric `key` joined with the runs' series and cell keys."""
        h = self.history[self.history["key"] == key]
        cols = ["run_id", TAG_STATUS_REASON] if TAG_STATUS_REASON in self.runs else ["run_id"]
        cols += [c for c in self.cell_keys if c not in cols]
        return h.merge(self.runs[cols], on="run_id", how="inner")

    def merge(self, other: "SweepData") -> "SweepData":
        """Add the runs of a compared experiment, labelled "pairing · experiment"."""
        theirs = other.runs.copy()
        label = other.parent.get("experiment") or other.name
        theirs["series"] = theirs["pairing"].astype(str) + " · " + str(label)
        theirs["source"] = label
        keys = self.swept_keys + [k for k in other.swept_keys if k not in self.swept_keys]
        return replace(
            self, runs=pd.concat([self.runs, theirs], ignore_index=True),
            history=pd.concat([self.history, other.history], ignore_index=True),
            swept_keys=keys, metrics=sorted(set(self.metrics) | set(other.metrics)),
            params=sorted(set(self.params) | set(other.params)))




def empty_sweep(name: str, experiment: str = "") -> SweepData:
    """A sweep with no trials (analytic experiments have only computed plots)."""
    return SweepData(parent={"name": name, "experiment": experiment, "tags": {}, "params": {}},
                     runs=pd.DataFrame(columns=["run_id", "pairing", TAG_STATUS_REASON]))
