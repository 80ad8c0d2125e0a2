"""The few distribution functions the results table needs, without importing scipy.stats (about a
second of `sweep results`): each is the very function scipy.stats calls underneath, so the numbers are
the same to the last bit (tests/test_dist.py compares them with scipy.stats over grids of inputs).

- `t_ppf`: Student's t quantile, `scipy.special.stdtrit` (what `scipy.stats.t.ppf` evaluates).
- `beta_ppf`: the beta quantile, `scipy.special.betaincinv` (Clopper-Pearson bounds).
- `binom_cdf`: the binomial cdf, scipy.special's boost kernel that `scipy.stats.binom.cdf` calls.
- `bootstrap_mean`: the percentile bootstrap interval of a mean, as `scipy.stats.bootstrap(
  (x,), np.mean, method="percentile", random_state=np.random.RandomState(seed))` draws and
  interpolates it.

Outside the inputs these were checked on (a quantile level outside (0, 1), a non-positive degree of
freedom, non-finite data) they hand the call to scipy.stats itself. `lazy_module` lets a module
that needs scipy.stats elsewhere (a Welch test, a two-sample bootstrap) name it at the top and
import it on first use.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np
from scipy import special


class lazy_module:  # noqa: N801 - stands for a module
    """A module imported on the first attribute read: `stats = lazy_module("scipy.stats")`."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attr)


def t_ppf(q: float, df: float) -> float:
    """`scipy.stats.t.ppf(q, df)`."""
    if 0 < q < 1 and df > 0:
        return float(special.stdtrit(df, q))
    from scipy import stats

    return float(stats.t.ppf(q, df))


def beta_ppf(q: float, a: float, b: float) -> float:
    """`scipy.stats.beta.ppf(q, a, b)`."""
    if 0 < q < 1 and a > 0 and b > 0:
        return float(special.betaincinv(a, b, q))
    from scipy import stats

    return float(stats.beta.ppf(q, a, b))


def binom_cdf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    """`scipy.stats.binom.cdf(k, n, p)` for integer k in [0, n], n >= 1 and p in [0, 1]."""
    kernel = getattr(special._ufuncs, "_binom_cdf", None)  # the kernel binom.cdf calls (scipy >= 1.9)
    k = np.asarray(k)
    if kernel is None or n < 1 or not 0 <= p <= 1 or np.any((k < 0) | (k > n)):
        from scipy import stats

        return stats.binom.cdf(k, n, p)
    return np.asarray(kernel(np.floor(k), n, p), dtype=float)


def bootstrap_mean(x: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """(low, high): the percentile bootstrap interval of the mean of `x` (at least two values)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) < 2 or not np.all(np.isfinite(x)):
        from scipy import stats

        res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                              method="percentile", random_state=np.random.RandomState(seed))
        return float(res.confidence_interval.low), float(res.confidence_interval.high)
    # scipy.stats.bootstrap: one batch of indices rng.randint(0, n, (n_resamples, n)), the statistic
    # over the last axis, then scipy.stats.quantile (method "linear") at alpha and 1 - alpha
    rng = np.random.RandomState(seed)
    theta = np.mean(x[..., rng.randint(0, len(x), size=(n_resamples, len(x)), dtype="int64")], axis=-1)
    alpha = np.asarray((1 - confidence) / 2, dtype=theta.dtype)
    return tuple(float(v) for v in _quantile_linear(theta, np.stack((alpha, 1 - alpha))))


def _quantile_linear(values: np.ndarray, p: np.ndarray) -> np.ndarray:
    """scipy.stats.quantile(values, p) (method "linear", Hyndman-Fan 7), with its arithmetic."""
    y = np.sort(values)
    n = np.asarray(len(y), dtype=y.dtype)
    jg = p * n + (1 - p)
    j = jg // 1 - 1
    g = jg % 1
    g[j < 0] = 0
    jp1 = np.clip(jg // 1, 0.0, n - 1)
    j = np.clip(j, 0.0, n - 1)
    return (1 - g) * y[j.astype(np.int64)] + g * y[jp1.astype(np.int64)]


__all__ = ["beta_ppf", "binom_cdf", "bootstrap_mean", "lazy_module", "t_ppf"]
