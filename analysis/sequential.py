"""The decision engine: a two-part test, group-sequential boundaries, three outcomes.

Why two parts (see `python -m analysis.simulate` for the figures): the tiny CNNs are bimodal (a
seed learns, or loses one or more classes). A test on means treats a collapsed seed as a huge
outlier and loses almost all power; a rank-sum test over all seeds dilutes a difference among the
seeds that learned with the learned-vs-collapsed pairs. The two-part test asks both questions:

- how often each side learns (learned k/n, Fisher's exact test), and
- how well the seeds that learned do (Welch's t on those seeds only: within the learned mode the
  spread is small and unimodal; an exact rank-sum variant, `shift`, is kept for comparison),

each at half the look's level (Bonferroni over the parts). One side (threshold and chance
claims): the median with the order-statistic (sign-test) interval, exact for any distribution.

Looks: Lan-DeMets alpha spending (O'Brien-Fleming type by default, Pocock available) over the
information fractions n_k / n_max, boundaries by recursive numerical integration. Each look has
one one-sided level a_k; the learned-seed interval is shown at 1 - a_k (each tail a_k / 2), the
level the verdict uses: it excludes 0 -> different (which way); inside +-margin with no
difference in how often the sides learn -> equivalent (two one-sided tests: the futility bound,
a null stops early); else inconclusive, cannot exclude +-max|bound|.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from analysis import dist as D

# imported on first use: the results table needs only median_interval and clopper_pearson (analysis.dist)
stats, optimize = D.lazy_module("scipy.stats"), D.lazy_module("scipy.optimize")

ALPHA = 0.05  # two-sided: a false "different" at most alpha, a false "equivalent" at most alpha / 2
SPENDING = ("obf", "pocock")
POWER = 0.8


# -- alpha spending and boundaries ------------------------------------------------------------
def spent(t: float, alpha: float, kind: str = "obf") -> float:
    """Two-sided alpha spent by information fraction t (Lan-DeMets)."""
    t = min(max(t, 0.0), 1.0)
    if t <= 0:
        return 0.0
    if kind == "obf":
        return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(t)))
    if kind == "pocock":
        return float(alpha * math.log(1 + (math.e - 1) * t))
    raise ValueError(f"spending must be one of {SPENDING}, got {kind!r}")


@lru_cache(maxsize=256)
def boundaries(fractions: tuple[float, ...], alpha: float = ALPHA, kind: str = "obf") -> tuple[float, ...]:
    """Two-sided z boundaries c_k with P(|Z_j| < c_j for j < k, |Z_k| >= c_k) = spent(t_k) - spent(t_k-1)
    for Z_k = S(t_k) / sqrt(t_k), S a Brownian motion (the canonical joint distribution)."""
    grid_n = 801
    out: list[float] = []
    prev_t, xs, dens = 0.0, None, None
    for t in fractions:
        target = spent(t, alpha, kind) - spent(prev_t, alpha, kind)
        if xs is None:
            c = float(stats.norm.ppf(1 - target / 2))
        else:
            sd = math.sqrt(t - prev_t)
            w = _weights(xs)

            def excess(c, xs=xs, dens=dens, w=w, sd=sd, t=t):
                b = c * math.sqrt(t)
                cross = stats.norm.cdf((-b - xs) / sd) + stats.norm.sf((b - xs) / sd)
                return float(np.sum(w * dens * cross)) - target

            c = float(optimize.brentq(excess, 0.0, 40.0)) if target > 0 and excess(0.0) > 0 else 40.0
        out.append(c)
        b = c * math.sqrt(t)
        new_xs = np.linspace(-b, b, grid_n)
        if xs is None:
            dens = stats.norm.pdf(new_xs / math.sqrt(t)) / math.sqrt(t)
        else:
            sd = math.sqrt(t - prev_t)
            kernel = stats.norm.pdf((new_xs[:, None] - xs[None, :]) / sd) / sd
            dens = kernel @ (_weights(xs) * dens)
        xs, prev_t = new_xs, t
    return tuple(out)


def _weights(xs: np.ndarray) -> np.ndarray:
    h = xs[1] - xs[0]
    w = np.full(len(xs), h)
    w[0] = w[-1] = h / 2
    return w


@dataclass(frozen=True)
class Design:
    """Looks at n_1 < n_2 < ... seeds per side; one one-sided level per look.

    A fixed (non-adaptive) sweep is a design of one look: level alpha / 2, a 95% interval.
    """

    looks: tuple[int, ...] = (3,)
    alpha: float = ALPHA
    spending: str = "obf"

    def __post_init__(self):
        if not self.looks or any(b <= a for a, b in zip(self.looks, self.looks[1:])) or self.looks[0] < 1:
            raise ValueError(f"looks must be increasing seed counts >= 1, got {self.looks}")
        if self.spending not in SPENDING:
            raise ValueError(f"spending must be one of {SPENDING}, got {self.spending!r}")

    @classmethod
    def waves(cls, first: int, max_seeds: int, step: int | None = None, alpha: float = ALPHA,
              spending: str = "obf") -> Design:
        step = step or first
        looks = list(range(first, max_seeds, step)) + [max_seeds]
        return cls(tuple(dict.fromkeys(looks)), alpha, spending)

    @property
    def k(self) -> int:
        return len(self.looks)

    @property
    def levels(self) -> tuple[float, ...]:
        """One-sided nominal level of each look (1 - Phi(c_k))."""
        if self.k == 1:
            return (self.alpha / 2,)
        fr = tuple(n / self.looks[-1] for n in self.looks)
        return tuple(float(stats.norm.sf(c)) for c in boundaries(fr, self.alpha, self.spending))

    def look_of(self, n: int) -> int:
        """0-based look reached with n seeds per side (the last look whose count n reaches)."""
        return max([i for i, m in enumerate(self.looks) if n >= m] or [0])

    def level(self, n: int) -> float:
        return self.levels[self.look_of(n)]

    def last(self, n: int) -> bool:
        return n >= self.looks[-1]

    @property
    def rule(self) -> str:
        if self.k == 1:
            return f"one look, two-sided alpha {self.alpha:g} ({100 * (1 - self.alpha):g}% intervals)"
        name = {"obf": "O'Brien-Fleming", "pocock": "Pocock"}[self.spending]
        lv = ", ".join(f"n={n}: {fmt_confidence(1 - a)}" for n, a in zip(self.looks, self.levels))
        return (f"group-sequential, {name}-type alpha spending (two-sided {self.alpha:g}) over {self.k} looks; "
                f"learned-seed interval per look: {lv}")


def fmt_confidence(c: float) -> str:
    """"97.5%", "99.99%": as many decimals as it takes not to print 100%."""
    for digits in range(1, 6):
        text = f"{100 * c:.{digits}f}"
        if float(text) < 100 or c >= 1:
            return text.rstrip("0").rstrip(".") + "%"
    return f"{100 * c:.6f}%"


# -- exact rank statistics --------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _u_counts(m: int, n: int) -> np.ndarray:
    """Number of orderings giving each Mann-Whitney U = 0..m*n (no ties)."""
    if m == 0 or n == 0:
        return np.ones(1)
    a, b = _u_counts(m - 1, n), _u_counts(m, n - 1)
    out = np.zeros(m * n + 1)
    out[n:n + len(a)] += a
    out[:len(b)] += b
    return out


def u_cdf(m: int, n: int) -> np.ndarray:
    """P(U <= u) for u = 0..m*n under exchangeability."""
    c = _u_counts(m, n)
    return np.cumsum(c) / c.sum()


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([float(v) for v in values if v == v], dtype=float)


@dataclass(frozen=True)
class Shift:
    """better - worse: Hodges-Lehmann estimate, (1 - 2 level) interval, one-sided p-values."""

    estimate: float
    low: float
    high: float
    p_greater: float  # better > worse
    p_less: float
    n: tuple[int, int]

    @property
    def p(self) -> float:
        return min(1.0, 2 * min(self.p_greater, self.p_less))


def shift(better: Sequence[float], worse: Sequence[float], level: float,
          bound: float = math.inf) -> Shift:
    """Exact WMW inference on the shift better - worse; infinite bounds are clipped to +-bound."""
    x, y = _clean(better), _clean(worse)
    m, n = len(x), len(y)
    if not m or not n:
        return Shift(math.nan, math.nan, math.nan, math.nan, math.nan, (m, n))
    d = np.sort((x[:, None] - y[None, :]).ravel())
    cdf = u_cdf(m, n)
    c = int(np.searchsorted(cdf, level * (1 + 1e-12), side="right")) - 1  # largest c with P(U <= c) <= level
    low = float(d[c]) if c >= 0 else -bound
    high = float(d[len(d) - 1 - c]) if c >= 0 else bound
    p_greater = float(cdf[int(np.sum(d <= 0))]) if np.sum(d <= 0) < len(cdf) else 1.0
    p_less = float(cdf[int(np.sum(d >= 0))]) if np.sum(d >= 0) < len(cdf) else 1.0
    return Shift(float(np.median(d)), low, high, p_greater, p_less, (m, n))


def welch_shift(better: Sequence[float], worse: Sequence[float], level: float,
                bound: float = math.inf) -> Shift:
    """Welch inference on the difference of means better - worse: the (1 - 2 level) interval
    (Welch-Satterthwaite dof) clipped to +-bound, one-sided p-values. Fewer than two values on a
    side: no interval (+-bound). Both sides constant: the difference is exact."""
    x, y = _clean(better), _clean(worse)
    m, n = len(x), len(y)
    if not m or not n:
        return Shift(math.nan, math.nan, math.nan, math.nan, math.nan, (m, n))
    d = float(x.mean() - y.mean())
    if m < 2 or n < 2:
        return Shift(d, -bound, bound, 1.0, 1.0, (m, n))
    va, vb = x.var(ddof=1) / m, y.var(ddof=1) / n
    se = math.sqrt(va + vb)
    if se <= 1e-12 * max(1.0, abs(d)):
        return Shift(d, d, d, 0.0 if d > 0 else 1.0, 0.0 if d < 0 else 1.0, (m, n))
    dof = (va + vb) ** 2 / ((va ** 2 / (m - 1) if va else 0) + (vb ** 2 / (n - 1) if vb else 0))
    half = float(stats.t.ppf(1 - level, dof)) * se
    return Shift(d, max(d - half, -bound), min(d + half, bound), float(stats.t.sf(d / se, dof)),
                 float(stats.t.cdf(d / se, dof)), (m, n))


def median_interval(values: Sequence[float], level: float, bound: tuple[float, float] = (-math.inf, math.inf)
                    ) -> tuple[float, float, float, float]:
    """(median, low, high, coverage): the order-statistic interval [x_(k), x_(n-k+1)] with the largest k
    such that P(Bin(n, 1/2) <= k - 1) <= level; coverage = 1 - 2 P(Bin <= k - 1). Without such a k
    the interval is the metric's bounds (coverage 1)."""
    x = np.sort(_clean(values))
    n = len(x)
    if not n:
        return (math.nan,) * 4
    cdf = D.binom_cdf(np.arange(n), n, 0.5)
    k = int(np.searchsorted(cdf, level * (1 + 1e-12), side="right"))  # k - 1 = last index with cdf <= level
    if k == 0:
        return float(np.median(x)), bound[0], bound[1], 1.0
    return float(np.median(x)), float(x[k - 1]), float(x[n - k]), float(1 - 2 * cdf[k - 1])


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k successes of n."""
    if n == 0:
        return math.nan, math.nan
    a = 1 - confidence
    low = 0.0 if k == 0 else D.beta_ppf(a / 2, k, n - k + 1)
    high = 1.0 if k == n else D.beta_ppf(1 - a / 2, k + 1, n - k)
    return low, high


# -- the three outcomes and power advice -------------------------------------------------------
def outcome(low: float, high: float, margin: float | None) -> str:
    """"greater"/"less" (the interval excludes 0), "equivalent" (inside +-margin), else "inconclusive"."""
    if low != low or high != high:
        return "inconclusive"
    if low > 0:
        return "greater"
    if high < 0:
        return "less"
    if margin is not None and -margin < low and high < margin:
        return "equivalent"
    return "inconclusive"


def cannot_exclude(low: float, high: float, centre: float = 0.0) -> float:
    """The X of "cannot exclude +-X": the interval's farthest point from `centre`."""
    if low != low or high != high:
        return math.nan
    return float(max(abs(low - centre), abs(high - centre)))


