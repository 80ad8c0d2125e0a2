"""The reproduction table: one row per source claim, with a status a researcher can read at a glance.

Each declared Hypothesis is a claim of a source notebook (kind, source, source_value; see
search_spaces/experiment.py). analysis.hypotheses answers it per cell; this module turns that answer
into a status:

  reproduced    the claim holds as declared (an equivalence claim: shown equivalent within its margin)
  contradicted  decisively the other way (or, for an equivalence claim, shown different)
  equivalent    a difference claim whose two sides are shown equivalent within its margin
  fragile       reproduced or contradicted on the mean, but a single-seed run (what the notebook ran)
                would have disagreed in a quarter of the seeds or more
  undecided     not decided at this budget: what cannot be excluded and how many seeds would decide
  not tested    no runs for a side (e.g. the image notebooks' data is not on this machine), or a
                kind the analysis engine does not answer yet

Beside it: the source's single-run value and ours (estimate [interval], and "learned k/n" where
seeds can collapse to chance). The fields `verdict`, `cannot_exclude`, `seeds_needed` and `learned`
of HypothesisResult are read where the engine provides them, with the fallbacks below otherwise.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.hypotheses import HypothesisResult, evaluate_all, fmt_effect
from analysis.sequential import REALISTIC
from analysis.style import fmt_value, is_accuracy

STATUSES = ("reproduced", "contradicted", "equivalent", "fragile", "undecided", "not tested")
FRAGILE_SHARE = 0.25  # a single-seed run disagrees in at least this share of the seeds
CSS_CLASS = {"reproduced": "v-yes", "contradicted": "v-no", "equivalent": "v-equivalent", "fragile": "v-fragile",
             "undecided": "v-inconclusive", "not tested": "v-not-tested"}


def engine_kinds() -> tuple[str, ...]:
    """The Hypothesis kinds analysis.hypotheses answers: its SUPPORTED_KINDS (or KINDS) where it
    declares them, every kind where its results carry a `kind`, else differences only."""
    from analysis import hypotheses as HY
    from search_spaces.experiment import HYPOTHESIS_KINDS

    for name in ("SUPPORTED_KINDS", "KINDS"):
        kinds = getattr(HY, name, None)
        if kinds:
            return tuple(kinds)
    if "kind" in {f.name for f in dataclasses.fields(HypothesisResult)}:
        return tuple(HYPOTHESIS_KINDS)
    return ("difference",)


def evaluate_claims(hypotheses: Sequence, runs: pd.DataFrame, keys: Sequence[str],
                    others: Mapping[str, pd.DataFrame] | None = None, alpha: float | None = None,
                    **engine) -> list[HypothesisResult]:
    """evaluate_all for the kinds the engine answers; a "not tested" result, saying why, for the rest.

    Results come back in declaration order (one or more per hypothesis, one per cell).
    """
    kinds = engine_kinds()
    answered = [h for h in hypotheses if getattr(h, "kind", "difference") in kinds]
    kw = {} if alpha is None else {"alpha": alpha}
    results = evaluate_all(answered, runs, keys, others, **kw, **engine) if answered else []  # design, sequential
    by_text: dict[str, list[HypothesisResult]] = {}
    for r in results:
        by_text.setdefault(r.text, []).append(r)
    out = []
    for h in hypotheses:
        kind = getattr(h, "kind", "difference")
        if kind in kinds:
            out += by_text.pop(h.text, [])
        else:
            out.append(HypothesisResult(h.text, dict(h.at or {}), "not tested", h.metric, mode=h.mode,
                                        note=f"the analysis engine does not answer {kind} claims yet",
                                        **({"alpha": alpha} if alpha is not None else {})))
    for rest in by_text.values():  # texts not matched (duplicates): kept, never dropped
        out += rest
    return out


@dataclass(frozen=True)
class ClaimRow:
    """One row of the reproduction table."""

    experiment: str
    claim: str
    kind: str
    source: str
    source_value: str
    ours: str
    status: str
    detail: str
    verdict: str
    n: str
    seeds_needed: int | None = None


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _n_sides(r: HypothesisResult) -> tuple[int, int]:
    return int(_num(r.better[3]) if r.better[3] == r.better[3] else 0), int(_num(r.worse[3]) if r.worse[3] == r.worse[3] else 0)


def learned_text(r: HypothesisResult) -> str:
    """"learned 5/6 vs 6/6": the engine's `learned` where given, else seeds not at chance per side."""
    given = getattr(r, "learned", None)
    if isinstance(given, str) and given:
        return given if given.startswith("learned") else f"learned {given}"
    if isinstance(given, Mapping) and given:
        given = list(given.values())
    if isinstance(given, (list, tuple)) and given:
        parts = []
        for side in given:
            if isinstance(side, (list, tuple)) and len(side) == 2:
                if int(side[1]):  # (0, 0): a side with no runs (threshold and chance claims have one side)
                    parts.append(f"{int(side[0])}/{int(side[1])}")
            elif side is not None:
                parts.append(str(side))
        return "learned " + " vs ".join(parts) if parts else ""
    if not is_accuracy(r.metric):
        return ""
    parts = []
    for side in r.sides:
        if side.n and side.collapsed == side.collapsed:
            parts.append(f"{side.n - int(side.collapsed)}/{side.n}")
    return "learned " + " vs ".join(parts) if parts else ""


