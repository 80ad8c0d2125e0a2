"""Answer an experiment's hypotheses from the data: per cell, CIs, a Welch test and a verdict."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.aggregate import group_cells, sort_key, t_interval, welch
from analysis.style import cell_label, fmt_mean_ci
from core import store_schema as S

ALPHA = 0.05
VERDICTS = ("yes", "no", "inconclusive", "not tested")


@dataclass(frozen=True)
class HypothesisResult:
    """The answer for one hypothesis in one cell."""

    text: str
    cell: dict[str, Any]
    verdict: str
    metric: str = "val_acc"
    better: tuple[float, float, float, int] = (float("nan"),) * 3 + (0,)  # mean, low, high, n
    worse: tuple[float, float, float, int] = (float("nan"),) * 3 + (0,)
    p: float = float("nan")
    note: str = field(default="")

    @property
    def sentence(self) -> str:
        """"CNN > MLP at data_per_class=10: yes (96.0% ± 2.1 vs 61.3% ± 5.0, p=0.003, n=3/3)"."""
        # Keys the text already states ("... at data_per_class=10") are not repeated.
        rest = {k: v for k, v in self.cell.items()
                if not re.search(re.escape(cell_label({k: v})) + r"(?![\w.])", self.text)}
        where = f" at {cell_label(rest)}" if rest else ""
        if self.verdict == "not tested":
            return f"{self.text}{where}: not tested ({self.note})"
        b, w = self.better, self.worse
        return (f"{self.text}{where}: {self.verdict} ({fmt_mean_ci(self.metric, *b[:3])} vs "
                f"{fmt_mean_ci(self.metric, *w[:3])}, {fmt_p(self.p)}, n={b[3]}/{w[3]})")


def fmt_p(p: float) -> str:
    if p != p:
        return "p=n/a (needs 2+ seeds per side)"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict(mean_better: float, mean_worse: float, p: float, mode: str = "max") -> str:
    """"yes" if `better` wins significantly, "no" if it loses significantly, else "inconclusive"."""
    if p != p or p >= ALPHA or mean_better == mean_worse:
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


def evaluate(hypothesis, runs: pd.DataFrame, keys: Sequence[str],
             other_runs: pd.DataFrame | None = None) -> list[HypothesisResult]:
    """Answer one Hypothesis in every cell it covers.

    Args:
        hypothesis: a search_spaces.experiment.Hypothesis (text, better, worse, metric, mode,
            at, other_experiment; optional better_fixed/worse_fixed).
        runs: the sweep's trials (one row each).
        keys: cell keys other than the pairing (e.g. ["data_per_class"]).
        other_runs: the trials of `hypothesis.other_experiment`, where `worse` is taken from.

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
        return [HypothesisResult(h.text, at, "not tested", metric, note=note)]
    own = [k for k in keys if k in better and better[k].notna().any()]
    shared = [k for k in own if k in worse and worse[k].notna().any()]
    results = []
    for key, cell_runs in group_cells(better, own):
        cell = dict(zip(own, key if isinstance(key, tuple) else (key,)))
        rivals = restrict(worse, {k: cell[k] for k in shared})
        b = pd.to_numeric(cell_runs[metric], errors="coerce")
        w = pd.to_numeric(rivals[metric], errors="coerce")
        shown = {**at, **cell}
        if w.empty:
            results.append(HypothesisResult(h.text, shown, "not tested", metric,
                                            note=f"no completed runs of {h.worse!r} in this cell"))
            continue
        test = welch(b, w)
        bm, _, bl, bh = t_interval(b)
        wm, _, wl, wh = t_interval(w)
        results.append(HypothesisResult(
            h.text, shown, verdict(test.mean_a, test.mean_b, test.p, h.mode), metric,
            (bm, bl, bh, test.n_a), (wm, wl, wh, test.n_b), test.p))
    results.sort(key=lambda r: tuple(sort_key(v) for v in r.cell.values()))
    return results


def evaluate_all(hypotheses: Sequence, runs: pd.DataFrame, keys: Sequence[str],
                 others: Mapping[str, pd.DataFrame] | None = None) -> list[HypothesisResult]:
    """Answer every hypothesis; `others` maps experiment name -> its trials for `other_experiment`.

    A hypothesis whose other experiment was not loaded is reported as "not tested".
    """
    out = []
    for h in hypotheses:
        other = getattr(h, "other_experiment", None)
        if other and other not in (others or {}):
            out.append(HypothesisResult(h.text, dict(h.at or {}), "not tested", h.metric,
                                        note=f"no sweep of experiment {other!r} in this store"))
            continue
        out.extend(evaluate(h, runs, keys, (others or {}).get(other) if other else None))
    return out
