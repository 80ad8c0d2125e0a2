"""The reproduction table: a status per source claim from the engine's answer, on fabricated results."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from analysis import reproduction as R
from analysis.hypotheses import HypothesisResult, Side, evaluate_all
from analysis.stats import SingleSeed
from search_spaces import Hypothesis

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"
CLAIM = Hypothesis("CNN > MLP at data_per_class=10", CNN, MLP, at={"data_per_class": 10}, source="EDGE Q2",
                   source_value="86.7% vs 58.0%")


def runs(cells: dict) -> pd.DataFrame:
    rows = []
    for (pairing, dpc), values in cells.items():
        for i, v in enumerate(values):
            rows.append({"pairing": pairing, "data_per_class": dpc, "seed": 10 + i, "val_acc": v,
                         "status_reason": "completed", "class_type": ("horizontal", "vertical", "none")})
    return pd.DataFrame(rows)


def result(verdict: str, single=None, effect=(0.2, 0.1, 0.3), n=6, **kw) -> HypothesisResult:
    sides = (Side(0.9, 0.85, 0.95, n, 0.9, 1), Side(0.7, 0.65, 0.75, n, 0.7, 0))
    return HypothesisResult(CLAIM.text, {"data_per_class": 10}, verdict, better=(0.9, 0.85, 0.95, n),
                            worse=(0.7, 0.65, 0.75, n), effect=effect, sides=sides, single=single, alpha=0.0125, **kw)


@pytest.mark.parametrize("verdict, single, status", [
    ("yes", SingleSeed(6, 0, 0, 6), "reproduced"),
    ("yes", SingleSeed(5, 1, 0, 6), "reproduced"),       # 1 of 6 disagree: below a quarter
    ("yes", SingleSeed(4, 1, 1, 6), "fragile"),          # a loss and a tie: 2 of 6 would not say "yes"
    ("no", SingleSeed(0, 6, 0, 6), "contradicted"),
    ("no", SingleSeed(2, 4, 0, 6), "fragile"),           # the source's one-seed answer in 2 of 6 seeds
    ("equivalent", None, "equivalent"),
    ("inconclusive", None, "undecided"),
    ("not tested", None, "not tested"),
])
def test_status_from_verdict_and_single_seed_runs(verdict, single, status):
    assert R.status_of(CLAIM, result(verdict, single))[0] == status


def test_equivalence_claim_shown_equivalent_is_reproduced_and_shown_different_is_contradicted():
    eq = dataclasses.replace(CLAIM, kind="equivalence", margin=0.05)
    assert R.status_of(eq, result("equivalent"))[:2] == ("reproduced", "equivalent within ±5.0 pts")
    assert R.status_of(eq, result("yes"))[0] == "reproduced"
    assert R.status_of(eq, result("no", SingleSeed(0, 6, 0, 6)))[0] == "contradicted"


def test_undecided_says_what_cannot_be_excluded_and_the_seeds_needed():
    status, detail, need = R.status_of(CLAIM, result("inconclusive", effect=(0.05, -0.03, 0.13), n=3))
    assert status == "undecided" and "cannot exclude ±13.0 pts" in detail
    # half-width 8 points for a 5-point effect at 3 seeds, at alpha 0.0125 rather than 0.05: > 3 * (8/5)^2
    assert need is not None and need > 3 * (0.08 / 0.05) ** 2 and f"about {need} seeds per side" in detail
    # The engine's own figures win where it gives them.
    # (HypothesisResult now carries both fields: stats helper, issue 20)
    base = result("inconclusive", effect=(0.05, -0.03, 0.13), n=3)
    r = dataclasses.replace(base, cannot_exclude=0.04, seeds_needed=17)
    assert R.status_of(CLAIM, r) == ("undecided", "cannot exclude ±4.0 pts; about 17 seeds per side would decide", 17)


def test_learned_from_the_engine_skips_a_side_without_runs():
    r = dataclasses.replace(result("yes"), learned=((3, 4), (0, 0)))
    assert R.learned_text(r) == "learned 3/4"
    assert R.learned_text(dataclasses.replace(r, learned=((3, 4), (4, 4)))) == "learned 3/4 vs 4/4"


def test_rows_carry_source_value_ours_and_learned():
    data = runs({(CNN, 10): [0.95, 0.33, 0.97, 0.96], (MLP, 10): [0.60, 0.62, 0.61, 0.59]})
    results = R.evaluate_claims([CLAIM], data, ["data_per_class"])
    [row] = R.claim_rows("edge-data-per-class", [CLAIM], results)
    assert (row.claim, row.source, row.source_value, row.kind) == (CLAIM.text, "EDGE Q2", "86.7% vs 58.0%", "difference")
    # the engine's estimate is the difference of the seeds that learned (two-part test), not of the mixture
    assert row.ours.startswith("80.2% vs 60.5% (+35.5 pts") and row.ours.endswith("learned 3/4 vs 4/4")
    assert row.n == "4/4" and row.status in R.STATUSES
    frame = R.rows_frame([row])
    assert list(frame.columns)[:3] == ["experiment", "claim", "kind"] and frame.iloc[0]["status"] == row.status


def test_kinds_the_engine_does_not_answer_are_not_tested_never_misread(monkeypatch):
    import analysis.hypotheses as HY

    monkeypatch.delattr(HY, "SUPPORTED_KINDS", raising=False)
    monkeypatch.delattr(HY, "KINDS", raising=False)
    gap = Hypothesis("gap narrows", CNN, MLP, kind="interaction", at={"data_per_class": 10},
                     at_other={"data_per_class": 100})
    data = runs({(CNN, 10): [0.95, 0.96, 0.97], (MLP, 10): [0.60, 0.62, 0.61],
                 (CNN, 100): [0.99, 1.0, 0.98], (MLP, 100): [0.90, 0.91, 0.92]})
    kinds = R.engine_kinds()
    out = R.evaluate_claims([gap, CLAIM], data, ["data_per_class"])
    if "interaction" not in kinds:
        assert [r.verdict for r in out] == ["not tested", "yes"] and "does not answer interaction" in out[0].note
        # evaluate_all itself would have answered the difference at `at` alone: a "yes" to another claim.
        assert evaluate_all([gap], data, ["data_per_class"])[0].verdict == "yes"
    monkeypatch.setattr(HY, "SUPPORTED_KINDS", ("difference", "interaction"), raising=False)
    assert R.engine_kinds() == ("difference", "interaction")


def test_console_lines_and_html():
    rows = [R.ClaimRow("e", "a", "difference", "EDGE Q2", "1%", "2%", "reproduced", "", "yes", "3/3"),
            R.ClaimRow("e", "b", "chance", "EDGE Q4", "33.3%", "40%", "undecided", "cannot exclude ±5.0 pts", "inconclusive", "3")]
    lines = R.console_lines(rows)
    assert lines[0] == "2 claims: 1 reproduced, 1 undecided"
    assert len(lines) == 2 and "undecided" in lines[1] and "source 33.3%" in lines[1] and "cannot exclude" in lines[1]
    html = R.table_html(rows)
    assert html.count("<tr>") == 3 and 'class="verdict v-inconclusive">undecided' in html and "source value" in html


def test_study_csv_and_report_lead_with_the_reproduction(tmp_path):
    from analysis.study import study_verdicts, summary_table, verdict_rows, StudyEntry
    from analysis.sweep_data import SweepData
    from search_spaces import get_experiment

    exp = get_experiment("edge-data-per-class")
    decl = dataclasses.asdict(exp)
    data = runs({(CNN, n): [0.99, 0.98, 1.0] for n in (10, 30, 50, 100)}
                | {(MLP, n): [0.60, 0.62, 0.61] for n in (10, 30, 50, 100)})
    sweep = SweepData(parent={"name": "s", "experiment": exp.name, "tags": {}, "params": {}, "declaration": decl},
                      runs=data, swept_keys=["pairing", "data_per_class"], metrics=["val_acc"])
    answers = study_verdicts({exp.name: sweep})
    rows = verdict_rows(answers)
    assert len(rows) == len(exp.hypotheses) == len(answers.claims[exp.name])
    assert {"status", "source", "source_value", "ours", "kind"} <= set(rows.columns)
    assert rows.iloc[0]["source_value"] == "86.7% vs 58.0%"
    table = summary_table(answers, [StudyEntry(exp.name, "s", "finished")])
    assert table.iloc[-1]["experiment"] == "total" and table.iloc[-1]["claims"] == len(exp.hypotheses)
    assert sum(table.iloc[-1][s] for s in R.STATUSES) == len(exp.hypotheses)


THRESHOLD = Hypothesis("CNN reaches 90% at data_per_class=10", CNN, kind="threshold", threshold=0.9,
                       at={"data_per_class": 10}, source="EDGE Q2", source_value="96%")


def test_threshold_with_too_few_seeds_says_so_and_how_many_it_takes():
    # Three seeds all at chance: the sign test cannot reach the level with 3 seeds whatever the values,
    # so there is no "cannot exclude +-X" (it would be the distance to the metric's bound), only the seeds needed.
    data = runs({(CNN, 10): [1 / 3, 1 / 3, 1 / 3]})
    [r] = R.evaluate_claims([THRESHOLD], data, ["data_per_class"])
    status, detail, need = R.status_of(THRESHOLD, r)
    assert r.verdict == "inconclusive" and r.cannot_exclude != r.cannot_exclude
    assert status == "undecided" and detail.startswith("too few seeds for an interval (3 run)")
    assert need is not None and need > 3 and 0.5 ** need <= r.alpha and f"about {need} seeds" in detail
    assert "pts" not in detail


def test_threshold_claims_count_what_single_seed_runs_would_have_said():
    # 12 seeds, 4 of them collapsed: the median clears 90% but the sign test's interval reaches the
    # collapsed seeds, so undecided, and the single-seed tally says why.
    data = runs({(CNN, 10): [0.97, 0.96, 0.95, 0.97, 0.98, 0.96, 0.95, 0.97, 0.5, 0.6, 0.55, 0.4]})
    [r] = R.evaluate_claims([THRESHOLD], data, ["data_per_class"])
    assert (r.single.wins, r.single.losses, r.single.n) == (8, 4, 12)
    assert r.verdict == "inconclusive" and "yes in 8 of 12 seeds, no in 4" in r.single_seed_sentence
    # a "yes" that a quarter of the one-seed runs would contradict is fragile
    assert R.status_of(THRESHOLD, dataclasses.replace(r, verdict="yes"))[0] == "fragile"
    clean = runs({(CNN, 10): [0.97, 0.96, 0.95, 0.97, 0.98, 0.96, 0.95, 0.97, 0.96, 0.99, 0.95, 0.94]})
    [ok] = R.evaluate_claims([THRESHOLD], clean, ["data_per_class"])
    assert ok.verdict == "yes" and R.status_of(THRESHOLD, ok)[0] == "reproduced"
    assert (ok.single.wins, ok.single.losses) == (12, 0)
