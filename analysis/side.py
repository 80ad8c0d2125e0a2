"""One side of a comparison: mean with its interval, and collapse as an outcome (learned k/n).

A seed "learned" when it lost no class (`classes_lost` == 0, logged by every trial from its
confusion matrix: a class is lost when its recall is at most half a guesser's). Runs logged before
that metric existed fall back to accuracy: learned when above chance + COLLAPSE_MARGIN.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import sequential as Q
from analysis import stats as ST
from analysis.style import fmt_value, is_accuracy
from core import store_schema as S

LEARNED_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Side:
    """Mean [interval], median, how many seeds learned (k/n, Clopper-Pearson) and how well they did."""

    mean: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    median: float = math.nan
    collapsed: float = math.nan  # seeds that did not learn (NaN: unknown)
    learned: int | None = None  # seeds that learned every class (None: unknown)
    learned_low: float = math.nan  # Clopper-Pearson interval of the learned rate
    learned_high: float = math.nan
    learned_median: tuple[float, float, float, float] = (math.nan,) * 4  # median, low, high, coverage

    def learned_text(self) -> str:
        """"learned 2/3 [9-99%]" (exact 95% interval of the rate)."""
        if self.learned is None or not self.n:
            return ""
        return (f"learned {self.learned}/{self.n} [{100 * self.learned_low:.0f}-"
                f"{100 * self.learned_high:.0f}%]")

    def text(self, metric: str) -> str:
        """"86.9% [66.7, 97.3], median 95.0%, learned 2/3 [9-99%], learned seeds median 96.0% [95.0, 97.0]"."""
        if self.mean != self.mean:
            return "n/a"
        acc = is_accuracy(metric)
        f = (lambda v: f"{100 * v:.1f}") if acc else (lambda v: f"{v:.4g}")
        out = fmt_value(metric, self.mean)
        out += f" [{f(self.low)}, {f(self.high)}]" if self.low == self.low else " [n/a]"
        if self.n >= 3:
            out += f", median {fmt_value(metric, self.median)}"
        if self.learned is not None:
            out += ", " + self.learned_text()
            med, low, high, cover = self.learned_median
            if self.learned < self.n and med == med:
                ci = f" [{f(low)}, {f(high)}]" if cover < 1 else ""
                level = f" ({100 * cover:.0f}%)" if 0 < cover < 0.949 else ""
                out += f", learned seeds median {fmt_value(metric, med)}{ci}{level}"
        elif self.collapsed == self.collapsed and self.collapsed > 0:
            out += f", {int(self.collapsed)} of {self.n} at chance"
        return out


def _count(n) -> int | None:
    return int(n) if isinstance(n, numbers.Real) and n == n and not isinstance(n, (bool, np.bool_)) else None


def num_classes(runs: pd.DataFrame) -> int | None:
    """Classes of the task the runs solve: the num_classes setting, else the `n_classes` tag every
    trial logs from its dataset (a user's dataset too), else len(class_type), else the dataset's
    (stores written before that tag)."""
    if runs.empty:
        return None
    row = runs.iloc[0]
    for key in ("num_classes", S.TAG_N_CLASSES):  # numpy ints too
        if (n := _count(row.get(key))) is not None:
            return n
    ct = row.get("class_type")
    if isinstance(ct, (tuple, list)):
        return len(ct)
    dataset = row.get("dataset")
    if not isinstance(dataset, str) and isinstance(row.get("pairing"), str):
        dataset = row["pairing"].split("/")[-1]
    return ST.DATASET_CLASSES.get(dataset) if isinstance(dataset, str) else None


def learned_flags(runs: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Per run, whether it learned every class: classes_lost == 0 where logged, else (accuracies
    only) above chance + COLLAPSE_MARGIN; None when neither is known."""
    if runs.empty:
        return np.zeros(0, bool)
    lost = pd.to_numeric(runs[S.METRIC_CLASSES_LOST], errors="coerce") if S.METRIC_CLASSES_LOST in runs else None
    fallback = None
    limit = ST.collapse_threshold(num_classes(runs))
    if is_accuracy(metric) and metric in runs and limit == limit:
        acc = pd.to_numeric(runs[metric], errors="coerce")
        fallback = (acc > limit + 1e-12).to_numpy()
    if lost is None or lost.isna().all():
        return fallback
    flags = (lost == 0).to_numpy()
    if fallback is not None:
        flags = np.where(lost.isna().to_numpy(), fallback, flags)
    return flags


def summarise(runs: pd.DataFrame, metric: str, intervals: bool = True) -> Side:
    """A Side from one side's runs (bootstrap interval bounded to [0, 1] for accuracies)."""
    values = pd.to_numeric(runs[metric], errors="coerce") if metric in runs else pd.Series(dtype=float)
    keep = values.notna().to_numpy()
    v = values[keep]
    acc = is_accuracy(metric)
    if intervals:
        mean, low, high = ST.bootstrap_interval(v, (0.0, 1.0) if acc else None)
    else:
        mean, low, high = (float(v.mean()) if len(v) else math.nan), math.nan, math.nan
    flags = learned_flags(runs, metric)
    if flags is None or not len(v):
        collapsed = ST.collapsed(v, num_classes(runs)) if acc else math.nan
        return Side(mean, low, high, len(v), ST.median(v), collapsed)
    flags = flags[keep]
    k = int(flags.sum())
    cp = Q.clopper_pearson(k, len(v), LEARNED_CONFIDENCE)
    med = Q.median_interval(v.to_numpy()[flags], (1 - LEARNED_CONFIDENCE) / 2,
                            (0.0, 1.0) if acc else (-math.inf, math.inf)) if k else (math.nan,) * 4
    return Side(mean, low, high, len(v), ST.median(v), float(len(v) - k), k, *cp, med)