def spread(*sides: Sequence[float]) -> float:
    """Pooled standard deviation of the sides (collapsed seeds included: the mixture's spread)."""
    parts = [_clean(s) for s in sides]
    dof = sum(len(p) - 1 for p in parts if len(p) > 1)
    if dof <= 0:
        return math.nan
    return math.sqrt(sum(((p - p.mean()) ** 2).sum() for p in parts if len(p) > 1) / dof)


def seeds_needed(effect: float, sd: float, margin: float | None, level: float, power: float = POWER,
                 cap: int = 10_000) -> int | None:
    """Seeds per side for `power` to decide at one-sided `level`: to show a difference of `effect`, or
    (when `margin` is set and |effect| < margin) to show equivalence, whichever needs fewer. Normal
    approximation, inflated by 3/pi for the rank test's efficiency; None when neither is reachable."""
    if sd != sd or effect != effect:
        return None
    if sd == 0:
        return 2
    za, zb = stats.norm.ppf(1 - level), stats.norm.ppf(power)
    need = []
    if abs(effect) > 0:
        need.append(2 * ((za + zb) * sd / abs(effect)) ** 2 * math.pi / 3)
    if margin is not None and abs(effect) < margin:
        zb2 = stats.norm.ppf(1 - (1 - power) / 2) if effect == 0 else zb
        need.append(2 * ((za + zb2) * sd / (margin - abs(effect))) ** 2 * math.pi / 3)
    if not need:
        return None
    n = math.ceil(min(need))
    return max(n, 2) if n <= cap else None


