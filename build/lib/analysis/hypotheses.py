"""Answer an experiment's hypotheses from the data: per cell, a Welch test, Holm, effect size, verdict.

Every hypothesis x cell is one test. The verdict compares its Holm-adjusted p-value (over all
tests of the experiment) with `alpha`: "yes"/"no" when adjusted p < alpha in that direction,
"inconclusive" when p >= alpha (or the means are equal), "not tested" when a side has no runs.
Beside the verdict: each side's mean with a bounded bootstrap interval, median and seeds at
chance (analysis.stats), the difference of means with its interval, and what one-seed runs
would have concluded.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis import stats as ST
from analysis.aggregate import group_cells, sort_key, welch
from analysis.style import cell_label, fmt_value, is_accuracy
from core import store_schema as S

ALPHA = 0.05
VERDICTS = ("yes", "no", "inconclusive", "not tested")
NAN4 = (math.nan,) * 3 + (0,)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: mean with its interval, median, seeds at chance, n."""

    mean: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    median: float = math.nan
    collapsed: float = math.nan  # seeds at chance level (NaN: unknown number of classes)

    def text(self, metric: str) -> str:
        """"92.0% [90.0, 94.0], median 92.0%" (+ ", 1 of 3 at chance" when any seed collapsed)."""
        if self.mean != self.mean:
            return "n/a"
        acc = is_accuracy(metric)
        f = (lambda v: f"{100 * v:.1f}") if acc else (lambda v: f"{v:.4g}")
        out = fmt_value(metric, self.mean)
        out += f" [{f(self.low)}, {f(self.high)}]" if self.low == self.low else " [n/a]"
        if self.n >= 3:
            out += f", median {fmt_value(metric, self.median)}"
        if self.collapsed == self.collapsed and self.collapsed > 0:
            out += f", {int(self.collapsed)} of {self.n} at chance"
        return out


@dataclass(frozen=True)
class HypothesisResult:
    """The answer for one hypothesis in one cell.

    `better`/`worse` keep the (mean, low, high, n) tuples of earlier versions; `sides` has the
    full summaries, `effect` the difference of means (better - worse) with its interval, `p` the
    raw Welch p-value and `p_adj` the Holm-adjusted one the verdict used (at `alpha`).
    """

    text: str
    cell: dict[str, Any]
    verdict: str
    metric: str = "val_acc"
    better: tuple[float, float, float, int] = NAN4
    worse: tuple[float, float, float, int] = NAN4
    p: float = math.nan
    note: str = field(default="")
    p_adj: float = math.nan
    effect: tuple[float, float, float] = (math.nan,) * 3
    sides: tuple[Side, Side] = (Side(), Side())
    single: ST.SingleSeed | None = None
    alpha: float = ALPHA
    mode: str = "max"
    m_tests: int = 1

    @property
    def where(self) -> str:
        # Keys the text already states ("... at data_per_class=10") are not repeated.
        rest = {k: v for k, v in self.cell.items()
                if not re.search(re.escape(cell_label({k: v})) + r"(?![\w.])", self.text)}
        return f" at {cell_label(rest)}" if rest else ""

    @property
    def sentence(self) -> str:
        """"CNN > MLP at data_per_class=10: yes (92.0% [90.0, 94.0] vs 63.0% [60.0, 66.0]; difference
        +29.0 pts [26.0, 32.0]; p<0.001, Holm p<0.001 < 0.05; n=3/3)"."""
        if self.verdict == "not tested":
            return f"{self.text}{self.where}: not tested ({self.note})"
        b, w = self.sides
        parts = [f"{b.text(self.metric)} vs {w.text(self.metric)}", f"difference {fmt_effect(self.metric, self.effect)}",
                 fmt_p(self.p) + (f", Holm {fmt_p(self.p_adj)}" if self.m_tests > 1 and self.p_adj == self.p_adj else "")
                 + (f" vs alpha {self.alpha:.3g}" if self.p == self.p else ""),
                 f"n={b.n}/{w.n}"]
        return f"{self.text}{self.where}: {self.verdict} ({'; '.join(parts)})"

    @property
    def single_seed_sentence(self) -> str:
        return "" if self.single is None else self.single.sentence


def fmt_effect(metric: str, effect: tuple[float, float, float]) -> str:
    d, low, high = effect
    if d != d:
        return "n/a"
    if is_accuracy(metric):
        ci = f" [{100 * low:+.1f}, {100 * high:+.1f}]" if low == low else " [n/a]"
        return f"{100 * d:+.1f} pts{ci}"
    ci = f" [{low:+.4g}, {high:+.4g}]" if low == low else " [n/a]"
    return f"{d:+.4g}{ci}"