def ours_text(r: HypothesisResult, kind: str) -> str:
    """Our estimate with its interval: both sides and the difference, or the one side of a
    threshold / chance claim; then "learned k/n"."""
    if r.verdict == "not tested":
        return "—"
    b, w = r.sides
    two = kind not in ("threshold", "chance") and w.n
    if two:
        text = f"{fmt_value(r.metric, b.mean)} vs {fmt_value(r.metric, w.mean)}"
        if r.effect[0] == r.effect[0]:
            text += f" ({fmt_effect(r.metric, r.effect)})"
    else:
        text = b.text(r.metric) if b.n else "n/a"
    learned = learned_text(r)
    return f"{text}; {learned}" if learned and "learned" not in text else text


def single_disagreement(r: HypothesisResult, verdict: str) -> tuple[int, int]:
    """(seeds whose one-seed run would disagree with `verdict`, seeds compared)."""
    s = r.single
    if s is None or not getattr(s, "n", 0):
        return 0, 0
    if verdict == "yes":
        return s.losses + s.ties, s.n
    if verdict == "no":
        return s.wins, s.n
    return 0, 0


def cannot_exclude(r: HypothesisResult) -> float:
    """The largest effect the result cannot exclude: the engine's `cannot_exclude`, else the
    farther end of the difference interval."""
    given = _num(getattr(r, "cannot_exclude", math.nan))
    if given == given:
        return abs(given)
    low, high = r.effect[1], r.effect[2]
    if low != low or high != high:
        return math.nan
    return max(abs(low), abs(high))


def seeds_needed(r: HypothesisResult) -> int | None:
    """Seeds per side a decision would need: the engine's `seeds_needed`, else from the width of
    the difference interval at this n and the verdict's alpha (normal approximation)."""
    given = getattr(r, "seeds_needed", None)
    if given is not None and _num(given) == _num(given):
        return int(given)
    if getattr(r, "undecidable", ""):
        return None
    d, low, high = r.effect
    n = min(_n_sides(r))
    if d != d or low != low or high != high or n < 2 or abs(d) < 1e-12:
        return None
    from scipy.stats import norm

    half = (high - low) / 2
    z = norm.ppf(1 - r.alpha / 2) / norm.ppf(0.975)  # the interval is 95%; the verdict uses alpha
    need = math.ceil(n * (z * half / abs(d)) ** 2)
    return max(need, n + 1)


def _fmt_amount(metric: str, x: float) -> str:
    if x != x:
        return "n/a"
    return f"±{100 * x:.1f} pts" if is_accuracy(metric) else f"±{x:.4g}"


def status_of(h: Any, r: HypothesisResult) -> tuple[str, str, int | None]:
    """(status, detail, seeds needed) for one claim's result in one cell."""
    kind = getattr(h, "kind", "difference") if h is not None else "difference"
    v = r.verdict
    if v == "not tested":
        return "not tested", r.note, None
    if v == "inconclusive":
        need = seeds_needed(r)
        one_sided_without_interval = kind in ("threshold", "chance") and _num(getattr(r, "cannot_exclude", math.nan)) \
            != _num(getattr(r, "cannot_exclude", math.nan))
        if one_sided_without_interval or r.effect[1] != r.effect[1]:
            detail = f"too few seeds for an interval ({_n_sides(r)[0]} run)"
        else:
            detail = f"cannot exclude {_fmt_amount(r.metric, cannot_exclude(r))}"
        from analysis.hypotheses import seeds_advice

        advice = seeds_advice(dataclasses.replace(r, seeds_needed=need), it="") if isinstance(r, HypothesisResult) \
            else (f"about {need} seeds per side would decide" if need else "")
        if getattr(r, "undecidable", "") or (need and need > REALISTIC):
            need = None  # no figure in the table's seeds-needed column: no realistic number decides it
        if advice:
            detail += f"; {advice}"
        return "undecided", detail, need
    if v == "equivalent":
        margin = getattr(h, "margin", None)
        within = f" within {_fmt_amount(r.metric, margin)}" if margin else ""
        if kind in ("equivalence", "chance"):  # the claim is the equivalence (to the other side, to chance)
            return "reproduced", f"equivalent{within}", None
        return "equivalent", f"no difference{within} (the source claims one)", None
    status = "reproduced" if v == "yes" else "contradicted" if v == "no" else "undecided"
    if status == "undecided":
        return status, f"verdict {v!r}", None
    k, n = single_disagreement(r, v)
    if n and k / n >= FRAGILE_SHARE:
        side = "reproduced" if v == "yes" else "contradicted"
        return "fragile", f"{side} on the mean, but a single-seed run disagrees in {k} of {n} seeds", None
    return status, (f"single-seed runs agree in {n - k} of {n} seeds" if n else ""), None


