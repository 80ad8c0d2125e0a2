"""Answer an experiment's claims from the data: a two-part test per cell, three outcomes.

Every claim x cell is decided by `analysis.sequential` at the level of the look it was reached
at (one look for a fixed sweep: two-sided alpha 0.05; the group-sequential levels for a sweep
run with --until-decided). Verdicts:

- "yes": the claim holds as declared (a difference in the claimed direction; within the margin
  for an equivalence claim; the threshold met; at chance),
- "no": the data decisively contradict it,
- "equivalent": for a difference claim, the two sides shown equivalent within +-margin,
- "inconclusive": neither, and the interval "cannot exclude +-X",
- "not tested": a side has no runs.

Each claim has its own error rate (a reproduction table answers each claim on its own); the
family-wise Holm correction of earlier versions is gone (`p_adj` equals `p`).
Beside the verdict: each side's mean, how many seeds learned every class (k/n with a
Clopper-Pearson interval) and the median accuracy of those that learned; the difference of the
learned seeds' means with its interval at the verdict's level; power-based seeds needed.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis import sequential as Q
from analysis import stats as ST
from analysis.aggregate import group_cells, sort_key
from analysis.side import Side, learned_flags, num_classes, summarise
from analysis.style import cell_label, is_accuracy
from core import store_schema as S

ALPHA = Q.ALPHA
VERDICTS = ("yes", "no", "equivalent", "inconclusive", "not tested")
KINDS = ("difference", "equivalence", "threshold", "chance", "interaction")
DEFAULT_MARGIN = 0.05  # accuracies: equivalence margin of a difference claim that declares none (5 points)
NAN4 = (math.nan,) * 3 + (0,)


@dataclass(frozen=True)
class HypothesisResult:
    """The answer for one claim in one cell.

    `better`/`worse`: (mean, low, high, n) of each side; `sides` the full summaries; `effect` the
    estimate with its interval at the verdict's level (`confidence`): the learned-seed difference
    better - worse for two-sided claims, the median for threshold/chance claims, the difference of
    gaps for interactions. `p` is the two-part p-value (p_adj = p).
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
    kind: str = "difference"
    cannot_exclude: float = math.nan
    seeds_needed: int | None = None
    learned: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))  # (k, n) per side
    early_stop: bool = False
    confidence: float = 1 - ALPHA
    margin: float | None = None
    look: str = ""  # "look 2 of 4" for a group-sequential sweep
    undecidable: str = ""  # inconclusive, and no realistic number of seeds decides it: why

    @property
    def where(self) -> str:
        # Keys the text already states ("... at data_per_class=10") are not repeated.
        rest = {k: v for k, v in self.cell.items()
                if not re.search(re.escape(cell_label({k: v})) + r"(?![\w.])", self.text)}
        return f" at {cell_label(rest)}" if rest else ""

    @property
    def outcome(self) -> str:
        """The verdict in words: "different (better ahead)", "equivalent within ±5.0 pts", ..."""
        pts = (lambda v: f"{100 * v:.1f} pts") if is_accuracy(self.metric) else (lambda v: f"{v:.4g}")
        if self.verdict == "inconclusive":
            x = self.cannot_exclude
            return "inconclusive" + (f": cannot exclude ±{pts(x)}" if x == x else "")
        if self.verdict == "equivalent" or (self.verdict == "yes" and self.kind in ("equivalence", "chance")):
            return f"{self.verdict}: within ±{pts(self.margin)}" if self.margin is not None else self.verdict
        return self.verdict

    @property
    def sentence(self) -> str:
        if self.verdict == "not tested":
            return f"{self.text}{self.where}: not tested ({self.note})"
        b, w = self.sides
        level = Q.fmt_confidence(self.confidence)
        if self.kind in ("threshold", "chance"):
            parts = [b.text(self.metric), f"median {fmt_effect(self.metric, self.effect, signed=False)} "
                     f"({level} interval)"]
        else:
            name = "difference of gaps" if self.kind == "interaction" else "learned-seed difference"
            parts = [f"{b.text(self.metric)} vs {w.text(self.metric)}",
                     f"{name} {fmt_effect(self.metric, self.effect)} ({level} interval)", fmt_p(self.p)]
        if self.look:
            parts.append(self.look + (", stopped early: the estimate is biased away from 0" if self.early_stop else ""))
        if self.verdict == "inconclusive":
            parts += [x for x in [seeds_advice(self)] if x]
        parts.append(f"n={b.n}/{w.n}" if self.kind not in ("threshold", "chance") else f"n={b.n}")
        if self.note:
            parts.append(self.note)
        return f"{self.text}{self.where}: {self.outcome} ({'; '.join(parts)})"

    @property
    def single_seed_sentence(self) -> str:
        return "" if self.single is None else self.single.sentence


