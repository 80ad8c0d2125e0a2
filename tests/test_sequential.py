"""The decision engine (analysis.sequential) against scipy and by seeded simulation (analysis.simulate)."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis import sequential as Q
from analysis import simulate as M


def brownian_crossing(fractions, bounds, paths=200_000, seed=0) -> float:
    rng = np.random.default_rng(seed)
    t = np.asarray(fractions)
    steps = rng.normal(size=(paths, len(t))) * np.sqrt(np.diff(np.concatenate([[0.0], t])))
    z = np.cumsum(steps, axis=1) / np.sqrt(t)
    return float((np.abs(z) >= np.asarray(bounds)).any(axis=1).mean())


@pytest.mark.parametrize("kind", Q.SPENDING)
def test_boundaries_spend_exactly_alpha(kind):
    fr = (0.25, 0.5, 0.75, 1.0)
    c = Q.boundaries(fr, 0.05, kind)
    assert brownian_crossing(fr, c) == pytest.approx(0.05, abs=0.002)  # 200k paths: 3 SE ~ 0.0015
    # each look spends its share: the first look alone
    assert 2 * sps.norm.sf(c[0]) == pytest.approx(Q.spent(0.25, 0.05, kind))
    if kind == "obf":
        assert c[0] > c[1] > c[2] > c[3] > 1.96  # strict early, near the fixed-sample value at the end
    else:
        assert max(c) - min(c) < 0.03 and c[0] == pytest.approx(2.368, abs=0.005)  # Lan-DeMets Pocock


def test_one_look_design_is_the_fixed_test():
    d = Q.Design()
    assert d.levels == (0.025,) and d.look_of(3) == 0 and d.last(3)
    w = Q.Design.waves(3, 10, 3)
    assert w.looks == (3, 6, 9, 10) and w.look_of(8) == 1 and w.look_of(12) == 3
    with pytest.raises(ValueError):
        Q.Design((6, 3))


def test_exact_rank_sum_matches_scipy_and_its_interval_agrees_with_its_p():
    rng = np.random.default_rng(3)
    for m, n in ((4, 6), (7, 5), (9, 9)):
        x, y = rng.normal(0.3, 1, m), rng.normal(0, 1, n)
        s = Q.shift(x, y, 0.025)
        assert s.p_greater == pytest.approx(sps.mannwhitneyu(x, y, alternative="greater", method="exact").pvalue)
        assert s.p_less == pytest.approx(sps.mannwhitneyu(x, y, alternative="less", method="exact").pvalue)
        assert (s.low > 0) == (s.p_greater <= 0.025) and (s.high < 0) == (s.p_less <= 0.025)
    three = Q.shift([0.9, 0.91, 0.92], [0.6, 0.61, 0.62], 0.025, bound=1.0)
    assert (three.low, three.high) == (-1.0, 1.0) and three.p_greater == pytest.approx(1 / 20)


def test_welch_part_matches_scipy():
    x, y = [0.91, 0.95, 0.93, 0.97], [0.88, 0.9, 0.86]
    s = Q.welch_shift(x, y, 0.025)
    assert s.p_greater == pytest.approx(sps.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue)
    ci = sps.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert (s.low, s.high) == pytest.approx((ci.low, ci.high))
    exact = Q.welch_shift([0.9] * 3, [0.8] * 3, 0.025)
    assert (exact.estimate, exact.low, exact.high) == pytest.approx((0.1, 0.1, 0.1))


def test_median_interval_and_clopper_pearson():
    med, low, high, cover = Q.median_interval([5, 1, 4, 2, 3, 6], 0.025)
    assert (med, low, high) == (3.5, 1, 6) and cover == pytest.approx(1 - 2 / 64)
    assert Q.median_interval([1, 2, 3], 0.025, (0, 1))[1:] == (0, 1, 1.0)  # no exact interval at 3 seeds
    ci = sps.binomtest(2, 3).proportion_ci(0.95, method="exact")
    assert Q.clopper_pearson(2, 3) == pytest.approx((ci.low, ci.high))
    assert Q.clopper_pearson(3, 3)[1] == 1.0 and Q.clopper_pearson(0, 3)[0] == 0.0


def test_two_part_decisions_and_outcomes():
    d = Q.Design()
    learned = Q.decide([0.95, 0.96, 0.97, 0.96], [0.6, 0.61, 0.62, 0.6], d, 0.05, 1.0)
    assert learned.outcome == "greater" and learned.shift.low > 0
    # same learned accuracy, one side loses a class in 6 of 8 seeds: only the rate part decides it
    rate = Q.decide([0.95] * 8, [0.95, 0.96, 0.66, 0.66, 0.66, 0.66, 0.66, 0.66], d, 0.05, 1.0,
                    [True] * 8, [True, True] + [False] * 6)
    assert rate.outcome == "greater" and rate.learned == ((8, 8), (2, 8)) and rate.rate[0] < 0.0125
    same = Q.decide([0.95, 0.96, 0.955, 0.96, 0.95], [0.955, 0.95, 0.96, 0.955, 0.96], d, 0.05, 1.0)
    assert same.outcome == "equivalent" and -0.05 < same.shift.low and same.shift.high < 0.05
    wide = Q.decide([0.5, 0.9, 0.7], [0.6, 0.95, 0.55], d, 0.05, 1.0)
    assert wide.outcome == "inconclusive" and wide.cannot_exclude == max(abs(wide.shift.low), abs(wide.shift.high))
    assert wide.seeds_needed is None or wide.seeds_needed > 3
    assert Q.outcome(-0.01, 0.2, None) == "inconclusive" and Q.outcome(0.01, 0.2, None) == "greater"


def test_seeds_needed_grows_as_the_effect_shrinks():
    big, small = Q.seeds_needed(0.2, 0.1, None, 0.0125), Q.seeds_needed(0.05, 0.1, None, 0.0125)
    assert big < small and small == pytest.approx(big * 16, rel=0.1)
    assert Q.seeds_needed(0.0, 0.1, None, 0.0125) is None
    assert Q.fewest_seeds(0.0125) == 5 and Q.fewest_seeds(0.0125, one_sample=True) == 7



@pytest.mark.parametrize("p, pinned", [(0.6, 194), (0.75, 29), (0.875, 12)])
def test_sign_test_seeds_give_the_power_asked_for(p, pinned):
    # Issue 20: a threshold/chance claim is a one-sample sign test: seeds from its own power formula
    # (share p of seeds on the claimed side), checked against the exact binomial power at that n.
    n = math.ceil(Q.sign_test_seeds(p, 0.025))
    assert n == pinned
    k = next(k for k in range(n + 1) if sps.binom.sf(k - 1, n, 0.5) <= 0.025)  # fewest successes that reject
    assert 0.7 <= sps.binom.sf(k - 1, n, p) <= 0.9  # about 80%, up to the binomial's steps
    assert Q.sign_test_seeds(0.5, 0.025) == math.inf and Q.sign_test_seeds(0.3, 0.025) == math.inf


def test_one_sample_seeds_take_the_cheapest_route_and_refuse_absurd_figures():
    assert Q.one_sample_seeds([[0.875]], 0.025) == 12
    assert Q.one_sample_seeds([[0.875, 0.75], [0.3]], 0.025) == 29  # every test of a route must succeed
    assert Q.one_sample_seeds([[0.75], [0.875]], 0.025) == 12  # the cheaper way to a verdict
    assert Q.one_sample_seeds([[1.0]], 0.0105) == Q.fewest_seeds(0.0105, one_sample=True) == 7  # the exact floor
    # On the threshold (5 of 9 seeds meet it) or beyond REALISTIC: no figure at all.
    assert Q.one_sample_seeds([[5 / 9], [4 / 9]], 0.0105) is None
    assert Q.one_sample_seeds([[0.6]], 0.025) is None and Q.REALISTIC == 100


def test_seeds_to_show_equivalence_pinned_to_the_formula():
    # no difference, margin 5 pts, sd 10 pts, one-sided 0.0125: 2 ((z_0.9875 + z_0.9) sd / margin)^2
    # per side, inflated by pi/3 (the rank test's efficiency)
    za, zb = sps.norm.ppf(1 - 0.0125), sps.norm.ppf(0.9)
    assert Q.seeds_needed(0.0, 0.1, 0.05, 0.0125) == math.ceil(2 * ((za + zb) * 0.1 / 0.05) ** 2 * math.pi / 3) == 104


def test_cannot_exclude_is_the_farthest_end_from_the_centre():
    assert Q.cannot_exclude(0.2, 0.5, 0.3) == pytest.approx(0.2)  # a threshold at 30%: [20, 50]% reaches 20 pts past it
    assert Q.cannot_exclude(0.1, 0.35, 0.3) == pytest.approx(0.2)
    assert Q.cannot_exclude(-0.1, 0.05) == pytest.approx(0.1)


def test_welch_interval_with_two_seeds_on_a_side_matches_scipy():
    better, worse = [0.90, 0.94], [0.50, 0.56, 0.53]
    s = Q.welch_shift(better, worse, 0.025, 1.0)
    ci = sps.ttest_ind(better, worse, equal_var=False).confidence_interval(0.95)
    assert (s.low, s.high) == pytest.approx((ci.low, ci.high)) and -1.0 < s.low < s.high < 1.0
    one = Q.welch_shift([0.9], worse, 0.025, 1.0)  # one seed: no interval, the bounds
    assert (one.low, one.high) == (-1.0, 1.0)


def test_equivalent_only_when_the_whole_interval_is_inside_the_margin():
    assert Q.outcome(-0.04, 0.04, 0.05) == "equivalent"
    # reaching past -margin (or +margin) on either side: cannot claim equivalence
    assert Q.outcome(-0.2, 0.01, 0.05) == "inconclusive" and Q.outcome(-0.01, 0.2, 0.05) == "inconclusive"
    assert Q.outcome(-0.05, 0.01, 0.05) == "inconclusive" and Q.outcome(-0.01, 0.05, 0.05) == "inconclusive"
    assert Q.outcome(-0.04, 0.04, None) == "inconclusive"  # no margin declared: no equivalence verdict
    assert Q.outcome(-0.3, -0.01, 0.05) == "less" and Q.outcome(float("nan"), 0.1, 0.05) == "inconclusive"


@pytest.mark.parametrize("level", [0.05, 0.025, 0.0125, 0.01, 0.001])
def test_fewest_seeds_is_where_complete_separation_first_reaches_the_level(level):
    # Checked against scipy's exact tests: the rank-sum test with every seed of one side above
    # every seed of the other, and the sign test with every seed on one side.
    def rank_sum_p(n):
        return sps.mannwhitneyu(np.arange(n) + n, np.arange(n), alternative="greater", method="exact").pvalue

    def sign_p(n):
        return sps.binomtest(n, n, 0.5, alternative="greater").pvalue

    for p_of, one_sample in ((rank_sum_p, False), (sign_p, True)):
        n = Q.fewest_seeds(level, one_sample=one_sample)
        assert p_of(n) <= level * (1 + 1e-9)
        assert n == 1 or p_of(n - 1) > level


def test_seeds_to_show_equivalence_grow_with_the_spread_squared():
    # No difference, margin 5 pts: doubling the seeds' spread quadruples the seeds needed; an
    # effect closer to the margin needs more.
    need = [Q.seeds_needed(0.0, sd, 0.05, 0.0125) for sd in (0.05, 0.1, 0.2)]
    assert need[1] == pytest.approx(4 * need[0], rel=0.1) and need[2] == pytest.approx(4 * need[1], rel=0.05)
    assert Q.seeds_needed(0.01, 0.1, 0.05, 0.0125) > need[1]


def test_a_one_look_design_states_its_alpha_and_interval():
    assert Q.Design(alpha=0.05).rule == "one look, two-sided alpha 0.05 (95% intervals)"
    assert Q.Design(alpha=0.1).rule == "one look, two-sided alpha 0.1 (90% intervals)"

# -- the design's operating characteristics (issue 20, "done when") -----------------------------
REPS = 300
DESIGN = Q.Design.waves(3, 12)
MC = 3 * math.sqrt(0.05 * 0.95 / REPS)


@pytest.mark.parametrize("collapse", [0.0, 0.2, 0.5])
def test_false_decision_rate_under_the_null(collapse):
    arm = M.Arm(0.9, 0.03, collapse)
    res = M.operating(arm, arm, DESIGN, REPS, seed=11)
    assert res["different"] <= 0.05  # well inside: the observed rates are 0.6-1.9% at 1000 draws
    if collapse < 0.5:
        assert res["equivalent"] >= 0.15  # the equivalence outcome is reachable under a null
    assert res["seeds"] < 12  # a null stops early too


def test_false_equivalence_at_the_margin_and_power_for_twenty_points():
    at_margin = M.operating(M.Arm(0.95, 0.03), M.Arm(0.9, 0.03), DESIGN, REPS, seed=12)
    assert at_margin["equivalent"] <= 0.025 + MC
    for collapse in (0.0, 0.2):
        power = M.operating(M.Arm(0.9, 0.05, collapse), M.Arm(0.7, 0.05, collapse), DESIGN, REPS, seed=13)
        assert power["greater"] >= 0.8 and power["seeds"] <= 12


def test_the_spending_matters():
    """Every look at the full level (no spending) decides a null more often than the design."""

    class Naive(Q.Design):
        @property
        def levels(self):
            return (0.05,) * self.k

    naive = Naive(DESIGN.looks)
    arm = M.Arm(0.9, 0.08, 0.2)
    assert M.operating(arm, arm, naive, REPS, seed=5)["different"] > M.operating(arm, arm, DESIGN, REPS, seed=5)["different"]


def test_the_two_part_test_beats_means_on_bimodal_arms():
    table = M.choose(reps=200, n=12)
    row = table["learned +6 pts, 25% collapse both (means +4.5)"]
    assert row["two-part (used)"] >= 0.8 > 0.3 > row["means (Welch)"]
    assert table["null, 30% collapse both"]["two-part (used)"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200)


def test_collapse_metrics_from_a_confusion_matrix():
    from core import store_schema as S

    # three classes: the second predicted once in 10 (recall 0.1 <= 1/6: lost), the third never (lost)
    cm = [[10, 0, 0], [9, 1, 0], [4, 6, 0]]
    out = S.collapse_metrics(cm)
    assert out == {S.METRIC_MIN_CLASS_RECALL: 0.0, S.METRIC_CLASSES_LOST: 2.0}
    assert S.collapse_metrics([[5, 5], [0, 10]]) == {S.METRIC_MIN_CLASS_RECALL: 0.5, S.METRIC_CLASSES_LOST: 0.0}
    assert S.collapse_metrics([[0, 0], [0, 0]]) == {}