def claim_rows(experiment: str, hypotheses: Sequence, results: Sequence[HypothesisResult]) -> list[ClaimRow]:
    """Rows for one experiment: each result matched to its declared hypothesis by text."""
    by_text = {h.text: h for h in hypotheses}
    rows = []
    for r in results:
        h = by_text.get(r.text)
        kind = getattr(h, "kind", "difference") if h is not None else "difference"
        status, detail, need = status_of(h, r)
        nb, nw = _n_sides(r)
        rows.append(ClaimRow(experiment, r.text + r.where, kind, getattr(h, "source", "") or "",
                             getattr(h, "source_value", "") or "", ours_text(r, kind), status, detail, r.verdict,
                             f"{nb}/{nw}" if kind not in ("threshold", "chance") else str(nb), need))
    return rows


def rows_frame(rows: Sequence[ClaimRow]) -> pd.DataFrame:
    cols = [f.name for f in dataclasses.fields(ClaimRow)]
    return pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=cols)


def status_counts(rows: Sequence[ClaimRow]) -> dict[str, int]:
    counts = Counter(r.status for r in rows)
    return {s: counts.get(s, 0) for s in STATUSES}


def counts_line(rows: Sequence[ClaimRow]) -> str:
    """"40 claims: 25 reproduced, 3 contradicted, ..." (zero counts left out)."""
    counts = status_counts(rows)
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return f"{len(rows)} claim{'s' if len(rows) != 1 else ''}: " + (", ".join(parts) if parts else "none")


def table_html(rows: Sequence[ClaimRow], with_experiment: bool = True) -> str:
    """The reproduction table (HTML): status badge, claim, source, source value, ours, detail."""
    from analysis import html as H

    if not rows:
        return '<p class="muted">No source claims declared.</p>'
    df = pd.DataFrame({
        **({"experiment": [r.experiment for r in rows]} if with_experiment else {}),
        "status": [f'<span class="verdict {CSS_CLASS.get(r.status, "v-not-tested")}">{H.esc(r.status)}</span>'
                   for r in rows],
        "claim": [r.claim for r in rows], "kind": [r.kind for r in rows], "source": [r.source for r in rows],
        "source value": [r.source_value for r in rows], "ours": [r.ours for r in rows],
        "n": [r.n for r in rows], "detail": [r.detail for r in rows]})
    legend = ("reproduced: the claim holds as declared; contradicted: decisively the other way; equivalent: the "
              "two sides are equivalent within the claim's margin (the source claims a difference); fragile: "
              f"decided on the mean, but a single-seed run (as in the notebook) disagrees in {FRAGILE_SHARE:.0%} of "
              "the seeds or more; undecided: not decided at this budget (what cannot be excluded and the seeds "
              "a decision would need); not tested: no runs of a side, or a kind not yet answered. Ours: our "
              "mean(s) over seeds, then the verdict's effect estimate with its interval (the difference of the "
              "seeds that learned, where the engine tests collapse apart); learned k/n: seeds that learned. "
              "Source value: the notebook's single run.")
    return (f"<p>{H.esc(counts_line(rows))}</p>" + H.table_html(df, raw_columns=("status",))
            + f'<p class="muted">{H.esc(legend)}</p>')


def console_lines(rows: Sequence[ClaimRow], limit: int | None = None) -> list[str]:
    """A short console summary: the counts, then one line per claim that is not reproduced."""
    lines = [counts_line(rows)]
    shown = [r for r in rows if r.status != "reproduced"]
    for r in shown[:limit] if limit else shown:
        detail = f" ({r.detail})" if r.detail else ""
        lines.append(f"  {r.status:<12} [{r.experiment}] {r.claim}: source {r.source_value or 'n/a'}; "
                     f"ours {r.ours}{detail}")
    if limit and len(shown) > limit:
        lines.append(f"  ... and {len(shown) - limit} more in the report")
    return lines


__all__ = ["STATUSES", "ClaimRow", "claim_rows", "console_lines", "counts_line", "engine_kinds", "evaluate_claims",
           "rows_frame", "status_counts", "status_of", "table_html"]