def seeds_advice(r: HypothesisResult, it: str = " it") -> str:
    """"about 12 seeds would decide it" (one sample: threshold, chance), "about 9 seeds per side would
    decide it" (two sides), or why no realistic number of seeds would; "" without advice."""
    if r.undecidable:
        return f"no realistic number of seeds would decide{it} ({r.undecidable})"
    if not r.seeds_needed:
        return ""
    per = "" if r.kind in ("threshold", "chance") else " per side"
    if r.seeds_needed > Q.REALISTIC:
        return f"no realistic number of seeds would decide{it} (more than {Q.REALISTIC}{per} at the current estimate)"
    return f"about {r.seeds_needed} seeds{per} would decide{it}"


def fmt_effect(metric: str, effect: tuple[float, float, float], signed: bool = True) -> str:
    d, low, high = effect
    if d != d:
        return "n/a"
    sign = "+" if signed else ""
    if is_accuracy(metric):
        ci = f" [{100 * low:{sign}.1f}, {100 * high:{sign}.1f}]" if low == low else " [n/a]"
        return f"{100 * d:{sign}.1f}{' pts' if signed else '%'}{ci}"
    ci = f" [{low:{sign}.4g}, {high:{sign}.4g}]" if low == low else " [n/a]"
    return f"{d:{sign}.4g}{ci}"


def fmt_p(p: float) -> str:
    if p != p:
        return "p=n/a"
    return "two-part p<0.001" if p < 0.001 else f"two-part p={p:.3f}"


def verdict(mean_better: float, mean_worse: float, p: float, mode: str = "max", alpha: float = ALPHA) -> str:
    """A single test's verdict: "yes"/"no" when p < alpha in that direction, else "inconclusive"."""
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
        # a boolean mask even when no row is left: indexing with an empty non-bool Series would
        # select columns (none), and the next step would find no metric column
        runs = runs[runs[key].apply(lambda x, v=value: x == v).astype(bool)]
    return runs


def _by_seed(runs: pd.DataFrame, metric: str) -> dict:
    if "seed" not in runs or metric not in runs:
        return {}
    return {s: float(v) for s, v in zip(runs["seed"], pd.to_numeric(runs[metric], errors="coerce")) if v == v}


@dataclass(frozen=True)
class Context:
    """How a claim is decided: the design (looks, levels) and whether it is sequential."""

    design: Q.Design = Q.Design()
    sequential: bool = False

    def look_text(self, n: int) -> str:
        if not self.sequential:
            return ""
        return f"look {self.design.look_of(n) + 1} of {self.design.k}"

    def early(self, n: int, verdict: str) -> bool:
        return self.sequential and verdict not in ("inconclusive", "not tested") and not self.design.last(n)


def _margin(h, metric: str) -> float | None:
    m = getattr(h, "margin", None)
    if m is not None:
        return float(m)
    if getattr(h, "kind", "difference") == "chance":
        return ST.COLLAPSE_MARGIN
    return DEFAULT_MARGIN if is_accuracy(metric) else None


def _values(runs: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray | None]:
    v = pd.to_numeric(runs[metric], errors="coerce") if metric in runs else pd.Series(dtype=float)
    keep = v.notna().to_numpy()
    flags = learned_flags(runs, metric)
    return v.to_numpy()[keep], (None if flags is None else flags[keep])


def _not_tested(h, cell, note, ctx) -> HypothesisResult:
    return HypothesisResult(h.text, cell, "not tested", h.metric, note=note, alpha=ctx.design.alpha, mode=h.mode,
                            kind=getattr(h, "kind", "difference"))