REALISTIC = 100  # seeds per cell: a figure beyond this is no advice; the report says no realistic number decides


def sign_test_seeds(p: float, level: float, power: float = POWER) -> float:
    """Seeds for a one-sided sign test at `level` to succeed with `power` when each seed lands on the
    claimed side of the reference with probability `p` (normal approximation to Bin(n, p) against
    Bin(n, 1/2): sqrt(n) (p - 1/2) = z_level / 2 + z_power sqrt(p (1 - p))). inf when p <= 1/2: the
    median is not on that side, and no number of seeds shows it is."""
    if p != p or p <= 0.5:
        return math.inf
    za, zb = stats.norm.ppf(1 - level), stats.norm.ppf(power)
    return ((za / 2 + zb * math.sqrt(p * (1 - p))) / (p - 0.5)) ** 2


def one_sample_seeds(routes: Sequence[Sequence[float]], level: float, power: float = POWER) -> int | None:
    """Seeds for a threshold or chance claim to be decided: each route (one way to a verdict) is a list
    of sign tests that must all succeed, given by the share of seeds on the claimed side of each
    reference; the cheapest route wins. Never below `fewest_seeds` (the exact test's floor). None
    when no route is in reach within REALISTIC seeds (the median sits on a reference)."""
    need = min((max(sign_test_seeds(p, level, power) for p in route) for route in routes if route), default=math.inf)
    if need > REALISTIC:
        return None
    return max(math.ceil(need), fewest_seeds(level, True))


