"""Statistics for bounded, possibly bimodal outcomes: bootstrap intervals, effect sizes, Holm, collapses.

Accuracies lie in [0, 1] and, for tiny CNNs, are often bimodal (most seeds learn, a few collapse
to chance). A mean ± t-interval hides that and can run past 100%. Here:

- `bootstrap_interval`: percentile bootstrap of the mean (`scipy.stats.bootstrap`, fixed
  `random_state`, `RESAMPLES` resamples), clipped to the metric's bounds. The percentile interval
  of a mean of values in [lo, hi] never leaves [lo, hi]; clipping only guards float rounding.
  With n = 2 it falls back to the t-interval clipped to the bounds (two values carry too little
  for a bootstrap: only three distinct resampled means); with n = 1 there is no interval; equal
  values give a zero-width interval.
- `diff_interval`: the difference of means (better - worse) with a two-sample bootstrap interval
  (each side resampled independently), the effect size shown beside every verdict.
- `holm`: Holm-Bonferroni adjusted p-values for the several hypotheses (x cells) of one experiment.
- `collapsed`: a seed "collapsed" when its accuracy is at most chance + COLLAPSE_MARGIN, chance
  being 1 / number of classes of its task.
- `single_seed`: in how many seeds a one-seed run would have drawn each conclusion.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis import dist as D

stats = D.lazy_module("scipy.stats")  # the two-sample bootstrap; the table's intervals need only analysis.dist

CONFIDENCE = 0.95
RESAMPLES = 9999
RANDOM_STATE = 12345  # fixed: the same data always give the same interval
METHOD = "percentile"
# A seed counts as collapsed at or below chance (1/num_classes) plus this margin (5 points).
COLLAPSE_MARGIN = 0.05
# Classes of each built-in dataset, for runs stored before trials logged `n_classes` (2026-12-05);
# num_classes, the n_classes tag and class_type win (analysis.side.num_classes).
DATASET_CLASSES = {"edges": 3, "cifar10": 10, "cifar10_features": 10, "mnist": 10}
INTERVAL_NOTE = (f"{int(CONFIDENCE * 100)}% percentile bootstrap interval of the mean over seeds "
                 f"(scipy.stats.bootstrap, {RESAMPLES} resamples, random_state={RANDOM_STATE}), "
                 "clipped to [0, 1] for accuracies; t-interval (clipped) with 2 seeds")


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([float(v) for v in values if v == v], dtype=float)  # NaN = not logged


def _equal(x: np.ndarray) -> bool:
    return len(x) > 0 and float(np.ptp(x)) <= 1e-12 * max(1.0, float(np.abs(x).max()))


def bootstrap_interval(values: Sequence[float], bounds: tuple[float, float] | None = (0.0, 1.0),
                       confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of the mean over seeds.

    Args:
        values: one value per seed (NaN entries are skipped).
        bounds: (lo, hi) the metric cannot leave (accuracy: (0, 1)); None = unbounded.
        confidence: two-sided coverage.

    Returns:
        NaN bounds with fewer than two values; (m, m, m) when every value is equal; with two
        values the t-interval clipped to `bounds`; else the percentile bootstrap clipped to `bounds`.
    """
    x = _clean(values)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    if _equal(x):
        return mean, mean, mean
    if len(x) == 2:
        half = D.t_ppf(0.5 + confidence / 2, 1) * float(x.std(ddof=1)) / math.sqrt(2)
        low, high = mean - half, mean + half
    else:  # scipy.stats.bootstrap((x,), np.mean, method=METHOD, ...) to the last bit
        low, high = D.bootstrap_mean(x, confidence, RESAMPLES, RANDOM_STATE)
    return mean, *_clip(low, high, bounds)