def two_sided(h, shown: dict, b_runs: pd.DataFrame, w_runs: pd.DataFrame, ctx: Context,
              intervals: bool = True) -> HypothesisResult:
    """A difference or equivalence claim in one cell (`b_runs` vs `w_runs`)."""
    metric, kind = h.metric, getattr(h, "kind", "difference")
    (b, lb), (w, lw) = _values(b_runs, metric), _values(w_runs, metric)
    sign = 1.0 if h.mode == "max" else -1.0  # decide on "higher is better" values
    bound = 1.0 if is_accuracy(metric) else math.inf
    margin = _margin(h, metric)
    # decide() reads "first side greater" in both parts: the seeds that learned score higher, and
    # more seeds learn every class. Learning raises an accuracy and lowers a loss, so where the
    # claim favours the side that learns less (lower on an accuracy: the shifted MLP < the unshifted
    # MLP; higher on a loss) the sides go in swapped, each value negated: "greater" is still the
    # claim's direction and the shift still better - worse on the "higher is better" scale.
    if (h.mode == "min") == is_accuracy(metric):
        d = Q.decide(-sign * w, -sign * b, ctx.design, margin, bound, lw, lb)
        d = dataclasses.replace(d, learned=d.learned[::-1], rate=d.rate[::-1])
    else:
        d = Q.decide(sign * b, sign * w, ctx.design, margin, bound, lb, lw)
    s = d.shift
    effect = (sign * s.estimate, *sorted((sign * s.low, sign * s.high)))
    if kind == "equivalence":
        beyond = margin is not None and (s.low >= margin or s.high <= -margin)
        v = "yes" if d.outcome == "equivalent" else ("no" if beyond or d.outcome in ("greater", "less")
                                                     and _rate_differs(d) else "inconclusive")
    else:
        v = {"greater": "yes", "less": "no", "equivalent": "equivalent"}.get(d.outcome, "inconclusive")
    n = min(len(b), len(w))
    sb = summarise(b_runs, metric, intervals)
    sw = summarise(w_runs, metric, intervals)
    note = "the two parts disagree (one side learns more often, the other does better when it learns)" \
        if d.mixed else ""
    return HypothesisResult(
        h.text, shown, v, metric, (sb.mean, sb.low, sb.high, sb.n), (sw.mean, sw.low, sw.high, sw.n), d.p,
        note=note, p_adj=d.p, effect=effect, sides=(sb, sw),
        single=ST.single_seed(_by_seed(b_runs, metric), _by_seed(w_runs, metric), h.mode), alpha=ctx.design.alpha,
        mode=h.mode, kind=kind, cannot_exclude=d.cannot_exclude if v == "inconclusive" else math.nan,
        seeds_needed=d.seeds_needed if v == "inconclusive" else None, learned=d.learned,
        early_stop=ctx.early(n, v), confidence=d.confidence, margin=margin, look=ctx.look_text(n))


def _rate_differs(d: Q.Decision) -> bool:
    return any(p == p and p <= d.part_level for p in d.rate)


