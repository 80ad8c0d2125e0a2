"""Operating characteristics of the decision engine, by seeded simulation: `python -m analysis.simulate`.

Seeds are drawn from a mixture like the tiny CNNs': with probability `collapse` a seed loses a class
(accuracy near 2/3 on three classes: N(0.62, 0.03)), else it learns (N(mu, sd)); accuracies are
clipped to [0, 1] and rounded to a 300-image test set (ties, as in real runs).

It prints (the README's figures):
1. The choice of statistic at a fixed 12 seeds per side: power of a test on means (Welch), of the
   two-part test (Fisher's exact test on how many seeds learned; Welch's t, or the exact rank-sum,
   on the accuracy of those that learned; Bonferroni over the two parts) and of the exact rank-sum
   test over all seeds, on bimodal arms; and their false-positive rate under the null.
2. The group-sequential design (`--until-decided`, default 3 seeds then +3 up to 12) with the
   two-part test: false "different" rate under the null at collapse rates 0, 20% and 50%, how often
   the null ends "equivalent" (margin 5 points), false "equivalent" at a true difference of
   exactly the margin, power for a 20-point difference, and the mean seeds spent.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis import sequential as Q

GRAIN = 300  # test-set size the accuracies are rounded to
COLLAPSED = (0.62, 0.03)
MARGIN = 0.05


def draw(rng: np.random.Generator, n: int, mu: float, sd: float, collapse: float) -> tuple[np.ndarray, np.ndarray]:
    """(accuracies, learned flags) of n seeds."""
    lost = rng.random(n) < collapse
    x = np.where(lost, rng.normal(*COLLAPSED, n), rng.normal(mu, sd, n))
    return np.round(np.clip(x, 0, 1) * GRAIN) / GRAIN, ~lost


@dataclass(frozen=True)
class Arm:
    mu: float
    sd: float = 0.03
    collapse: float = 0.0

    def __call__(self, rng, n):
        return draw(rng, n, self.mu, self.sd, self.collapse)


# -- 1. which statistic -----------------------------------------------------------------------
def p_welch(a, b, la, lb) -> float:
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 0.0 if a[0] != b[0] else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def p_two_part(a, b, la, lb) -> float:
    return Q.decide(a, b, Q.Design(), None, 1.0, la, lb, "welch").p


def p_two_part_rank(a, b, la, lb) -> float:
    return Q.decide(a, b, Q.Design(), None, 1.0, la, lb, "rank").p


def p_rank(a, b, la, lb) -> float:
    return Q.shift(a, b, 0.025).p


TESTS: dict[str, Callable] = {"means (Welch)": p_welch, "rank-sum (exact)": p_rank, "two-part, rank": p_two_part_rank,
                              "two-part (used)": p_two_part}
SCENARIOS = {
    "null, 30% collapse both": (Arm(0.93, 0.02, 0.3), Arm(0.93, 0.02, 0.3)),
    "learned +6 pts, 25% collapse both (means +4.5)": (Arm(0.95, 0.02, 0.25), Arm(0.89, 0.02, 0.25)),
    "collapse 10% vs 60%, same learned": (Arm(0.95, 0.02, 0.1), Arm(0.95, 0.02, 0.6)),
    "20-pt shift, 20% collapse both": (Arm(0.90, 0.05, 0.2), Arm(0.70, 0.05, 0.2)),
}


def choose(reps: int = 2000, n: int = 12, seed: int = 1) -> dict[str, dict[str, float]]:
    """Rejection rate at two-sided 0.05 of each test in each scenario, n seeds per side."""
    out = {}
    for name, (arm_a, arm_b) in SCENARIOS.items():
        rng = np.random.default_rng(seed)
        hits = dict.fromkeys(TESTS, 0)
        for _ in range(reps):
            (a, la), (b, lb) = arm_a(rng, n), arm_b(rng, n)
            for t, f in TESTS.items():
                hits[t] += f(a, b, la, lb) < 0.05
        out[name] = {t: h / reps for t, h in hits.items()}
    return out


# -- 2. the sequential design -----------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    outcome: str
    seeds: int  # per side, at the end
    early: bool


def sequential(rng, arm_a: Arm, arm_b: Arm, design: Q.Design, margin: float | None = MARGIN,
               test: str = "welch") -> Run:
    (a, la), (b, lb) = arm_a(rng, design.looks[-1]), arm_b(rng, design.looks[-1])
    for n in design.looks:
        d = Q.decide(a[:n], b[:n], design, margin, 1.0, la[:n], lb[:n], test)
        if not Q.go_on(d, n, design):
            return Run(d.outcome, n, n < design.looks[-1] and d.outcome != "inconclusive")
    raise AssertionError("unreachable: the last look always stops")


def operating(arm_a: Arm, arm_b: Arm, design: Q.Design, reps: int, seed: int = 7,
              margin: float | None = MARGIN, test: str = "welch") -> dict[str, float]:
    rng = np.random.default_rng(seed)
    runs = [sequential(rng, arm_a, arm_b, design, margin, test) for _ in range(reps)]
    rate = {k: sum(r.outcome == k for r in runs) / reps for k in ("greater", "less", "equivalent", "inconclusive")}
    return {**rate, "different": rate["greater"] + rate["less"], "seeds": float(np.mean([r.seeds for r in runs])),
            "early": sum(r.early for r in runs) / reps}


def design_figures(design: Q.Design, reps: int = 2000, sd: float = 0.03) -> dict[str, dict[str, float]]:
    out = {}
    for c in (0.0, 0.2, 0.5):
        out[f"null, collapse {c:.0%}"] = operating(Arm(0.9, sd, c), Arm(0.9, sd, c), design, reps)
    out["true difference = margin (5 pts)"] = operating(Arm(0.9 + MARGIN, sd), Arm(0.9, sd), design, reps)
    for c in (0.0, 0.2):
        out[f"20-pt difference, collapse {c:.0%}"] = operating(Arm(0.9, 0.05, c), Arm(0.7, 0.05, c), design, reps)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m analysis.simulate", description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--first", type=int, default=3)
    ap.add_argument("--max-seeds", type=int, default=12)
    ap.add_argument("--spending", choices=Q.SPENDING, default="obf")
    args = ap.parse_args(argv)
    print(f"1. Which statistic: rejection rate at two-sided 0.05, 12 seeds per side, {args.reps} draws")
    table = choose(args.reps)
    names = list(TESTS)
    print(f"  {'scenario':<48}" + "".join(f"{t:>17}" for t in names))
    for sc, row in table.items():
        print(f"  {sc:<48}" + "".join(f"{100 * row[t]:>16.1f}%" for t in names))
    design = Q.Design.waves(args.first, args.max_seeds, spending=args.spending)
    print(f"\n2. Sequential design: {design.rule}; margin {MARGIN * 100:.0f} pts; {args.reps} draws each")
    cols = ("different", "equivalent", "inconclusive", "early", "seeds")
    print(f"  {'scenario':<36}" + "".join(f"{c:>14}" for c in cols))
    for sc, row in design_figures(design, args.reps).items():
        print(f"  {sc:<36}" + "".join(f"{100 * row[c]:>13.1f}%" for c in cols[:-1]) + f"{row['seeds']:>14.1f}")


if __name__ == "__main__":
    main()


__all__ = ["Arm", "choose", "design_figures", "draw", "operating", "sequential", "math"]
