"""The study report: every source claim of every experiment of a study, from the study's own sweeps.

It opens with the reproduction table (analysis.reproduction): one row per claim with the source's
value, ours and a status (reproduced, contradicted, equivalent, fragile, undecided, not tested).

Cross-experiment hypotheses (`other_experiment`) take the other side from the sweep of that
experiment made by the same study, never from whichever sweep is newest in the store. Holm
applies per experiment (each experiment's declared hypotheses are one family, as in its own
report); an adaptive sweep's per-look alpha is kept. The cost table gives each experiment's
trials and wall time.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import html as H
from analysis import reproduction as R
from analysis.hypotheses import VERDICTS, HypothesisResult, hypotheses_html
from analysis.sweep_data import SweepData
from core import store_schema as S
from core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class StudyEntry:
    """One experiment of a study as the study job left it."""

    experiment: str
    sweep: str
    status: str = "pending"  # pending | running | finished | failed | skipped
    wall_s: float = 0.0
    note: str = ""
    exit_code: int | None = None


@dataclass
class StudyAnswers:
    """Verdicts per experiment plus what could not be loaded."""

    verdicts: dict[str, list[HypothesisResult]] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    claims: dict[str, list[R.ClaimRow]] = field(default_factory=dict)

    @property
    def claim_rows(self) -> list[R.ClaimRow]:
        return [row for rows in self.claims.values() for row in rows]


def study_verdicts(sweeps: dict[str, SweepData]) -> StudyAnswers:
    """Answer every declared hypothesis of every loaded sweep (experiment name -> SweepData).

    The other side of a cross-experiment hypothesis comes from `sweeps` only; when the study
    has no sweep of that experiment the hypothesis is "not tested", with the reason.
    """
    from analysis.report import decision_design, decision_rule, report_spec
    from analysis.results import result_keys

    out = StudyAnswers()
    for exp, data in sweeps.items():
        spec = report_spec(data, exp)
        keys = [k for k in result_keys(data) if k != "pairing"]
        wanted = {h.other_experiment for h in spec.hypotheses if h.other_experiment}
        others = {n: sweeps[n].runs for n in wanted if n in sweeps}
        alpha, rule = decision_rule(data)
        design, sequential = decision_design(data)
        results = [_in_study(r) for r in R.evaluate_claims(spec.hypotheses, data.runs, keys, others, alpha=alpha,
                                                           design=design, sequential=sequential)]
        out.verdicts[exp] = results
        out.rules[exp] = rule
        out.claims[exp] = R.claim_rows(exp, spec.hypotheses, results)
    return out


def _in_study(r: HypothesisResult) -> HypothesisResult:
    import dataclasses

    if r.verdict == "not tested" and "in this store" in r.note:
        return dataclasses.replace(r, note=r.note.replace("in this store", "in this study"))
    return r


def cost_table(entries: list[StudyEntry], sweeps: dict[str, SweepData]) -> pd.DataFrame:
    """Experiment, sweep, status, trials (by status), wall time and seconds per trial."""
    rows = []
    for e in entries:
        data = sweeps.get(e.experiment)
        runs = data.runs if data is not None else pd.DataFrame()
        counts = Counter(runs[S.TAG_STATUS_REASON]) if S.TAG_STATUS_REASON in runs else Counter()
        n = len(runs)
        rows.append({"experiment": e.experiment, "sweep": e.sweep, "status": e.status, "trials": n,
                     "completed": counts.get(S.STATUS_COMPLETED, 0),
                     "stopped": counts.get(S.STATUS_STOPPED_EARLY, 0), "failed": counts.get(S.STATUS_FAILED, 0), "wall time": fmt_duration(e.wall_s),
                     "s per trial": f"{e.wall_s / n:.1f}" if n and e.wall_s else "—", "note": e.note})
    total = sum(e.wall_s for e in entries)
    rows.append({"experiment": "total", "sweep": "", "status": "", "trials": sum(r["trials"] for r in rows),
                 "completed": sum(r["completed"] for r in rows), "stopped": sum(r["stopped"] for r in rows),
                 "failed": sum(r["failed"] for r in rows), "wall time": fmt_duration(total), "s per trial": "",
                 "note": ""})
    return pd.DataFrame(rows)


def fmt_duration(seconds: float) -> str:
    if not seconds:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def summary_table(answers: StudyAnswers, entries: list[StudyEntry]) -> pd.DataFrame:
    """Per experiment: claims (rows of the reproduction table) by status, then the raw verdicts."""
    rows = []
    for e in entries:
        claims = answers.claims.get(e.experiment, [])
        verdicts = Counter(r.verdict for r in answers.verdicts.get(e.experiment, []))
        rows.append({"experiment": e.experiment, "claims": len(claims), **R.status_counts(claims),
                     **{f"verdict {v}": verdicts.get(v, 0) for v in VERDICTS}})
    claims = answers.claim_rows
    rows.append({"experiment": "total", "claims": len(claims), **R.status_counts(claims),
                 **{f"verdict {v}": sum(r[f"verdict {v}"] for r in rows) for v in VERDICTS}})
    return pd.DataFrame(rows, columns=["experiment", "claims", *R.STATUSES, *(f"verdict {v}" for v in VERDICTS)])


def verdict_rows(answers: StudyAnswers) -> pd.DataFrame:
    """One row per source claim (hypothesis) and cell (study.csv): the reproduction status, the
    source's value and ours first, then the test behind it."""
    rows = []
    for exp, results in answers.verdicts.items():
        claims = answers.claims.get(exp) or R.claim_rows(exp, (), results)
        for r, c in zip(results, claims):
            rows.append({"experiment": exp, "hypothesis": r.text, "cell": r.where.removeprefix(" at "),
                         "status": c.status, "status_detail": c.detail, "kind": c.kind, "source": c.source,
                         "source_value": c.source_value, "ours": c.ours, "seeds_needed": c.seeds_needed,
                         "verdict": r.verdict, "p": r.p, "p_holm": r.p_adj, "alpha": r.alpha,
                         "better_mean": r.better[0], "worse_mean": r.worse[0], "difference": r.effect[0],
                         "difference_low": r.effect[1], "difference_high": r.effect[2], "n_better": r.better[3],
                         "n_worse": r.worse[3], "single_seed": r.single_seed_sentence, "sentence": r.sentence})
    return pd.DataFrame(rows)