def _clip(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        return low, high
    return min(max(low, bounds[0]), bounds[1]), min(max(high, bounds[0]), bounds[1])


def _diff(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def diff_interval(better: Sequence[float], worse: Sequence[float], bounds: tuple[float, float] | None = (0.0, 1.0),
                  confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(difference of means, low, high): better minus worse, bootstrap over both sides.

    Each side is resampled on its own (`scipy.stats.bootstrap` with two samples, paired=False).
    Bounds of the difference are (lo - hi, hi - lo). Fewer than two values on a side: NaN
    bounds; both sides constant: a zero-width interval; a side of two values: the Welch-style
    t-interval of the difference, clipped.
    """
    a, b = _clean(better), _clean(worse)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    d = float(a.mean() - b.mean())
    dbounds = None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    if _equal(a) and _equal(b):
        return d, d, d
    if min(len(a), len(b)) == 2:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0) + (vb ** 2 / (len(b) - 1) if vb else 0))
        half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
        return d, *_clip(d - half, d + half, dbounds)
    res = stats.bootstrap((a, b), _diff, confidence_level=confidence, n_resamples=RESAMPLES, method=METHOD,
                          vectorized=True, random_state=np.random.RandomState(RANDOM_STATE))
    return d, *_clip(float(res.confidence_interval.low), float(res.confidence_interval.high), dbounds)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order; NaN stays NaN and is not counted.

    With m finite p-values sorted ascending p(1) <= ... <= p(m), the adjusted value of p(i) is
    max over j <= i of min(1, (m - j + 1) * p(j)). Rejecting where adjusted p < alpha controls
    the family-wise error rate at alpha.
    """
    p = [float(v) for v in pvalues]
    finite = sorted((v, i) for i, v in enumerate(p) if v == v)
    m = len(finite)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, (v, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * v))
        out[i] = running
    return out


def chance_level(num_classes: int | None) -> float:
    """1 / num_classes, or NaN when the number of classes is unknown (or < 2: regression)."""
    return 1.0 / num_classes if num_classes and num_classes >= 2 else math.nan


def collapse_threshold(num_classes: int | None) -> float:
    """Accuracy at or below which a seed counts as collapsed: chance + COLLAPSE_MARGIN."""
    return chance_level(num_classes) + COLLAPSE_MARGIN


def collapsed(values: Sequence[float], num_classes: int | None) -> int | float:
    """How many seeds ended at chance level (NaN when the number of classes is unknown)."""
    limit = collapse_threshold(num_classes)
    if limit != limit:
        return math.nan
    return int(sum(1 for v in _clean(values) if v <= limit + 1e-12))


def median(values: Sequence[float]) -> float:
    x = _clean(values)
    return float(np.median(x)) if len(x) else math.nan


@dataclass(frozen=True)
class SingleSeed:
    """What one-seed runs would have concluded, seed by seed (paired by seed number)."""

    wins: int  # seeds where `better` came out ahead (in the hypothesis' direction)
    losses: int  # seeds where it came out behind
    ties: int
    n: int  # seeds present on both sides

    @property
    def sentence(self) -> str:
        if not self.n:
            return "a single-seed run: no seed was run on both sides"
        return (f"a single-seed run would have said yes in {self.wins} of {self.n} seeds, no in "
                f"{self.losses}" + (f", a tie in {self.ties}" if self.ties else ""))


def single_seed(better: dict, worse: dict, mode: str = "max") -> SingleSeed:
    """Compare the two sides seed by seed.

    Args:
        better, worse: seed -> value of the metric (seeds of one side missing on the other are skipped).
        mode: "max" (higher is better) or "min".
    """
    wins = losses = ties = 0
    for seed in sorted(set(better) & set(worse)):
        b, w = float(better[seed]), float(worse[seed])
        if b != b or w != w:
            continue
        if b == w:
            ties += 1
        elif (b > w) == (mode == "max"):
            wins += 1
        else:
            losses += 1
    return SingleSeed(wins, losses, ties, wins + losses + ties)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch p-value (NaN with fewer than 2 values a side; 0/1 for constant sides)."""
    from analysis.aggregate import welch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return welch(a, b).p


BAND_RESAMPLES = 999  # per point of a curve: many points, so fewer resamples than a table's interval


def band_interval(values: Sequence[float], bounds: tuple[float, float] | None = (0.0, 1.0),
                  confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) for one point of a curve band: the same bounded percentile bootstrap as
    `bootstrap_interval` (t-interval clipped with 2 values) with BAND_RESAMPLES resamples in numpy,
    fixed random state, so a 1000-epoch curve stays fast. Never leaves `bounds`."""
    x = _clean(values)
    if len(x) < 3 or _equal(x):
        return bootstrap_interval(x, bounds, confidence)
    rng = np.random.RandomState(RANDOM_STATE)
    means = x[rng.randint(0, len(x), size=(BAND_RESAMPLES, len(x)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(x.mean()), *_clip(float(low), float(high), bounds)
