"""Bounded intervals, effect sizes, Holm, collapse counts and single-seed lines on fabricated results."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats as S
from analysis.hypotheses import evaluate_all, verdict
from analysis.results import sweep_results
from analysis.sweep_data import SweepData
from search_spaces.experiment import Hypothesis

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"
# A bimodal cell like the issue's: most seeds learn, two collapse to chance (3 classes).
BIMODAL = [0.96, 0.98, 0.33, 1.0, 0.95, 0.34, 0.97, 0.99]


def scipy_percentile(*samples, statistic=np.mean):
    res = sps.bootstrap(samples, statistic, n_resamples=S.RESAMPLES, method="percentile",
                        random_state=np.random.RandomState(S.RANDOM_STATE), vectorized=len(samples) > 1)
    return res.confidence_interval.low, res.confidence_interval.high


def test_bootstrap_interval_is_scipy_percentile_and_bounded():
    mean, low, high = S.bootstrap_interval(BIMODAL)
    assert mean == pytest.approx(np.mean(BIMODAL))
    assert (low, high) == pytest.approx(scipy_percentile(np.array(BIMODAL)))
    assert 0.0 <= low < mean < high <= 1.0
    # The t-interval of the same data runs past 100%: the reason for the bootstrap.
    m, _, t_low, t_high = __import__("analysis.aggregate", fromlist=["t_interval"]).t_interval(BIMODAL[:3])
    assert t_high > 1.0
    assert S.bootstrap_interval(BIMODAL[:3])[2] <= 1.0


def test_bootstrap_interval_small_and_degenerate_samples():
    assert all(math.isnan(v) for v in S.bootstrap_interval([]))
    mean, low, high = S.bootstrap_interval([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    assert S.bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    # Two seeds: the t-interval (1 dof), clipped to [0, 1].
    mean, low, high = S.bootstrap_interval([0.9, 1.0])
    half = sps.t.ppf(0.975, 1) * np.std([0.9, 1.0], ddof=1) / math.sqrt(2)
    assert low == pytest.approx(0.95 - half) and high == 1.0
    # NaN (not logged) entries are skipped; unbounded metrics are not clipped.
    assert S.bootstrap_interval([0.9, float("nan"), 1.0])[1] == pytest.approx(0.95 - half)
    assert S.bootstrap_interval([0.9, 1.0], bounds=None)[2] == pytest.approx(0.95 + half)


def test_diff_interval_is_scipy_two_sample_bootstrap():
    mlp = [0.60, 0.66, 0.58, 0.62, 0.65, 0.61, 0.63, 0.59]
    d, low, high = S.diff_interval(BIMODAL, mlp)
    assert d == pytest.approx(np.mean(BIMODAL) - np.mean(mlp))
    expected = scipy_percentile(np.array(BIMODAL), np.array(mlp),
                                statistic=lambda a, b, axis=-1: a.mean(axis) - b.mean(axis))
    assert (low, high) == pytest.approx(expected)
    assert -1.0 <= low < d < high <= 1.0
    assert S.diff_interval([0.9, 0.9, 0.9], [0.6, 0.6, 0.6]) == pytest.approx((0.3, 0.3, 0.3))
    assert math.isnan(S.diff_interval([0.9], [0.6, 0.7])[1])


def test_holm_against_a_hand_computation():
    # m = 4 finite p-values: sorted 0.01, 0.02, 0.03, 0.04 -> x4, x3, x2, x1 = 0.04, 0.06, 0.06, 0.06
    # (0.04 * 1 = 0.04 < 0.06 is raised to the running maximum); NaN is not counted.
    adj = S.holm([0.03, 0.01, float("nan"), 0.04, 0.02])
    assert adj[0] == pytest.approx(0.06) and adj[1] == pytest.approx(0.04) and math.isnan(adj[2])
    assert adj[3] == pytest.approx(0.06) and adj[4] == pytest.approx(0.06)
    assert S.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert S.holm([0.02]) == [0.02]


def test_curve_band_is_the_95_percent_bootstrap_of_the_mean():
    # A curve's band (band_interval: fewer resamples, in numpy) is the same 95% percentile
    # bootstrap as the table's interval: close to it, not the range of all resampled means.
    seeds = [0.1, 0.5, 0.9, 0.5, 0.3, 0.7, 0.6, 0.4]
    mean, low, high = S.band_interval(seeds)
    _, t_low, t_high = S.bootstrap_interval(seeds)
    assert mean == pytest.approx(0.5)
    assert low == pytest.approx(t_low, abs=0.03) and high == pytest.approx(t_high, abs=0.03)
    assert 0.3 < low < mean < high < 0.7
    # A 99% band is wider than the 95% one, still bounded.
    _, low99, high99 = S.band_interval(seeds, confidence=0.99)
    assert 0.0 <= low99 < low and high < high99 <= 1.0


def test_collapse_counts_at_chance():
    assert S.collapse_threshold(3) == pytest.approx(1 / 3 + 0.05)
    assert S.collapsed(BIMODAL, 3) == 2
    assert S.collapsed([0.38, 0.3833, 0.3834], 3) == 2  # at most chance + 5 points counts
    assert S.collapsed([0.12, 0.16, 0.9], 10) == 1
    assert math.isnan(S.collapsed([0.3], None))


def test_single_seed_line_pairs_seeds():
    better = {10: 0.9, 11: 0.33, 12: 0.95, 13: 0.6}
    worse = {10: 0.6, 11: 0.62, 12: 0.61, 13: 0.6, 14: 0.7}
    s = S.single_seed(better, worse)
    assert (s.wins, s.losses, s.ties, s.n) == (2, 1, 1, 4)
    assert s.sentence == "a single-seed run would have said yes in 2 of 4 seeds, no in 1, a tie in 1"
    assert S.single_seed(better, worse, mode="min").wins == 1
    assert "no seed" in S.single_seed({1: 0.5}, {2: 0.5}).sentence


@pytest.mark.parametrize("p, expected", [(0.05, "inconclusive"), (0.0499999, "yes"), (0.05000001, "inconclusive")])
def test_verdict_alpha_edge_is_exact(p, expected):
    assert verdict(0.9, 0.6, p) == expected
    assert verdict(0.9, 0.6, p, alpha=0.05) == expected


def test_min_mode_verdicts():
    assert verdict(0.2, 0.5, 0.01, "min") == "yes"
    assert verdict(0.5, 0.2, 0.01, "min") == "no"
    assert verdict(0.2, 0.2, 0.0, "min") == "inconclusive"


def runs(cells: dict) -> pd.DataFrame:
    rows = []
    for (pairing, dpc), values in cells.items():
        for i, v in enumerate(values):
            rows.append({"pairing": pairing, "data_per_class": dpc, "seed": 10 + i, "val_acc": v,
                         "val_loss": 1 - v, "status_reason": "completed"})
    return pd.DataFrame(rows)


def test_each_claim_is_decided_on_its_own_and_min_mode_kept():
    # Subject changed (issue 20): Holm over the family is replaced by per-claim error control with
    # the two-part test (learned rate: Fisher; learned seeds: Welch), each part at half the level.
    a = [0.70, 0.74, 0.80, 0.72]
    b = [0.64, 0.68, 0.70, 0.65]
    frame = runs({(CNN, 10): a, (MLP, 10): b, (CNN, 30): a, (MLP, 30): b})
    h = Hypothesis("CNN > MLP", better=CNN, worse=MLP)
    lower = Hypothesis("CNN loss < MLP loss", better=CNN, worse=MLP, metric="val_loss", mode="min",
                       at={"data_per_class": 10})
    one_sided = sps.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    assert 0.0125 < one_sided < 0.025  # significant for one test at 0.05, not for one of two parts
    res = evaluate_all([h], frame, ["data_per_class"])
    assert [r.p for r in res] == pytest.approx([4 * one_sided, 4 * one_sided])  # two parts x two tails
    assert [r.p_adj for r in res] == [r.p for r in res]
    assert [r.verdict for r in res] == ["inconclusive", "inconclusive"]
    assert "cannot exclude" in res[0].sentence and res[0].seeds_needed > 4
    three = evaluate_all([h, lower], frame, ["data_per_class"])
    assert [r.m_tests for r in three] == [3, 3, 3]
    far = runs({(CNN, 10): [0.90, 0.92, 0.91, 0.93], (MLP, 10): [0.60, 0.62, 0.61, 0.63]})
    far_lower = Hypothesis("CNN loss < MLP loss", better=CNN, worse=MLP, metric="val_loss", mode="min")
    alone = evaluate_all([far_lower], far, ["data_per_class"])
    assert alone[0].verdict == "yes" and alone[0].mode == "min"  # lower loss is the "better" direction
    assert alone[0].effect[0] == pytest.approx(np.mean([0.1, 0.08, 0.09, 0.07]) - np.mean([0.4, 0.38, 0.39, 0.37]))
    flipped = evaluate_all([Hypothesis("MLP loss < CNN loss", MLP, CNN, metric="val_loss", mode="min")], far,
                           ["data_per_class"])
    assert flipped[0].verdict == "no"


def welch_gap_interval(groups, confidence=0.95):
    """Hand Welch-Satterthwaite interval of (mean0 - mean1) - (mean2 - mean3)."""
    x = [np.array(g) for g in groups]
    gap = (x[0].mean() - x[1].mean()) - (x[2].mean() - x[3].mean())
    var = [g.var(ddof=1) / len(g) for g in x]
    dof = sum(var) ** 2 / sum(v ** 2 / (len(g) - 1) for v, g in zip(var, x))
    half = sps.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(sum(var))
    return gap, gap - half, gap + half


def test_interaction_verdict_follows_its_welch_interval():
    gap = Hypothesis("the gap widens with data", CNN, MLP, kind="interaction", at={"data_per_class": 100},
                     at_other={"data_per_class": 10})
    # Noisy seeds: the difference of gaps (+3.75 pts) is inside its interval's noise: inconclusive,
    # with the Welch interval of the four groups (not a zero-width one).
    noisy = {(CNN, 100): [0.80, 0.90, 0.70, 0.85], (MLP, 100): [0.75, 0.85, 0.80, 0.70],
             (CNN, 10): [0.60, 0.70, 0.65, 0.75], (MLP, 10): [0.62, 0.66, 0.70, 0.60]}
    (r,) = evaluate_all([gap], runs(noisy), ["data_per_class"])
    d, low, high = welch_gap_interval(list(noisy.values()))
    assert r.verdict == "inconclusive" and r.confidence == pytest.approx(0.95)
    assert r.effect == pytest.approx((d, low, high)) and low < 0 < high
    assert r.cannot_exclude > 0
    # Tight seeds, the gap shrinks with data (+0.5 pts at 100 vs +5 pts at 10): contradicted.
    shrinks = {(CNN, 100): [0.970, 0.975, 0.970, 0.975], (MLP, 100): [0.965, 0.970, 0.965, 0.970],
               (CNN, 10): [0.700, 0.705, 0.700, 0.705], (MLP, 10): [0.650, 0.655, 0.650, 0.655]}
    (r,) = evaluate_all([gap], runs(shrinks), ["data_per_class"])
    d, low, high = welch_gap_interval(list(shrinks.values()))
    assert r.verdict == "no" and high < 0
    assert r.effect == pytest.approx((d, low, high))
    assert math.isnan(r.cannot_exclude) and "cannot exclude" not in r.sentence  # decided: nothing left open
    # The same seeds as a loss (lower is better): the claim is about the loss gap, decided the same way,
    # the effect shown on the loss scale (the CNN's loss lead shrinks from 5 to 0.5 pts: +4.5).
    loss = runs(shrinks)
    loss["val_loss"] = 1 - loss["val_acc"]
    by_loss = Hypothesis("the loss gap widens with data", CNN, MLP, kind="interaction", metric="val_loss", mode="min",
                         at={"data_per_class": 100}, at_other={"data_per_class": 10})
    (r,) = evaluate_all([by_loss], loss, ["data_per_class"])
    assert r.verdict == "no" and r.effect == pytest.approx((-d, -high, -low))


def test_report_claim_list_shows_each_verdict_and_the_rule():
    from analysis.html import esc
    from analysis.hypotheses import explain, hypotheses_html

    frame = runs({(CNN, 10): [0.90, 0.92, 0.91, 0.93], (MLP, 10): [0.60, 0.62, 0.61, 0.63]})
    claims = [Hypothesis("CNN > MLP", CNN, MLP), Hypothesis("MLP > CNN", MLP, CNN)]
    results = evaluate_all(claims, frame, ["data_per_class"])
    assert [r.verdict for r in results] == ["yes", "no"]
    assert all(math.isnan(r.cannot_exclude) and "cannot exclude" not in r.sentence for r in results)
    html = hypotheses_html(results, rule="one look")
    assert html.startswith("<ul>") and html.count("<li>") == 2
    assert '<span class="verdict v-yes">yes</span>' in html and '<span class="verdict v-no">no</span>' in html
    assert "CNN &gt; MLP" in html and "MLP &gt; CNN" in html
    assert html.endswith('<p class="muted">' + esc(explain(results[0].alpha, "one look")) + "</p>")
    assert "declares no hypotheses" in hypotheses_html([])


def test_collapse_is_an_outcome_learned_k_of_n():
    # Two of eight CNN seeds lost a class (66.7%, above chance + 5 points: the old "at chance" missed
    # them); classes_lost from the confusion matrix counts them.
    cnn = [0.96, 0.98, 0.667, 1.0, 0.95, 0.667, 0.97, 0.99]
    frame = runs({(CNN, 30): cnn, (MLP, 30): [0.95, 0.96, 0.97, 0.95, 0.96, 0.97, 0.96, 0.95]})
    frame["classes_lost"] = [0, 0, 1, 0, 0, 1, 0, 0] + [0] * 8
    [r] = evaluate_all([Hypothesis("CNN > MLP", CNN, MLP)], frame, ["data_per_class"])
    b = r.sides[0]
    assert (b.learned, b.n) == (6, 8) and r.learned == ((6, 8), (8, 8))
    lo, hi = sps.binomtest(6, 8).proportion_ci(0.95, method="exact")
    assert (b.learned_low, b.learned_high) == pytest.approx((lo, hi))
    assert b.learned_median[0] == pytest.approx(np.median([0.96, 0.98, 1.0, 0.95, 0.97, 0.99]))
    assert "learned 6/8" in r.sentence and "learned seeds median 97.5%" in r.sentence
    # the learned seeds' difference, not the mixture's
    learned = [0.96, 0.98, 1.0, 0.95, 0.97, 0.99]
    assert r.effect[0] == pytest.approx(np.mean(learned) - frame["val_acc"][8:].mean())
    no_metric = frame.drop(columns="classes_lost")
    [old] = evaluate_all([Hypothesis("CNN > MLP", CNN, MLP)], no_metric, ["data_per_class"])
    assert old.learned == ((8, 8), (8, 8))  # without classes_lost: only seeds at chance count as lost


def test_threshold_and_chance_claims_are_one_sided():
    from types import SimpleNamespace

    frame = runs({(CNN, 30): [0.96, 0.97, 0.98, 0.99, 0.97, 0.98, 0.99, 0.96],
                  (MLP, 30): [0.34, 0.33, 0.35, 0.32, 0.33, 0.34, 0.33, 0.35]})
    base = dict(metric="val_acc", mode="max", at={}, other_experiment=None, margin=None, worse="")
    meets = SimpleNamespace(text="CNN >= 95%", better=CNN, kind="threshold", threshold=0.95, **base)
    misses = SimpleNamespace(text="CNN >= 99.5%", better=CNN, kind="threshold", threshold=0.995, **base)
    chance = SimpleNamespace(text="MLP at chance", better=MLP, kind="chance", threshold=None, **base)
    not_chance = SimpleNamespace(text="CNN at chance", better=CNN, kind="chance", threshold=None, **base)
    verdicts = [r.verdict for r in evaluate_all([meets, misses, chance, not_chance], frame, ["data_per_class"])]
    assert verdicts == ["yes", "no", "yes", "no"]
    few = evaluate_all([meets], frame[frame["seed"] < 13], ["data_per_class"])[0]
    assert few.verdict == "inconclusive" and few.seeds_needed and few.seeds_needed >= 6  # sign test: 6 seeds at 0.025



ONE_SIDED = dict(at={}, other_experiment=None, margin=None, worse="")


def test_chance_claim_left_open_says_how_many_seeds_would_decide_it():
    from types import SimpleNamespace

    chance = SimpleNamespace(text="MLP at chance", better=MLP, kind="chance", threshold=None, metric="val_acc",
                             mode="max", **ONE_SIDED)
    # 8 seeds around chance (1/3), median 34%: the interval [28, 40]% reaches past ±5 pts of chance.
    near = evaluate_all([chance], runs({(MLP, 30): [0.30, 0.36, 0.33, 0.40, 0.28, 0.35, 0.31, 0.38]}),
                        ["data_per_class"])[0]
    spread = evaluate_all([chance], runs({(MLP, 30): [0.30, 0.42, 0.33, 0.40, 0.25, 0.35, 0.31, 0.38]}),
                          ["data_per_class"])[0]
    assert near.verdict == spread.verdict == "inconclusive"
    assert near.seeds_needed is not None and 8 < near.seeds_needed < spread.seeds_needed
    # one sample: no "per side" (issue 20); the sign test's own power formula (7 of 8 seeds inside
    # each end of chance +- 5 pts -> 12 seeds; 6 of 8 below the upper end -> 29)
    assert (near.seeds_needed, spread.seeds_needed) == (12, 29)
    assert "about 12 seeds would decide it" in near.sentence and "per side" not in near.sentence
    assert near.confidence == pytest.approx(0.95) and "(95% interval)" in near.sentence
    # [30, 40]%: inside chance - 5 pts but past chance + 5 pts: neither at chance nor clear of it.
    above = evaluate_all([chance], runs({(MLP, 30): [0.30, 0.36, 0.33, 0.40, 0.31, 0.35, 0.32, 0.38]}),
                         ["data_per_class"])[0]
    assert above.effect[1:] == pytest.approx((0.30, 0.40)) and above.verdict == "inconclusive"


def test_a_threshold_on_the_interval_end_is_neither_met_nor_contradicted():
    # 8 seeds at level 0.025: the median interval runs from the lowest to the highest seed, [0.50, 0.70].
    from types import SimpleNamespace

    frame = runs({(CNN, 30): [0.50, 0.60, 0.55, 0.70, 0.65, 0.52, 0.58, 0.62]})
    frame["val_loss"] = frame["val_acc"]
    claims = [SimpleNamespace(text=text, better=CNN, kind="threshold", threshold=t, metric=m, mode=mode, **ONE_SIDED)
              for text, t, m, mode in [("loss <= 0.5", 0.5, "val_loss", "min"), ("acc >= 70%", 0.7, "val_acc", "max"),
                                       ("loss <= 0.499", 0.499, "val_loss", "min"),
                                       ("acc >= 70.1%", 0.701, "val_acc", "max")]]
    results = evaluate_all(claims, frame, ["data_per_class"])
    assert all(r.effect[1:] == pytest.approx((0.5, 0.7)) for r in results)
    assert [r.verdict for r in results] == ["inconclusive", "inconclusive", "no", "no"]
    assert all(r.note == "" and "too few" not in r.sentence for r in results)  # 8 seeds give an interval


def test_learned_counts_are_k_of_n_for_every_kind_of_claim():
    from types import SimpleNamespace

    frame = runs({(CNN, 10): [0.95, 0.96, 0.34, 0.97], (MLP, 10): [0.60, 0.62, 0.61, 0.63],
                  (CNN, 100): [0.99, 0.98, 0.99, 0.97], (MLP, 100): [0.70, 0.72, 0.71, 0.69]})
    claims = [Hypothesis("CNN > MLP", CNN, MLP), Hypothesis("CNN ~ MLP", CNN, MLP, kind="equivalence", margin=0.05),
              Hypothesis("gap", CNN, MLP, kind="interaction", at={"data_per_class": 100},
                         at_other={"data_per_class": 10}),
              SimpleNamespace(text="CNN >= 90%", better=CNN, kind="threshold", threshold=0.9, metric="val_acc",
                              mode="max", **ONE_SIDED),
              Hypothesis("vs elsewhere", CNN, MLP, other_experiment="not-loaded")]
    results = evaluate_all(claims, frame, ["data_per_class"])
    assert {r.kind for r in results} >= {"difference", "equivalence", "interaction", "threshold"}
    assert "not tested" in {r.verdict for r in results}
    for r in results:
        assert len(r.learned) == 2 and all(0 <= k <= n for k, n in r.learned), (r.text, r.learned)

def test_results_table_has_median_and_collapses():
    frame = runs({(CNN, 30): BIMODAL, (MLP, 30): [0.6] * 8})
    data = SweepData(parent={"name": "s"}, runs=frame, swept_keys=["pairing", "data_per_class"], metrics=["val_acc"])
    table = sweep_results(data)
    cnn = table[table["pairing"] == CNN].iloc[0]
    assert cnn["n_collapsed"] == 2 and cnn["val_acc_median"] == pytest.approx(np.median(BIMODAL))
    assert cnn["val_acc_ci_high"] <= 1.0
    assert table[table["pairing"] == MLP].iloc[0]["n_collapsed"] == 0
    five = frame.assign(class_type=[("h", "v", "d", "b", "n")] * len(frame))
    five.loc[five["pairing"] == MLP, "val_acc"] = 0.22  # chance 0.2 with five classes
    t5 = sweep_results(SweepData(parent={"name": "s"}, runs=five, swept_keys=["pairing", "data_per_class"],
                                 metrics=["val_acc"]))
    assert list(t5["n_collapsed"]) == [0, 8]  # 33% is above chance + 5 points with five classes


def test_accuracy_plot_shows_every_seed_and_a_bounded_band():
    from matplotlib.collections import PathCollection

    from analysis.plots.accuracy import accuracy_vs_data, params_vs_accuracy

    frame = runs({(CNN, 10): BIMODAL[:3], (CNN, 30): BIMODAL, (MLP, 10): [0.6, 0.62, 0.61], (MLP, 30): [0.7] * 8})
    frame["n_params"] = [606 if p == CNN else 39793 for p in frame["pairing"]]
    data = SweepData(parent={"name": "s"}, runs=frame, swept_keys=["pairing", "data_per_class"],
                     metrics=["val_acc", "n_params"])
    for fig in (accuracy_vs_data(data)["accuracy_vs_data"], params_vs_accuracy(data)["params_vs_accuracy"]):
        ax = fig.axes[0]
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        ys = sorted(y for c in points for _, y in c.get_offsets())
        assert ys == pytest.approx(sorted(100 * frame["val_acc"]))  # one point per seed, at its value
    bands = [c for c in accuracy_vs_data(data)["accuracy_vs_data"].axes[0].collections
             if not isinstance(c, PathCollection)]
    assert bands and max(p.get_extents().y1 for b in bands for p in b.get_paths()) <= 100.0


def test_adaptive_sweep_report_uses_the_design_and_lists_waves():
    # Subject changed (issue 20): the parent carries the group-sequential design, not a Bonferroni alpha.
    from analysis.report import adaptive_html, decision_design, decision_rule

    a, b = [0.70, 0.74, 0.80, 0.72], [0.64, 0.68, 0.70, 0.65]  # one-sided Welch p = 0.018
    frame = runs({(CNN, 10): a, (MLP, 10): b}).assign(wave=[0, 0, 1, 1] * 2, run_id=[f"r{i}" for i in range(8)])
    tags = {"until_decided": "true", "alpha": "0.05", "look_seeds": "[2, 4, 6, 8]", "alpha_spending": "obf",
            "stopping_rule": "stopping rule: group-sequential, OBrien-Fleming type", "max_looks": "4",
            "looks_taken": "2"}
    data = SweepData(parent={"name": "s", "tags": tags}, runs=frame, swept_keys=["pairing", "data_per_class"],
                     metrics=["val_acc"])
    alpha, rule = decision_rule(data)
    design, sequential = decision_design(data)
    assert alpha == 0.05 and "group-sequential" in rule and sequential and design.looks == (2, 4, 6, 8)
    [r] = evaluate_all([Hypothesis("CNN > MLP", CNN, MLP)], frame, ["data_per_class"], design=design,
                       sequential=True)
    assert r.verdict == "inconclusive" and "look 2 of 4" in r.sentence  # 0.018 would pass one fixed test
    assert r.confidence == pytest.approx(1 - design.levels[1])
    html = adaptive_html(data)
    assert "0, 1" in html and "group-sequential" in html
    assert adaptive_html(SweepData(parent={"name": "s", "tags": {}}, runs=frame)) == ""
    assert decision_rule(SweepData(parent={"name": "s", "tags": {}}, runs=frame))[0] == 0.05
    old = SweepData(parent={"name": "s", "tags": {"until_decided": "true", "alpha_per_look": "0.0125"}}, runs=frame)
    assert decision_design(old)[0].levels == (0.00625,)  # a Bonferroni sweep keeps its per-look alpha


def test_results_table_shows_learned_k_of_n_and_the_learned_median():
    from analysis.results import display_table

    cnn = [0.96, 0.98, 0.667, 1.0, 0.95, 0.667, 0.97, 0.99]
    frame = runs({(CNN, 30): cnn, (MLP, 30): [0.6] * 8})
    frame["classes_lost"] = [0, 0, 1, 0, 0, 1, 0, 0] + [0] * 8
    data = SweepData(parent={"name": "s"}, runs=frame, swept_keys=["pairing", "data_per_class"],
                     metrics=["val_acc", "classes_lost"])
    shown = display_table(sweep_results(data)).set_index("pairing")
    assert shown.loc[CNN, "learned"] == "6/8 [35-97%]" and shown.loc[CNN, "at chance"] == "0/8"
    assert shown.loc[CNN, "learned seeds median"] == "97.5% [95.0, 100.0]"


def test_every_declared_kind_is_answered_equivalence_and_interaction():
    from analysis.hypotheses import KINDS
    from search_spaces.experiment import HYPOTHESIS_KINDS

    assert set(KINDS) == set(HYPOTHESIS_KINDS)
    same = [0.95, 0.96, 0.955, 0.96, 0.95, 0.955]
    frame = runs({(CNN, 10): same, (MLP, 10): [v + 0.002 for v in same],
                  (CNN, 100): [0.99, 0.995, 0.99, 0.995, 0.99, 0.995], (MLP, 100): [0.97, 0.975, 0.97, 0.975, 0.97, 0.975]})
    eq = Hypothesis("CNN ~ MLP at 10", CNN, MLP, kind="equivalence", margin=0.05, at={"data_per_class": 10})
    diff = Hypothesis("CNN > MLP at 10", CNN, MLP, at={"data_per_class": 10})
    gap = Hypothesis("the gap narrows", CNN, MLP, kind="interaction", at={"data_per_class": 100},
                     at_other={"data_per_class": 10})
    r_eq, r_diff, r_gap = evaluate_all([eq, diff, gap], frame, ["data_per_class"])
    assert r_eq.verdict == "yes" and "within ±5.0 pts" in r_eq.sentence
    assert r_diff.verdict == "equivalent" and math.isnan(r_diff.cannot_exclude)
    # gap at 100 (+2.0 pts) minus gap at 10 (-0.2 pts) > 0
    assert r_gap.verdict == "yes" and r_gap.effect[0] == pytest.approx(0.02 + 0.002)


@pytest.mark.parametrize("keys", [["epochs", "data_per_class"], ["data_per_class", "epochs"]])
def test_a_claim_fixing_a_swept_key_per_side_compares_across_that_key(keys):
    """'CNN at 1000 epochs > CNN at 100 epochs' in one sweep that sweeps epochs: the rival runs of a
    cell share every swept key except the ones the claim fixes per side. (Found by `sweep study edge
    --until-decided`: the rivals were matched on epochs=1000 too, none was left, and the empty
    frame lost its columns: KeyError 'val_acc' stopped the sweep.)"""
    rng = np.random.default_rng(0)
    rows = [{"pairing": "cnn", "epochs": ep, "data_per_class": 10, "seed": s, "val_acc": base + rng.normal(0, 0.01),
             "status_reason": "completed"}
            for ep, base in ((100, 0.6), (1000, 0.9)) for s in range(6)]
    h = Hypothesis("CNN at 1000 epochs > CNN at 100 epochs", better="cnn", worse="cnn",
                   better_fixed={"epochs": 1000}, worse_fixed={"epochs": 100}, at={"data_per_class": 10})
    (r,) = evaluate_all([h], pd.DataFrame(rows), keys)
    assert r.verdict == "yes" and r.cell == {"data_per_class": 10, "epochs": 1000}
    assert r.better[3] == 6 and r.worse[3] == 6 and r.effect[0] == pytest.approx(0.3, abs=0.02)
    # a cell whose rival side has no run at all is "not tested", not an error
    (r,) = evaluate_all([h], pd.DataFrame([x for x in rows if x["epochs"] == 1000]), keys)
    assert r.verdict == "not tested"


@pytest.mark.parametrize("metric", ["val_acc", "val_loss"])
def test_a_claim_for_the_side_that_learns_less_is_reproduced_by_its_collapse(metric):
    """'MLP under the domain shift < MLP on the unshifted task' (EDGE Q4): every shifted seed lost
    classes (33.3%), every unshifted one learned (93%). Fewer seeds learning is the claim's own
    direction on a "lower" accuracy claim (and on a "higher" loss claim): the two-part test must say
    yes. (`sweep study edge --until-decided` called it contradicted: the learned-rate part read
    'learns more often' as better whatever the claim's direction.)"""
    rng = np.random.default_rng(1)
    acc = {"shifted": (1 / 3, 2), "plain": (0.93, 0)}
    rows = [{"pairing": "mlp", "series": side, "data_per_class": 100, "seed": s, "status_reason": "completed",
             "val_acc": mean + (0 if side == "shifted" else rng.normal(0, 0.01)),
             "val_loss": (1.1 if side == "shifted" else 0.2) + rng.normal(0, 0.01), "classes_lost": lost}
            for side, (mean, lost) in acc.items() for s in range(6)]
    runs = pd.DataFrame(rows)
    mode = "min" if metric == "val_acc" else "max"
    claim = Hypothesis(f"shifted MLP {'<' if mode == 'min' else '>'} plain MLP on {metric}", better="shifted",
                       worse="plain", metric=metric, mode=mode, at={"data_per_class": 100})
    (r,) = evaluate_all([claim], runs, ["data_per_class"])
    assert r.verdict == "yes", r
    assert r.learned == ((0, 6), (6, 6))  # the claim's sides, in its order
    # and the reverse claim is contradicted, not decided for
    other = Hypothesis("reverse", better="shifted", worse="plain", metric=metric,
                       mode="max" if mode == "min" else "min", at={"data_per_class": 100})
    (r,) = evaluate_all([other], runs, ["data_per_class"])
    assert r.verdict == "no", r


def test_the_legend_names_the_rule_in_brackets_only_when_there_is_one():
    from analysis.hypotheses import explain

    assert "decided at two-sided 0.05 (group-sequential, look 2 of 4) by a two-part test" in \
        explain(0.05, "group-sequential, look 2 of 4")
    plain = explain(0.05)
    assert "decided at two-sided 0.05 by a two-part test" in plain and "()" not in plain


def _chance_runs(values, **extra) -> pd.DataFrame:
    return pd.DataFrame([{"pairing": "mlp", "data_per_class": 30, "seed": s, "val_acc": v,
                          "status_reason": "completed", **extra} for s, v in enumerate(values)])


def test_a_chance_claim_far_below_chance_is_contradicted_and_unknown_classes_are_not_tested():
    claim = Hypothesis("MLP at chance", better="mlp", kind="chance", at={"data_per_class": 30})
    # 3 classes: chance 33.3%; every seed near 2% (below chance by far more than the margin): "no"
    (r,) = evaluate_all([claim], _chance_runs([0.02 + 0.001 * i for i in range(12)], num_classes=3),
                        ["data_per_class"])
    assert r.verdict == "no", r
    # the same runs with no way to know the number of classes: no chance level, "not tested"
    (r,) = evaluate_all([claim], _chance_runs([0.02 + 0.001 * i for i in range(12)]), ["data_per_class"])
    assert r.verdict == "not tested" and "number of classes is unknown" in r.note, r
    # a dataset analysis has no table for (a user's): the n_classes tag every trial logs says it
    (r,) = evaluate_all([claim], _chance_runs([0.02 + 0.001 * i for i in range(12)], n_classes=3, dataset="mine"),
                        ["data_per_class"])
    assert r.verdict == "no", r


def test_a_one_sample_claim_on_its_reference_says_no_realistic_number_of_seeds_decides_it():
    """Issue 20: the edge study printed "about 1679 seeds per side would decide" for a CNN >= 95%
    claim whose median sat on the threshold (5 of 9 seeds meet it) and 1149 for a chance claim on
    the edge of chance's band. The sign test at that share needs far more than any study runs: say so."""
    from types import SimpleNamespace

    from analysis.reproduction import status_of

    meets = SimpleNamespace(text="CNN >= 95%", better=CNN, kind="threshold", threshold=0.95, metric="val_acc",
                            mode="max", **ONE_SIDED)
    on_it = evaluate_all([meets], runs({(CNN, 30): [1.0, 1.0, 0.967, 0.96, 0.951, 0.7, 0.5, 0.33, 0.94]}),
                         ["data_per_class"])[0]
    assert on_it.verdict == "inconclusive" and on_it.seeds_needed is None
    assert on_it.undecidable == "5 of 9 seeds meet 95.0%: the median sits on the threshold"
    assert "no realistic number of seeds would decide it (5 of 9 seeds meet 95.0%" in on_it.sentence
    status, detail, need = status_of(meets, on_it)
    assert status == "undecided" and need is None and "no realistic number of seeds would decide (5 of 9" in detail
    assert "seeds per side" not in on_it.sentence + detail
    chance = SimpleNamespace(text="deeper at chance", better=CNN, kind="chance", threshold=None, metric="val_acc",
                             mode="max", **ONE_SIDED)
    # three classes: chance 33.3%, band 28.3-38.3%; 5 of 9 seeds at or below its upper end
    edge = evaluate_all([chance], runs({(CNN, 30): [0.30, 0.33, 0.35, 0.36, 0.37, 0.6, 0.7, 0.8, 0.9]}),
                        ["data_per_class"])[0]
    assert edge.verdict == "inconclusive" and edge.seeds_needed is None
    assert edge.undecidable == "5 of 9 seeds at or below 38.3%: the median sits on the edge of chance ± 5.0%"
    # a clear majority of seeds past the threshold: a figure, one sample, no "per side"
    clear = evaluate_all([meets], runs({(CNN, 30): [1.0, 0.99, 0.98, 0.97, 0.99, 0.96, 0.5]}), ["data_per_class"])[0]
    assert clear.verdict == "inconclusive" and clear.seeds_needed == 13 and not clear.undecidable  # 6 of 7 meet it
    assert status_of(meets, clear)[1].endswith("; about 13 seeds would decide")


def test_a_chance_interval_ending_on_the_band_is_not_clear_of_chance():
    """The chance claim is "no" only when the interval is clear of chance ± margin: an interval whose
    upper end is exactly chance - margin cannot exclude the band's edge."""
    from types import SimpleNamespace

    from analysis import stats as ST

    chance = SimpleNamespace(text="MLP at chance", better=MLP, kind="chance", threshold=None, metric="val_acc",
                             mode="max", **ONE_SIDED)
    edge = ST.chance_level(3) - ST.COLLAPSE_MARGIN
    below = [edge - 0.2, edge - 0.15, edge - 0.1, edge - 0.12, edge - 0.05, edge - 0.08, edge - 0.02, edge]
    [r] = evaluate_all([chance], runs({(MLP, 30): below}), ["data_per_class"])
    assert r.effect[2] == edge and r.verdict == "inconclusive"
    [clear] = evaluate_all([chance], runs({(MLP, 30): below[:-1] + [edge - 0.01]}), ["data_per_class"])
    assert clear.verdict == "no"