def load_study_sweeps(tracking_uri: str, entries: list[StudyEntry]) -> tuple[dict[str, SweepData], list[str]]:
    """The study's own sweeps by name (not the newest of each experiment); notes for the missing."""
    from analysis.load import load_sweep

    sweeps, notes = {}, []
    for e in entries:
        if e.status not in ("finished", "running", "failed"):
            notes.append(f"{e.experiment}: {e.status}" + (f" ({e.note})" if e.note else ""))
            continue
        try:
            # no metric histories: the study report shows verdicts and tables, not curves
            sweeps[e.experiment] = load_sweep(tracking_uri, experiment=e.experiment, sweep=e.sweep, histories=False)
        except ConfigError as exc:
            notes.append(f"{e.experiment}: sweep {e.sweep!r} not loaded: {exc}")
    return sweeps, notes


def load_study(tracking_uri: str, entries: list[StudyEntry]) -> tuple[dict[str, SweepData], list[str], StudyAnswers]:
    """(sweeps, notes, answers): the study's sweeps loaded and its claims answered, once for the report
    and the console summary."""
    sweeps, notes = load_study_sweeps(tracking_uri, entries)
    return sweeps, notes, study_verdicts(sweeps)


def write_study_report(tracking_uri: str, study: str, entries: list[StudyEntry], out_dir: str | Path,
                       description: str = "", loaded: tuple | None = None) -> Path:
    """Write index.html (verdicts, results, cost) and study.csv for a study; returns index.html.
    `loaded`: load_study's answer, when the caller has it (else loaded here)."""
    from analysis.results import TABLE_NOTE, display_table, sweep_results

    sweeps, notes, answers = loaded or load_study(tracking_uri, entries)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdict_rows(answers).to_csv(out / "study.csv", index=False)
    sections = [("Reproduction", "<p class=\"muted\">One row per claim of the source notebooks (and cell, where a "
                                 "claim covers several), answered from this study's sweeps.</p>"
                                 + R.table_html(answers.claim_rows)),
                ("Summary", H.table_html(summary_table(answers, entries))),
                ("Cost", "<p class=\"muted\">Wall time measured by the study job (all its runs and resumes "
                         "of the sweep); trials by final status.</p>" + H.table_html(cost_table(entries, sweeps)))]
    for e in entries:
        if e.experiment not in sweeps:
            continue
        data = sweeps[e.experiment]
        body = hypotheses_html(answers.verdicts.get(e.experiment, []), answers.rules.get(e.experiment, ""))
        table = sweep_results(data) if len(data.runs) else pd.DataFrame()
        if len(table):
            body += H.table_html(display_table(table))
        body += (f"<p class=\"muted\">Figures: <code>sweep report --sweep {H.esc(e.sweep)} "
                 f"--tracking-uri {H.esc(tracking_uri)}</code></p>")
        sections.append((e.experiment, body))
    if notes:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{H.esc(n)}</li>" for n in notes) + "</ul>"))
    header = (f"<p>{H.esc(description)}</p>" if description else "") + H.mapping_table(
        {"study": study, "tracking URI": tracking_uri, "experiments": len(entries),
         "results": TABLE_NOTE.strip("()"), "written": time.strftime("%Y-%m-%d %H:%M:%S")})
    (out / "index.html").write_text(H.page(f"study {study}", sections, header), encoding="utf-8")
    return out / "index.html"


def summary_lines(tracking_uri: str, entries: list[StudyEntry], limit: int | None = 20,
                  loaded: tuple | None = None) -> list[str]:
    """Console lines: the reproduction counts, then each claim not reproduced (at most `limit`).
    `loaded`: load_study's answer, when the caller has it (the report's: not loaded twice)."""
    _, notes, answers = loaded or load_study(tracking_uri, entries)
    return ["source claims: " + R.console_lines(answers.claim_rows, limit)[0],
            *R.console_lines(answers.claim_rows, limit)[1:], *notes]


__all__: list[Any] = ["StudyEntry", "study_verdicts", "write_study_report", "cost_table"]
