"""Statistics over seeds, Welch tests, hypotheses and result formatting on fabricated frames."""
import json
import math

import pandas as pd
import pytest

from analysis.aggregate import aggregate, compare, t_interval, welch
from analysis.hypotheses import evaluate, evaluate_all, verdict
from analysis.results import format_results, sweep_results
from analysis.stats import bootstrap_interval
from analysis.sweep_data import SweepData
from search_spaces.experiment import Hypothesis
from core.errors import ConfigError

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"
T_975_DF2 = 4.302652729749462  # Student t quantile, 2 degrees of freedom (tables: 4.303)


def frame() -> pd.DataFrame:
    """CNN [0.90, 0.92, 0.94] and MLP [0.60, 0.63, 0.66] at 10/class; a close call at 30/class."""
    rows = []
    for pairing, dpc, values in ((CNN, 10, (0.90, 0.92, 0.94)), (MLP, 10, (0.60, 0.63, 0.66)),
                                 (CNN, 30, (0.70, 0.75, 0.80)), (MLP, 30, (0.68, 0.74, 0.79))):
        for seed, v in zip((10, 11, 12), values):
            rows.append({"run_id": f"{pairing}-{dpc}-{seed}", "pairing": pairing, "data_per_class": dpc,
                         "seed": seed, "val_acc": v, "n_params": 606.0 if pairing == CNN else 39793.0,
                         "status_reason": "completed"})
    # Not results: an early-stopped and a failed trial with absurd values.
    rows.append({"run_id": "s", "pairing": CNN, "data_per_class": 10, "seed": 13, "val_acc": 0.0,
                 "status_reason": "stopped_early"})
    rows.append({"run_id": "f", "pairing": MLP, "data_per_class": 10, "seed": 13, "val_acc": 1.0,
                 "status_reason": "failed"})
    return pd.DataFrame(rows)


def test_t_interval_hand_computed():
    mean, std, low, high = t_interval([0.90, 0.92, 0.94])
    half = T_975_DF2 * 0.02 / math.sqrt(3)  # = 0.0496827...
    assert mean == pytest.approx(0.92)
    assert std == pytest.approx(0.02)
    assert (low, high) == pytest.approx((0.92 - half, 0.92 + half))
    assert half == pytest.approx(0.049683, abs=1e-6)


def test_t_interval_small_samples():
    assert math.isnan(t_interval([0.5])[2]) and t_interval([0.5])[0] == 0.5
    assert all(math.isnan(v) for v in t_interval([]))
    mean, std, low, high = t_interval([0.7, 0.7, 0.7])  # float noise must not make a fake spread
    assert std == 0.0 and low == high == mean == pytest.approx(0.7)


def test_aggregate_counts_only_completed_runs():
    table = aggregate(frame(), ["pairing", "data_per_class"], ["val_acc", "n_params", "not_logged"])
    assert list(table["pairing"]) == [CNN, CNN, MLP, MLP]
    assert list(table["data_per_class"]) == [10, 30, 10, 30]
    assert list(table["n"]) == [3, 3, 3, 3]
    row = table.iloc[0]
    assert row["val_acc_mean"] == pytest.approx(0.92)
    assert row["val_acc_std"] == pytest.approx(0.02)
    assert row["val_acc_median"] == pytest.approx(0.92)
    # Accuracies: the bounded percentile bootstrap (pinned against scipy in test_analysis_stats).
    assert (row["val_acc_ci_low"], row["val_acc_ci_high"]) == pytest.approx(bootstrap_interval([0.90, 0.92, 0.94])[1:])
    assert 0.90 <= row["val_acc_ci_low"] < 0.92 < row["val_acc_ci_high"] <= 0.94
    assert row["n_params_mean"] == 606 and row["n_params_ci_low"] == 606
    mlp30 = table.iloc[3]  # not an accuracy: the t-interval
    half = T_975_DF2 * mlp30["val_loss_std"] / math.sqrt(3) if "val_loss_std" in table else None
    assert half is None
    assert "not_logged_mean" not in table


def test_aggregate_rejects_unknown_key():
    with pytest.raises(ConfigError, match="kernel_size"):
        aggregate(frame(), ["pairing", "kernel_size"], ["val_acc"])


def test_welch_hand_computed():
    a, b = [0.90, 0.92, 0.94], [0.60, 0.63, 0.66]
    w = welch(a, b)
    se = math.sqrt(0.02 ** 2 / 3 + 0.03 ** 2 / 3)
    assert w.t == pytest.approx(0.29 / se)              # 13.9311
    assert w.t == pytest.approx(13.931149, rel=1e-6)
    # Welch-Satterthwaite df = 3.4845; two-sided p from the t distribution with that df.
    assert w.p == pytest.approx(0.00035268, rel=1e-4)
    assert (w.n_a, w.n_b) == (3, 3)


def test_welch_degenerate_cases():
    assert math.isnan(welch([0.9], [0.5, 0.6]).p)
    assert welch([1.0, 1.0], [0.5, 0.5]).p == 0.0
    assert welch([1.0, 1.0], [1.0, 1.0]).p == 1.0


