"""Statistics over seeds: per-cell mean, std, median and 95% interval; Welch t-tests between models.

Accuracies (bounded to [0, 1], often bimodal) get the bootstrap interval of analysis.stats;
other metrics (loss, time, counts) the t-interval.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import dist as D
from core.errors import ConfigError
from core import store_schema as S

CONFIDENCE = 0.95
STATS = ("mean", "std", "ci_low", "ci_high", "median")


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof=1) and the two-sided t-interval of the mean.

    Returns:
        (mean, std, low, high); std and the bounds are NaN with fewer than two values, and the
        interval collapses to the mean when every value is equal.
    """
    x = np.asarray([v for v in values if v == v], dtype=float)  # NaN = not logged: skip
    if len(x) == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):  # equal values up to float rounding: no spread
        std = 0.0
    half = D.t_ppf(0.5 + confidence / 2, len(x) - 1) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


def group_cells(df: pd.DataFrame, by: Sequence[str]):
    """Iterate (key tuple, rows) over cells; one cell of everything when `by` is empty."""
    # dropna=False: a key that applies to one pairing only (kernel_size) is NaN for the others.
    return df.groupby(list(by), dropna=False, sort=False) if by else [((), df)]


def interval(values, metric: str) -> tuple[float, float, float, float]:
    """(mean, std, low, high): bootstrap interval bounded to [0, 1] for accuracies, t-interval else."""
    from analysis.stats import bootstrap_interval
    from analysis.style import is_accuracy

    mean, std, low, high = t_interval(values)
    if is_accuracy(metric):
        _, low, high = bootstrap_interval(values, (0.0, 1.0))
    return mean, std, low, high


def aggregate(runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per cell: the cell's keys, n, and <metric>_{mean,std,ci_low,ci_high,median}.

    The interval is `interval`'s: bootstrap (bounded) for accuracies, t-interval otherwise.

    Args:
        runs: one row per trial; only rows with status_reason "completed" count (if the
            column exists).
        by: cell keys, e.g. ["pairing", "data_per_class"].
        metrics: metric columns to summarise; missing ones are skipped.

    Returns:
        DataFrame sorted by the cell keys.
    """
    missing = [k for k in by if k not in runs.columns]
    if missing:
        raise ConfigError(f"cannot group runs by {missing}: not a column; columns: {sorted(runs.columns)}")
    if S.TAG_STATUS_REASON in runs:
        runs = runs[runs[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED]
    metrics = [m for m in metrics if m in runs.columns]
    rows = []
    for key, group in group_cells(runs, by):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n"] = len(group)
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce")
            mean, std, low, high = interval(values, m)
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_ci_low": low, f"{m}_ci_high": high,
                        f"{m}_median": float(values.median()) if values.notna().any() else math.nan})
        rows.append(row)
    cols = list(by) + ["n"] + [f"{m}_{s}" for m in metrics for s in STATS]
    return sort_cells(pd.DataFrame(rows, columns=cols), by)


def sort_cells(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sort by cell keys, numbers numerically, with mixed or missing values last."""
    if df.empty or not by:
        return df.reset_index(drop=True)
    order = sorted(range(len(df)), key=lambda i: tuple(sort_key(df.iloc[i][k]) for k in by))
    return df.iloc[order].reset_index(drop=True)


def sort_key(v):
    """Order numbers numerically, then strings, then missing values."""
    if v is None or (isinstance(v, float) and v != v):
        return (2, 0, "")
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0, str(v))


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of a against b (two-sided)."""

    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    t: float
    p: float


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """`scipy.stats.ttest_ind(a, b, equal_var=False)`, made total.

    With fewer than two values on a side the p-value is NaN (no test). When both sides have
    zero variance the t statistic is infinite, so p is 0 if the means differ and 1 if not
    (scipy returns NaN there, which would hide a clean separation of deterministic runs).
    """
    x = np.asarray([v for v in a if v == v], float)
    y = np.asarray([v for v in b if v == v], float)
    ma = float(x.mean()) if len(x) else math.nan
    mb = float(y.mean()) if len(y) else math.nan
    if len(x) < 2 or len(y) < 2:
        return Welch(ma, mb, len(x), len(y), math.nan, math.nan)
    if np.ptp(x) <= 1e-12 * max(1.0, abs(ma)) and np.ptp(y) <= 1e-12 * max(1.0, abs(mb)):
        same = ma == mb
        return Welch(ma, mb, len(x), len(y), 0.0 if same else math.copysign(math.inf, ma - mb),
                     1.0 if same else 0.0)
    from scipy import stats

    with warnings.catch_warnings():  # one side with identical values makes scipy warn, not fail
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(x, y, equal_var=False)
    return Welch(ma, mb, len(x), len(y), float(res.statistic), float(res.pvalue))


def compare(runs: pd.DataFrame, a: str, b: str, by: Sequence[str], metric: str = "val_acc",
            column: str = "pairing") -> pd.DataFrame:
    """Welch t-test of `a` against `b` (values of `column`) in every cell of the other keys.

    Returns:
        one row per cell with both sides: the keys in `by`, mean_a, mean_b, n_a, n_b, t, p.
    """
    if S.TAG_STATUS_REASON in runs:
        runs = runs[runs[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED]
    by = [k for k in by if k != column]
    rows = []
    for key, group in group_cells(runs, by):
        key = key if isinstance(key, tuple) else (key,)
        side_a = pd.to_numeric(group.loc[group[column] == a, metric], errors="coerce")
        side_b = pd.to_numeric(group.loc[group[column] == b, metric], errors="coerce")
        if side_a.empty or side_b.empty:
            continue
        w = welch(side_a, side_b)
        rows.append({**dict(zip(by, key)), "mean_a": w.mean_a, "mean_b": w.mean_b,
                     "n_a": w.n_a, "n_b": w.n_b, "t": w.t, "p": w.p})
    return sort_cells(pd.DataFrame(rows, columns=list(by) + ["mean_a", "mean_b", "n_a", "n_b", "t", "p"]), by)