def one_sided(h, shown: dict, runs: pd.DataFrame, ctx: Context, intervals: bool = True) -> HypothesisResult:
    """A threshold or chance claim in one cell: the median with its order-statistic interval."""
    metric, kind = h.metric, getattr(h, "kind", "difference")
    v, flags = _values(runs, metric)
    level = ctx.design.level(len(v))
    acc = is_accuracy(metric)
    med, low, high, cover = Q.median_interval(v, level, (0.0, 1.0) if acc else (-math.inf, math.inf))
    margin = None
    if kind == "threshold":
        ref = float(h.threshold)
        hi_side = h.mode == "max"
        meets, fails = (low >= ref, high < ref) if hi_side else (high <= ref, low > ref)
        verdict_ = "yes" if meets else "no" if fails else "inconclusive"
    else:
        ref = ST.chance_level(num_classes(runs))
        margin = _margin(h, metric)
        if ref != ref:
            return _not_tested(h, shown, "the number of classes is unknown: no chance level", ctx)
        if ref - margin <= low and high <= ref + margin:
            verdict_ = "yes"
        elif low > ref + margin or high < ref - margin:
            verdict_ = "no"
        else:
            verdict_ = "inconclusive"
    side = summarise(runs, metric, intervals)
    # What a one-seed run would have said: each seed on its own against the reference.
    meets_one = (v >= ref if h.mode == "max" else v <= ref) if kind == "threshold" else np.abs(v - ref) <= margin
    single = ST.SingleSeed(int(meets_one.sum()), int((~meets_one).sum()), 0, len(v))
    need, beyond = None, Q.cannot_exclude(low, high, ref) if verdict_ == "inconclusive" else math.nan
    far = ""
    if verdict_ == "inconclusive" and cover >= 1:
        # The sign test cannot reach the level with this few seeds, whatever the values: the interval is
        # the metric's whole range, so there is no effect size to quote, only the seeds it takes.
        need, beyond = Q.fewest_seeds(ctx.design.levels[-1], True), math.nan
    elif verdict_ == "inconclusive" and len(v) > 1:
        need = Q.one_sample_seeds(_sign_routes(v, kind, h.mode, ref, margin), ctx.design.levels[-1])
        if need is None:
            far = _why_far(v, kind, h.mode, ref, margin, metric)
    k = int(flags.sum()) if flags is not None else len(v)
    return HypothesisResult(
        h.text, shown, verdict_, metric, (side.mean, side.low, side.high, side.n), p=math.nan, p_adj=math.nan,
        effect=(med, low, high), sides=(side, Side()), alpha=ctx.design.alpha, mode=h.mode, kind=kind,
        cannot_exclude=beyond, seeds_needed=need, learned=((k, len(v)), (0, 0)), single=single,
        early_stop=ctx.early(len(v), verdict_), confidence=1 - 2 * level if cover < 1 else 1.0, margin=margin,
        look=ctx.look_text(len(v)), undecidable=far,
        note="" if cover < 1 else f"{len(v)} seeds are too few for the sign test's interval at this level "
                                  f"(the metric's whole range)")


def _sign_routes(v: np.ndarray, kind: str, mode: str, ref: float, margin: float | None) -> list[list[float]]:
    """The ways a threshold or chance claim can be decided, each a list of sign tests that must all
    succeed, as the share of seeds on the needed side of each reference (the sign test's own
    parameter, so a bimodal spread is taken as it is)."""
    above = lambda x: float(np.mean(v >= x))  # noqa: E731
    below = lambda x: float(np.mean(v <= x))  # noqa: E731
    if kind == "threshold":
        meets, fails = (above(ref), 1 - above(ref)) if mode == "max" else (below(ref), 1 - below(ref))
        return [[meets], [fails]]
    # at chance: the median within ref +- margin (both ends); not at chance: clear of one end
    return [[above(ref - margin), below(ref + margin)], [1 - below(ref + margin)], [1 - above(ref - margin)]]


def _why_far(v: np.ndarray, kind: str, mode: str, ref: float, margin: float | None, metric: str) -> str:
    """Why no realistic number of seeds decides a one-sample claim: where the seeds sit."""
    pts = (lambda x: f"{100 * x:.1f}%") if is_accuracy(metric) else (lambda x: f"{x:.4g}")
    if kind == "threshold":
        meets = int(np.sum(v >= ref if mode == "max" else v <= ref))
        return f"{meets} of {len(v)} seeds meet {pts(ref)}: the median sits on the threshold"
    # the end of chance's band (ref +- margin) whose sign test is furthest from deciding
    low, high = int(np.sum(v >= ref - margin)), int(np.sum(v <= ref + margin))
    k, where = (high, f"at or below {pts(ref + margin)}") if high <= low else (low, f"at or above {pts(ref - margin)}")
    return f"{k} of {len(v)} seeds {where}: the median sits on the edge of chance ± {pts(margin)}"


