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