def test_compare_per_cell():
    table = compare(frame(), CNN, MLP, ["pairing", "data_per_class"])
    assert list(table["data_per_class"]) == [10, 30]
    assert table.iloc[0]["p"] == pytest.approx(0.00035268, rel=1e-4)
    assert table.iloc[1]["p"] == pytest.approx(0.77185, rel=1e-3)


@pytest.mark.parametrize("better, worse, p, mode, expected", [
    (0.9, 0.6, 0.001, "max", "yes"), (0.6, 0.9, 0.001, "max", "no"), (0.9, 0.6, 0.2, "max", "inconclusive"),
    (0.9, 0.6, float("nan"), "max", "inconclusive"), (0.2, 0.5, 0.01, "min", "yes")])
def test_verdict(better, worse, p, mode, expected):
    assert verdict(better, worse, p, mode) == expected


def test_hypotheses_per_cell_and_sentences():
    h = Hypothesis("CNN > MLP", better=CNN, worse=MLP)
    results = evaluate(h, frame(), ["data_per_class"])
    assert [r.verdict for r in results] == ["yes", "inconclusive"]
    # Subject changed (issue 20): learned k/n per side, the learned-seed difference at the verdict's
    # level (two parts at 0.0125 each), the two-part p; "inconclusive" says what it cannot exclude.
    assert results[0].sentence == ("CNN > MLP at data_per_class=10: yes (92.0% [90.0, 94.0], median 92.0%, learned 3/3 "
                                   "[29-100%] vs 63.0% [60.0, 66.0], median 63.0%, learned 3/3 [29-100%]; "
                                   "learned-seed difference +29.0 pts [+21.1, +36.9] (97.5% interval); two-part "
                                   "p<0.001; n=3/3)")
    assert results[1].sentence.startswith("CNN > MLP at data_per_class=30: inconclusive: cannot exclude ±")
    assert "(75.0% [70.0, 80.0]" in results[1].sentence
    assert results[0].single_seed_sentence == "a single-seed run would have said yes in 3 of 3 seeds, no in 0"
    only10 = evaluate(Hypothesis("MLP > CNN at data_per_class=10", better=MLP, worse=CNN, at={"data_per_class": 10}),
                      frame(), ["data_per_class"])
    assert [r.verdict for r in only10] == ["no"]
    assert only10[0].sentence.startswith("MLP > CNN at data_per_class=10: no (63.0%")


def test_hypothesis_against_other_experiment_and_missing_sides():
    other = frame()
    other["val_acc"] = other["val_acc"] - 0.2
    h = Hypothesis("edge init > random init", better=CNN, worse=CNN, at={"data_per_class": 10},
                   other_experiment="edge-data-per-class")
    [r] = evaluate_all([h], frame(), ["data_per_class"], {"edge-data-per-class": other})
    assert r.verdict == "yes" and r.worse[0] == pytest.approx(0.72)
    [missing] = evaluate_all([h], frame(), ["data_per_class"], {})
    assert missing.verdict == "not tested" and "edge-data-per-class" in missing.sentence
    [nobody] = evaluate_all([Hypothesis("x", better="wider_cnn/edges", worse=MLP)], frame(), ["data_per_class"])
    assert nobody.verdict == "not tested" and "wider_cnn/edges" in nobody.sentence


def test_sweep_results_and_formats():
    data = SweepData(parent={"name": "s"}, runs=frame(), swept_keys=["pairing", "data_per_class"],
                     metrics=["val_acc", "n_params"])
    table = sweep_results(data)
    assert list(table.columns[:5]) == ["pairing", "data_per_class", "n", "n_stopped", "n_failed"]
    assert list(table["n_stopped"]) == [1, 0, 0, 0] and list(table["n_failed"]) == [0, 0, 1, 0]
    text = format_results(table, "table")
    assert "92.0% [90.0, 94.0]" in text and "39,793" in text and "at chance" in text
    assert list(table["n_collapsed"]) == [0, 0, 0, 0]
    assert format_results(table, "csv").splitlines()[0].startswith("pairing,data_per_class,n,")
    records = json.loads(format_results(table, "json"))
    assert records[0]["val_acc_mean"] == pytest.approx(0.92)
    with pytest.raises(ConfigError, match="yaml.*table, csv, json"):
        format_results(table, "yaml")


def test_at_applies_to_the_other_side_only_where_it_has_the_key():
    probes = pd.DataFrame({"pairing": ["linear_probe/cifar10_features"] * 4, "backbone": ["resnet18"] * 2 + ["vit_s16"] * 2,
                           "best_val_acc": [0.88, 0.89, 0.95, 0.96], "status_reason": "completed"})
    scratch = pd.DataFrame({"pairing": ["lab_cnn/cifar10"] * 3, "best_val_acc": [0.70, 0.72, 0.71],
                            "status_reason": "completed"})
    h = Hypothesis("probe > CNN", better="linear_probe/cifar10_features", worse="lab_cnn/cifar10",
                   metric="best_val_acc", at={"backbone": "vit_s16"}, other_experiment="cifar10-mlp-vs-cnn")
    [r] = evaluate_all([h], probes, ["backbone"], {"cifar10-mlp-vs-cnn": scratch})
    assert r.verdict == "yes" and r.cell == {"backbone": "vit_s16"}
    assert r.better[0] == pytest.approx(0.955) and r.better[3] == 2 and r.worse[3] == 3