def interaction(h, runs: pd.DataFrame, other: pd.DataFrame | None, ctx: Context,
                intervals: bool = True) -> HypothesisResult:
    """The gap better - worse at `at` exceeds the gap at `at_other` (difference of mean gaps,
    Welch-Satterthwaite t interval at the look's level)."""
    metric = h.metric
    source = runs if other is None else other
    at, at_other = dict(h.at or {}), dict(getattr(h, "at_other", None) or {})
    groups = []
    for where in (at, at_other):
        b = restrict(select(runs, h.better, getattr(h, "better_fixed", None)), where)
        w = restrict(select(source, h.worse, getattr(h, "worse_fixed", None)), where)
        groups.append((b, w))
    vals = [_values(g, metric)[0] for pair in groups for g in pair]
    if any(len(x) < 2 for x in vals):
        return _not_tested(h, at, f"each of the four groups needs 2+ completed seeds (have {[len(x) for x in vals]})",
                           ctx)
    sign = 1.0 if h.mode == "max" else -1.0
    gap = sign * ((vals[0].mean() - vals[1].mean()) - (vals[2].mean() - vals[3].mean()))
    var = [x.var(ddof=1) / len(x) for x in vals]
    se = math.sqrt(sum(var))
    dof = sum(var) ** 2 / sum(v ** 2 / (len(x) - 1) for v, x in zip(var, vals) if v > 0) if se > 0 else math.inf
    n = min(len(x) for x in vals)
    level = ctx.design.level(n)
    from scipy import stats

    half = float(stats.t.ppf(1 - level, dof)) * se if se > 0 else 0.0
    low, high = gap - half, gap + half
    v = "yes" if low > 0 else "no" if high < 0 else "inconclusive"
    p = float(2 * stats.t.sf(abs(gap) / se, dof)) if se > 0 else float(gap == 0)
    sb, sw = summarise(groups[0][0], metric, intervals), summarise(groups[0][1], metric, intervals)
    need = Q.seeds_needed(gap, math.sqrt(sum(x.var(ddof=1) for x in vals) / 2), None, ctx.design.levels[-1]) \
        if v == "inconclusive" else None
    effect = (sign * gap, *sorted((sign * low, sign * high)))
    return HypothesisResult(
        h.text, at, v, metric, (sb.mean, sb.low, sb.high, sb.n), (sw.mean, sw.low, sw.high, sw.n), p, p_adj=p,
        effect=effect, sides=(sb, sw), alpha=ctx.design.alpha, mode=h.mode, kind="interaction",
        cannot_exclude=Q.cannot_exclude(low, high) if v == "inconclusive" else math.nan, seeds_needed=need,
        early_stop=ctx.early(n, v), confidence=1 - 2 * level, look=ctx.look_text(n),
        note=f"gap at {cell_label(at)} minus gap at {cell_label(at_other)}")


def evaluate(hypothesis, runs: pd.DataFrame, keys: Sequence[str], other_runs: pd.DataFrame | None = None,
             alpha: float = ALPHA, intervals: bool = True, design: Q.Design | None = None,
             sequential: bool = False) -> list[HypothesisResult]:
    """Answer one claim in every cell it covers.

    Args:
        hypothesis: a search_spaces.experiment.Hypothesis.
        runs: the sweep's trials (one row each).
        keys: cell keys other than the pairing (e.g. ["data_per_class"]).
        other_runs: the trials of `hypothesis.other_experiment`, where `worse` is taken from.
        alpha: two-sided error rate of a one-look design (ignored when `design` is given).
        intervals: compute the sides' bootstrap intervals (False: faster repeated decisions).
        design: the group-sequential design the sweep ran under (None: one look at `alpha`).
        sequential: the data come from an adaptive sweep (flags early stops, names the look).

    Returns:
        one HypothesisResult per cell of the `better` side; one "not tested" result when a
        side has no completed runs.
    """
    h = hypothesis
    ctx = Context(design or Q.Design(alpha=alpha), sequential)
    kind = getattr(h, "kind", "difference")
    metric, at = h.metric, dict(h.at or {})
    if kind == "interaction":
        return [interaction(h, runs, other_runs, ctx, intervals)]
    better = restrict(select(runs, h.better, getattr(h, "better_fixed", None)), at)
    one = kind in ("threshold", "chance")
    source = runs if other_runs is None else other_runs
    worse = pd.DataFrame() if one else select(source, h.worse, getattr(h, "worse_fixed", None))
    # `at` selects the better side's cell; on the other side only keys it has apply (a
    # from-scratch CNN has no `backbone` to match a linear probe's).
    if not one:
        worse = restrict(worse, {k: v for k, v in at.items() if k in worse and worse[k].notna().any()})
    sides = ((h.better, better),) if one else ((h.better, better), (h.worse, worse))
    missing = [n for n, side in sides if side.empty]
    if missing or any(metric not in side for _, side in sides):
        note = (f"no completed runs of {' and '.join(map(repr, missing))}" if missing
                else f"metric {metric!r} was not logged")
        if at:
            note += f" with {cell_label(at)}"
        return [_not_tested(h, at, note, ctx)]
    own = [k for k in keys if k in better and better[k].notna().any()]
    # the rival runs of a cell: same values of the keys both sides sweep, except the keys the claim
    # fixes to different values on each side (1000 vs 100 epochs in one sweep)
    pinned = set(getattr(h, "better_fixed", None) or {}) | set(getattr(h, "worse_fixed", None) or {})
    shared = [k for k in own if not one and k not in pinned and k in worse and worse[k].notna().any()]
    results = []
    for key, cell_runs in group_cells(better, own):
        cell = dict(zip(own, key if isinstance(key, tuple) else (key,)))
        shown = {**at, **cell}
        if pd.to_numeric(cell_runs[metric], errors="coerce").dropna().empty:
            results.append(_not_tested(h, shown, f"no value of {metric!r} in this cell", ctx))
            continue
        if one:
            results.append(one_sided(h, shown, cell_runs, ctx, intervals))
            continue
        rivals = restrict(worse, {k: cell[k] for k in shared})
        if pd.to_numeric(rivals[metric], errors="coerce").dropna().empty:
            results.append(_not_tested(h, shown, f"no completed runs of {h.worse!r} in this cell", ctx))
            continue
        results.append(two_sided(h, shown, cell_runs, rivals, ctx, intervals))
    results.sort(key=lambda r: tuple(sort_key(v) for v in r.cell.values()))
    return results