def fmt_p(p: float) -> str:
    if p != p:
        return "p=n/a (needs 2+ seeds per side)"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict(mean_better: float, mean_worse: float, p: float, mode: str = "max", alpha: float = ALPHA) -> str:
    """"yes" if `better` wins significantly (p < alpha), "no" if it loses significantly, else
    "inconclusive" (p >= alpha, p unknown, or equal means)."""
    if p != p or p >= alpha or mean_better == mean_worse:
        return "inconclusive"
    wins = mean_better > mean_worse if mode == "max" else mean_better < mean_worse
    return "yes" if wins else "no"


def select(runs: pd.DataFrame, name: str, fixed: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Completed runs of `name` (a pairing, a model or a series), optionally with fixed params."""
    if runs.empty:
        return runs
    mask = pd.Series(False, index=runs.index)
    for col in ("pairing", "model", "series"):
        if col in runs:
            mask |= runs[col].astype(str) == name
    if S.TAG_STATUS_REASON in runs:
        mask &= runs[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED
    out = runs[mask]
    return restrict(out, fixed or {})


def restrict(runs: pd.DataFrame, at: Mapping[str, Any]) -> pd.DataFrame:
    """Rows whose columns equal every value in `at` (a missing column selects nothing)."""
    for key, value in at.items():
        if key not in runs:
            return runs.iloc[0:0]
        value = tuple(value) if isinstance(value, list) else value
        runs = runs[runs[key].apply(lambda x, v=value: x == v)]
    return runs


def num_classes(runs: pd.DataFrame) -> int | None:
    """Classes of the task the runs solve: num_classes, else len(class_type), else the dataset's."""
    if runs.empty:
        return None
    row = runs.iloc[0]
    n = row.get("num_classes")
    if isinstance(n, (int, float)) and n == n and not isinstance(n, bool):
        return int(n)
    ct = row.get("class_type")
    if isinstance(ct, (tuple, list)):
        return len(ct)
    dataset = row.get("dataset")
    if not isinstance(dataset, str) and isinstance(row.get("pairing"), str):
        dataset = row["pairing"].split("/")[-1]
    return ST.DATASET_CLASSES.get(dataset) if isinstance(dataset, str) else None


def summarise(values: pd.Series, metric: str, classes: int | None, intervals: bool = True) -> Side:
    """A Side from one side's values (bootstrap interval bounded to [0, 1] for accuracies)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    acc = is_accuracy(metric)
    if intervals:
        mean, low, high = ST.bootstrap_interval(v, (0.0, 1.0) if acc else None)
    else:
        mean, low, high = (float(v.mean()) if len(v) else math.nan), math.nan, math.nan
    return Side(mean, low, high, len(v), ST.median(v), ST.collapsed(v, classes) if acc else math.nan)


def _by_seed(runs: pd.DataFrame, metric: str) -> dict:
    if "seed" not in runs:
        return {}
    return {s: float(v) for s, v in zip(runs["seed"], pd.to_numeric(runs[metric], errors="coerce")) if v == v}


def evaluate(hypothesis, runs: pd.DataFrame, keys: Sequence[str],
             other_runs: pd.DataFrame | None = None, alpha: float = ALPHA,
             intervals: bool = True) -> list[HypothesisResult]:
    """Answer one Hypothesis in every cell it covers (raw p-values; `evaluate_all` applies Holm).

    Args:
        hypothesis: a search_spaces.experiment.Hypothesis (text, better, worse, metric, mode,
            at, other_experiment; optional better_fixed/worse_fixed).
        runs: the sweep's trials (one row each).
        keys: cell keys other than the pairing (e.g. ["data_per_class"]).
        other_runs: the trials of `hypothesis.other_experiment`, where `worse` is taken from.
        alpha: significance level of the verdict.
        intervals: compute bootstrap intervals (False: only means and p-values, for fast
            repeated decisions).

    Returns:
        one HypothesisResult per cell of the `better` side; one "not tested" result when a
        side has no completed runs.
    """
    h = hypothesis
    metric, at = h.metric, dict(h.at or {})
    better = restrict(select(runs, h.better, getattr(h, "better_fixed", None)), at)
    source = runs if other_runs is None else other_runs
    worse = select(source, h.worse, getattr(h, "worse_fixed", None))
    # `at` selects the better side's cell; on the other side only keys it has apply (a
    # from-scratch CNN has no `backbone` to match a linear probe's).
    worse = restrict(worse, {k: v for k, v in at.items() if k in worse and worse[k].notna().any()})
    missing = [n for n, side in ((h.better, better), (h.worse, worse)) if side.empty]
    if missing or metric not in better or metric not in worse:
        note = (f"no completed runs of {' and '.join(map(repr, missing))}" if missing
                else f"metric {metric!r} was not logged")
        if at:
            note += f" with {cell_label(at)}"
        return [HypothesisResult(h.text, at, "not tested", metric, note=note, alpha=alpha, mode=h.mode)]
    own = [k for k in keys if k in better and better[k].notna().any()]
    shared = [k for k in own if k in worse and worse[k].notna().any()]
    results = []
    for key, cell_runs in group_cells(better, own):
        cell = dict(zip(own, key if isinstance(key, tuple) else (key,)))
        rivals = restrict(worse, {k: cell[k] for k in shared})
        b = pd.to_numeric(cell_runs[metric], errors="coerce")
        w = pd.to_numeric(rivals[metric], errors="coerce")
        shown = {**at, **cell}
        if w.dropna().empty or b.dropna().empty:
            results.append(HypothesisResult(h.text, shown, "not tested", metric, alpha=alpha, mode=h.mode,
                                            note=f"no completed runs of {h.worse!r} in this cell"))
            continue
        test = welch(b, w)
        sb = summarise(b, metric, num_classes(cell_runs), intervals)
        sw = summarise(w, metric, num_classes(rivals), intervals)
        bounds = (0.0, 1.0) if is_accuracy(metric) else None
        effect = ST.diff_interval(b, w, bounds) if intervals else (test.mean_a - test.mean_b, math.nan, math.nan)
        results.append(HypothesisResult(
            h.text, shown, verdict(test.mean_a, test.mean_b, test.p, h.mode, alpha), metric,
            (sb.mean, sb.low, sb.high, test.n_a), (sw.mean, sw.low, sw.high, test.n_b), test.p,
            p_adj=test.p, effect=effect, sides=(sb, sw),
            single=ST.single_seed(_by_seed(cell_runs, metric), _by_seed(rivals, metric), h.mode),
            alpha=alpha, mode=h.mode))
    results.sort(key=lambda r: tuple(sort_key(v) for v in r.cell.values()))
    return results


def with_holm(results: Sequence[HypothesisResult]) -> list[HypothesisResult]:
    """Holm-adjust the p-values of every tested result together and redo the verdicts."""
    adjusted = ST.holm([r.p for r in results])
    m = sum(1 for r in results if r.p == r.p)
    out = []
    for r, q in zip(results, adjusted):
        if r.verdict == "not tested":
            out.append(r)
            continue
        v = verdict(r.better[0], r.worse[0], q, r.mode, r.alpha)
        out.append(dataclasses.replace(r, p_adj=q, verdict=v, m_tests=max(m, 1)))
    return out


def evaluate_all(hypotheses: Sequence, runs: pd.DataFrame, keys: Sequence[str],
                 others: Mapping[str, pd.DataFrame] | None = None, alpha: float = ALPHA,
                 intervals: bool = True) -> list[HypothesisResult]:
    """Answer every hypothesis, Holm-corrected over all of them (and their cells).

    `others` maps experiment name -> its trials for `other_experiment`; a hypothesis whose
    other experiment was not loaded is reported as "not tested".
    """
    out = []
    for h in hypotheses:
        other = getattr(h, "other_experiment", None)
        if other and other not in (others or {}):
            out.append(HypothesisResult(h.text, dict(h.at or {}), "not tested", h.metric, alpha=alpha, mode=h.mode,
                                        note=f"no sweep of experiment {other!r} in this store"))
            continue
        out.extend(evaluate(h, runs, keys, (others or {}).get(other) if other else None, alpha, intervals))
    return with_holm(out)


def hypotheses_html(results: Sequence[HypothesisResult], rule: str = "") -> str:
    """The report's hypothesis list: verdict, sentence, and the single-seed line under each."""
    from analysis.html import esc

    if not results:
        return '<p class="muted">This experiment declares no hypotheses.</p>'
    items = []
    for r in results:
        cls = "v-" + r.verdict.replace(" ", "-")
        single = f'<br><span class="muted">{esc(r.single_seed_sentence)}</span>' if r.single_seed_sentence else ""
        items.append(f'<li><span class="verdict {cls}">{esc(r.verdict)}</span> {esc(r.sentence)}{single}</li>')
    alpha = results[0].alpha
    return ("<ul>" + "".join(items) + "</ul><p class=\"muted\">" + esc(explain(alpha, rule)) + "</p>")


def explain(alpha: float = ALPHA, rule: str = "") -> str:
    """The legend under the hypotheses (text)."""
    return (f"yes/no: the difference of means is significant in that direction (Welch t-test, Holm-adjusted "
            f"over this experiment's hypotheses and cells, adjusted p < {alpha:.3g}{'; ' + rule if rule else ''}); "
            f"[low, high]: {ST.INTERVAL_NOTE}; difference: mean of better minus mean of worse with its bootstrap "
            f"interval; at chance: seeds at most {ST.COLLAPSE_MARGIN * 100:.0f} points above 1/classes; "
            "n = completed seeds per side; the single-seed line pairs the sides by seed number.")