def fewest_seeds(level: float, one_sample: bool = False) -> int:
    """The fewest seeds per side with which the exact test can reach `level` at all (complete
    separation for the rank-sum test, every seed on one side for the sign test)."""
    n = 1
    while (0.5 ** n if one_sample else 1 / math.comb(2 * n, n)) > level:
        n += 1
    return n


def rate_p(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """One-sided Fisher exact p-values that side a learns more often / less often than side b."""
    if not n_a or not n_b:
        return math.nan, math.nan
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    return (float(stats.fisher_exact(table, alternative="greater").pvalue),
            float(stats.fisher_exact(table, alternative="less").pvalue))


@dataclass(frozen=True)
class Decision:
    """A two-sided comparison at one look: the outcome, its interval and what it would take.

    Two parts: how often each side learns (`rate_p`, Fisher's exact test) and how well the seeds
    that learned do (`welch_shift`, or the exact rank-sum `shift`, on those seeds only); each part
    at half the look's level (Bonferroni), so the interval shown is the learned-seed difference at
    1 - level.
    """

    outcome: str  # "greater", "less", "equivalent", "inconclusive" ("mixed": the parts disagree)
    shift: Shift  # difference of the seeds that learned
    level: float  # one-sided level of this look, split over the two parts
    look: int  # 0-based
    cannot_exclude: float
    seeds_needed: int | None
    futile: bool  # no decision is in reach by the design's last look: stop adding seeds
    rate: tuple[float, float] = (math.nan, math.nan)  # Fisher p: better learns more / less often
    learned: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))  # (k, n) per side
    mixed: bool = False

    @property
    def part_level(self) -> float:
        return self.level / 2

    @property
    def confidence(self) -> float:
        return 1 - 2 * self.part_level

    @property
    def p(self) -> float:
        """Two-sided p of the two-part test (Bonferroni over the parts)."""
        ps = [self.shift.p_greater, self.shift.p_less, *self.rate]
        finite = [v for v in ps if v == v]
        return min(1.0, 4 * min(finite)) if finite else math.nan