def evaluate_all(hypotheses: Sequence, runs: pd.DataFrame, keys: Sequence[str],
                 others: Mapping[str, pd.DataFrame] | None = None, alpha: float = ALPHA,
                 intervals: bool = True, design: Q.Design | None = None,
                 sequential: bool = False) -> list[HypothesisResult]:
    """Answer every claim (each at its own error rate; see the module docstring).

    `others` maps experiment name -> its trials for `other_experiment`; a claim whose other
    experiment was not loaded is reported as "not tested".
    """
    out = []
    for h in hypotheses:
        other = getattr(h, "other_experiment", None)
        if other and other not in (others or {}):
            out.append(HypothesisResult(h.text, dict(h.at or {}), "not tested", h.metric, alpha=alpha, mode=h.mode,
                                        kind=getattr(h, "kind", "difference"),
                                        note=f"no sweep of experiment {other!r} in this store"))
            continue
        out.extend(evaluate(h, runs, keys, (others or {}).get(other) if other else None, alpha, intervals,
                            design, sequential))
    m = sum(1 for r in out if r.verdict != "not tested")
    return [r if r.verdict == "not tested" else _with_m(r, m) for r in out]


def _with_m(r: HypothesisResult, m: int) -> HypothesisResult:
    import dataclasses

    return dataclasses.replace(r, m_tests=max(m, 1))


def hypotheses_html(results: Sequence[HypothesisResult], rule: str = "") -> str:
    """The report's claim list: verdict, sentence, and the single-seed line under each."""
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
    """The legend under the claims (text)."""
    return (f"Each claim is decided at two-sided {alpha:.3g}{' (' + rule + ')' if rule else ''} by a two-part test: "
            "how often each side learns every class (Fisher's exact test on learned k/n) and how well the seeds "
            "that learned do (Welch's t on those seeds: the difference of their means, interval shown at the "
            "verdict's level), each part at half the level. yes/no: the claim holds / is contradicted; "
            f"equivalent: the learned-seed difference lies within ±margin (default {DEFAULT_MARGIN * 100:.0f} points) "
            "and the learned rates do not differ; inconclusive: cannot exclude ±X. Threshold and chance claims use "
            "the median with its order-statistic interval. Side: mean [bootstrap interval], learned k/n "
            "[Clopper-Pearson 95%] and the median of the seeds that learned; the single-seed line pairs the sides "
            "by seed number.")
