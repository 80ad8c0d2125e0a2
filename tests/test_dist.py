"""analysis.dist gives scipy.stats' numbers to the last bit, without importing scipy.stats (the
results table's intervals: t quantiles, the percentile bootstrap of a mean, Clopper-Pearson bounds,
the order-statistic interval of a median)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis import dist as D
from analysis import sequential as Q
from analysis import stats as ST

ROOT = Path(__file__).resolve().parents[1]


def test_t_quantiles_are_scipy_stats():
    dfs = [*range(1, 120), 1.5, 2.7, 3.3, 17.25, 250.5, 1e6]
    qs = [0.5, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.025, 0.05, 0.1 + 1e-9]
    got = [(D.t_ppf(q, df), float(stats.t.ppf(q, df))) for df in dfs for q in qs]
    assert [a for a, _ in got] == [b for _, b in got]


@pytest.mark.parametrize("q, df", [(0.0, 3), (1.0, 3), (0.5, 0), (0.5, -1), (1.5, 3)])
def test_t_quantiles_outside_the_checked_inputs_are_scipy_stats_own(q, df):
    np.testing.assert_equal(D.t_ppf(q, df), float(stats.t.ppf(q, df)))


def test_clopper_pearson_bounds_are_scipy_stats():
    got, want = [], []
    for n in range(1, 80):
        for k in range(n + 1):
            for conf in (0.95, 0.9, 0.99):
                a = 1 - conf
                if k:
                    got.append(D.beta_ppf(a / 2, k, n - k + 1))
                    want.append(float(stats.beta.ppf(a / 2, k, n - k + 1)))
                if k < n:
                    got.append(D.beta_ppf(1 - a / 2, k + 1, n - k))
                    want.append(float(stats.beta.ppf(1 - a / 2, k + 1, n - k)))
    assert got == want


def test_binomial_cdf_is_scipy_stats():
    for n in range(1, 300):
        for p in (0.5, 0.3, 0.9):
            k = np.arange(n + 1)
            assert D.binom_cdf(k, n, p).tolist() == stats.binom.cdf(k, n, p).tolist(), (n, p)
    np.testing.assert_equal(D.binom_cdf(np.arange(-1, 3), 2, 0.5), stats.binom.cdf(np.arange(-1, 3), 2, 0.5))


def _samples():
    rng = np.random.default_rng(7)
    for i in range(120):
        n = int(rng.integers(2, 30))
        kind = i % 4
        if kind == 0:
            yield rng.uniform(size=n)
        elif kind == 1:
            yield np.round(rng.uniform(size=n), 2)  # ties, as accuracies on a small validation set
        elif kind == 2:
            yield rng.choice([1 / 3, 0.95, 0.97, 0.99], size=n)  # bimodal: collapsed and learned seeds
        else:
            yield rng.normal(50, 10, size=n)


@pytest.mark.parametrize("confidence, resamples, seed", [(0.95, 9999, 12345), (0.9, 999, 1), (0.99, 2000, 7)])
def test_the_bootstrap_interval_is_scipy_stats_bootstrap(confidence, resamples, seed):
    for x in _samples():
        res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples,
                              method="percentile", random_state=np.random.RandomState(seed))
        want = (float(res.confidence_interval.low), float(res.confidence_interval.high))
        assert D.bootstrap_mean(x, confidence, resamples, seed) == want, x


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_data_go_to_scipy_stats():
    x = np.array([0.5, np.inf, 0.7])
    res = stats.bootstrap((x,), np.mean, n_resamples=999, method="percentile",
                          random_state=np.random.RandomState(3))
    np.testing.assert_equal(D.bootstrap_mean(x, 0.95, 999, 3),
                            (float(res.confidence_interval.low), float(res.confidence_interval.high)))


def test_the_table_intervals_are_unchanged():
    """What the results table prints, through analysis.dist: the values scipy.stats gives."""
    for x in _samples():
        mean, low, high = ST.bootstrap_interval(x, None)
        if len(x) > 2 and np.ptp(x) > 0:
            res = stats.bootstrap((x,), np.mean, confidence_level=ST.CONFIDENCE, n_resamples=ST.RESAMPLES,
                                  method=ST.METHOD, random_state=np.random.RandomState(ST.RANDOM_STATE))
            assert (low, high) == (float(res.confidence_interval.low), float(res.confidence_interval.high))
        elif len(x) == 2:
            half = float(stats.t.ppf(0.975, 1)) * float(x.std(ddof=1)) / np.sqrt(2)
            assert (low, high) == (mean - half, mean + half)
    for n in range(1, 40):
        x = np.linspace(0.1, 0.9, n)
        cdf = stats.binom.cdf(np.arange(n), n, 0.5)
        k = int(np.searchsorted(cdf, 0.025 * (1 + 1e-12), side="right"))
        want = (float(np.median(x)), *(
            (float(x[k - 1]), float(x[n - k]), float(1 - 2 * cdf[k - 1])) if k else (0.0, 1.0, 1.0)))
        assert Q.median_interval(x, 0.025, (0.0, 1.0)) == want
        a = 1 - 0.95
        for k in range(n + 1):
            low = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
            high = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
            assert Q.clopper_pearson(k, n) == (low, high)


def test_the_intervals_need_no_scipy_stats():
    """In a fresh interpreter: the table's statistics import neither scipy.stats nor scipy.optimize,
    and the functions that need them still get them (lazily)."""
    probe = ("import sys; import numpy as np\n"
             "from analysis import results, side, sequential as Q, stats as ST, aggregate as A\n"
             "x = np.array([0.5, 0.6, 0.9, 0.35])\n"
             "ST.bootstrap_interval(x); A.t_interval(x); Q.median_interval(x, 0.025); Q.clopper_pearson(2, 4)\n"
             "before = sorted(m for m in sys.modules if m.startswith(('scipy.stats', 'scipy.optimize')))\n"
             "A.welch(x, x + 0.1); Q.spent(0.5, 0.05)\n"
             "print(before, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[] True", out.stderr[-2000:]