def decide(better: Sequence[float], worse: Sequence[float], design: Design, margin: float | None,
           bound: float = math.inf, learned_better: Sequence[bool] | None = None,
           learned_worse: Sequence[bool] | None = None, test: str = "welch") -> Decision:
    """One look's two-part decision on better vs worse (seeds per side = the smaller side).

    `learned_*`: per seed, whether it learned every class (None: every seed did).
    """
    b, w = _clean(better), _clean(worse)
    lb = np.ones(len(b), bool) if learned_better is None else np.asarray(learned_better, bool)[:len(b)]
    lw = np.ones(len(w), bool) if learned_worse is None else np.asarray(learned_worse, bool)[:len(w)]
    n = min(len(b), len(w))
    look = design.look_of(n)
    level = design.levels[look]
    part = level / 2
    s = (welch_shift if test == "welch" else shift)(b[lb], w[lw], part, bound)
    if not lb.any() or not lw.any():
        s = Shift(s.estimate, -bound, bound, 1.0, 1.0, s.n)
    rate = rate_p(int(lb.sum()), len(b), int(lw.sum()), len(w))
    ways = set()
    if s.low > 0 or rate[0] <= part:
        ways.add("greater")
    if s.high < 0 or rate[1] <= part:
        ways.add("less")
    if len(ways) == 1:
        out = ways.pop()
    elif not ways and margin is not None and -margin < s.low and s.high < margin:
        out = "equivalent"  # the learned seeds within +-margin, and no difference in how often they learn
    else:
        out = "inconclusive"
    need, futile = None, False
    if out == "inconclusive":
        pooled = spread(b[lb], w[lw])
        need = seeds_needed(s.estimate, pooled, margin, design.levels[-1] / 2)
        need = None if need is None else max(need, fewest_seeds(design.levels[-1] / 2))
        # Non-binding futility: from the second look on, stop when the power-based need is past the
        # last look. Stopping never adds a decision, so it cannot raise either error rate.
        futile = design.k > 1 and look >= 1 and (need is None or need > design.looks[-1])
    return Decision(out, s, level, look, cannot_exclude(s.low, s.high), need, futile, rate,
                    ((int(lb.sum()), len(b)), (int(lw.sum()), len(w))), mixed=len(ways) == 2)


def go_on(d: Decision, n: int, design: Design) -> bool:
    """Whether the cell behind decision `d` gets the next wave of seeds."""
    return d.outcome == "inconclusive" and not d.futile and not design.last(n)
