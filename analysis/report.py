"""`sweep report`: one self-contained HTML page per sweep, also logged to the parent run."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import html as H
from analysis import reproduction as R
from analysis.hypotheses import ALPHA, hypotheses_html
from analysis.load import load_artifacts, load_sweep
from analysis.plots import NEEDS, PLOTS, get_plot
from analysis.results import display_table, result_keys, sweep_results
from analysis.samples import load_samples
from analysis.style import figure_png
from analysis.sweep_data import SweepData, empty_sweep
from core.errors import ConfigError
from core import store_schema as S
from core.user_modules import recorded_changes
from core.safe_paths import report_dir

log = logging.getLogger(__name__)
DEFAULT_PLOTS = ("accuracy_vs_data", "accuracy_vs_epochs", "curves", "kernels", "confusion",
                 "params_vs_accuracy", "accuracy_vs_shift", "leaderboard")
SEARCH_PLOTS = ("search_scatter", "asha_rungs", "best_configs")
RUN_COLUMNS = (S.TAG_PAIRING, S.TAG_SEED, S.TAG_STATUS_REASON, "val_acc", S.METRIC_BEST_VAL_ACC, S.METRIC_EPOCHS_COMPLETED)


@dataclass
class ReportSpec:
    """What a report contains: from the experiment's declaration, or defaults."""

    plots: tuple[str, ...]
    hypotheses: tuple = ()
    compare_with: tuple[str, ...] = ()
    description: str = ""
    declared: bool = True
    notes: list[str] = field(default_factory=list)


def _hypothesis(d: Any):
    import dataclasses

    from search_spaces.experiment import Hypothesis

    if isinstance(d, Hypothesis):
        return d
    known = {f.name for f in dataclasses.fields(Hypothesis)}  # a newer declaration may carry more
    return Hypothesis(**{k: v for k, v in d.items() if k in known})


def report_spec(data: SweepData, experiment: str | None = None) -> ReportSpec:
    """The sweep's stored declaration, else the search_spaces registry, else default plots."""
    decl = data.parent.get("declaration")
    if not decl:
        try:
            import dataclasses

            from search_spaces import get_experiment
            decl = dataclasses.asdict(get_experiment(data.parent.get("experiment") or experiment))
        except (ImportError, ConfigError, TypeError):
            decl = None
    if not decl:
        search = data.parent.get("tags", {}).get(S.TAG_SEARCH, "grid") not in ("grid", "")
        return ReportSpec(DEFAULT_PLOTS + (SEARCH_PLOTS if search else ()), declared=False,
                          notes=["no experiment declaration found: default plots, no hypotheses"])
    plots = tuple(decl.get("plots") or ())
    for name in plots:
        get_plot(name)  # unknown names fail before any work, with close matches
    return ReportSpec(plots or DEFAULT_PLOTS, tuple(_hypothesis(h) for h in decl.get("hypotheses") or ()),
                      tuple(decl.get("compare_with") or ()), decl.get("description", ""), declared=bool(plots))


def _run_link(uri: str, exp_id: str, run_id: str) -> str | None:
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
    return None


def render_figures(data: SweepData, spec: ReportSpec) -> tuple[dict[str, tuple[bytes, str]], list[str]]:
    """PNG bytes and a caption per figure stem; notes for plots with nothing to draw or errors."""
    out, notes = {}, []
    for name in spec.plots:
        fn = PLOTS[name]
        try:
            figures = fn(data)
        except Exception as exc:  # one broken plot must not cost the researcher the whole report
            log.exception("plot %s failed", name)
            notes.append(f"plot {name!r} failed: {type(exc).__name__}: {exc}")
            continue
        if not figures and spec.declared:
            notes.append(f"plot {name!r}: nothing to draw (needs {NEEDS[name]})")
        caption = (fn.__doc__ or name).strip().splitlines()[0]
        for stem, fig in figures.items():
            out[stem] = (figure_png(fig), caption)
    return out, notes


def _load_others(uri: str, names: set[str], notes: list[str]) -> dict[str, SweepData]:
    others = {}
    for name in sorted(names):
        try:
            others[name] = load_sweep(uri, experiment=name)
        except ConfigError as exc:
            notes.append(f"compared experiment {name!r} not loaded: {exc}")
    return others


def _load(tracking_uri: str, experiment: str | None, sweep: str | None) -> tuple[SweepData, bool]:
    try:
        return load_sweep(tracking_uri, experiment=experiment, sweep=sweep), True
    except ConfigError:
        try:  # analytic experiments (computed plots only) have nothing to load
            from search_spaces import get_experiment
            exp = get_experiment(experiment) if experiment and not sweep else None
        except (ImportError, ConfigError):
            exp = None
        if exp is None or not exp.analytic:
            raise
        return empty_sweep(exp.name, exp.name), False


def write_report(tracking_uri: str, experiment: str | None = None, sweep: str | None = None,
                 out_dir: str | Path | None = None, log_to_parent: bool = True,
                 notes_out: list[str] | None = None) -> Path:
    """Write the report of a sweep; returns index.html (see `build_report`); `notes_out` gets its notes."""
    return build_report(tracking_uri, experiment, sweep, out_dir, log_to_parent, notes_out)[0]


def build_report(tracking_uri: str, experiment: str | None = None, sweep: str | None = None,
                 out_dir: str | Path | None = None, log_to_parent: bool = True,
                 notes_out: list[str] | None = None) -> tuple[Path, list]:
    """Write the report of a sweep (an experiment's newest, or a named one) and return its path with
    the reproduction rows (analysis.reproduction.ClaimRow, one per source claim and cell).

    Args:
        tracking_uri: MLflow tracking URI holding the sweep.
        experiment: experiment name (its newest sweep), if `sweep` is not given.
        sweep: sweep name.
        out_dir: folder for index.html, the PNGs and results.csv (default ./reports/<sweep>/).
        log_to_parent: also log these files under `report/` of the sweep's parent run.

    Returns:
        (path of index.html, reproduction rows).

    Raises:
        ConfigError: the sweep is not in the store, or its declaration names an unknown plot.
    """
    if out_dir is not None:
        report_dir(out_dir, "")  # an unusable --out fails before the store is read
    data, stored = _load(tracking_uri, experiment, sweep)
    out = report_dir(out_dir, data.name, fallback=str(data.parent.get("run_id") or "sweep"))
    spec = report_spec(data, experiment)
    notes = list(spec.notes)
    # A user module (`sweep run my_study.py:NAME`) whose file changed since the sweep ran: said on the page.
    notes += recorded_changes((data.parent.get("tags") or {}).get(S.TAG_USER_MODULES))
    if stored:
        load_artifacts(data, kernels="kernels" in spec.plots, confusion="confusion" in spec.plots)
    wanted = set(spec.compare_with) | {h.other_experiment for h in spec.hypotheses if h.other_experiment}
    others = _load_others(tracking_uri, wanted - {data.parent.get("experiment")}, notes) if stored else {}
    plot_data = data
    for name in spec.compare_with:
        if name in others:
            plot_data = plot_data.merge(others[name])
    if "samples" in spec.plots and stored and len(data.runs):
        plot_data.samples = load_samples(data, notes)
    figures, plot_notes = render_figures(plot_data, spec)
    notes += plot_notes
    results = sweep_results(data)
    keys = [k for k in result_keys(data) if k != "pairing"]
    alpha, rule = decision_rule(data)
    design, sequential = decision_design(data)
    verdicts = R.evaluate_claims(spec.hypotheses, data.runs, keys, {n: o.runs for n, o in others.items()}, alpha=alpha,
                                 design=design, sequential=sequential)
    claims = R.claim_rows(data.parent.get("experiment") or data.name, spec.hypotheses, verdicts)

    written = []
    try:
        for stem, (png, _) in figures.items():
            (out / f"{stem}.png").write_bytes(png)
            written.append(out / f"{stem}.png")
        results.to_csv(out / "results.csv", index=False)
        R.rows_frame(claims).to_csv(out / "claims.csv", index=False)
        (out / "index.html").write_text(_page(data, spec, results, figures, verdicts, notes, claims), encoding="utf-8")
    except OSError as exc:  # a full disk, a file where a folder should be
        raise ConfigError(f"cannot write the report into {out}: {exc.strerror or exc} "
                          f"({exc.filename or ''})") from None
    written += [out / "results.csv", out / "claims.csv", out / "index.html"]
    if log_to_parent and stored:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        for path in written:
            client.log_artifact(data.parent["run_id"], str(path), S.ART_REPORT_DIR)
    if notes_out is not None:
        notes_out.extend(notes)
    return out / "index.html", claims


def decision_rule(data: SweepData) -> tuple[float, str]:
    """The verdicts' two-sided alpha and a sentence on how it was chosen.

    A sweep run with --until-decided looked at its results several times; its parent run
    carries the design (cluster.flow.adaptive: seeds at each look, alpha spending) and the rule.
    Sweeps from before the group-sequential design carry a Bonferroni per-look alpha instead.
    """
    tags = data.parent.get("tags", {}) or {}
    try:
        alpha = float(tags.get(S.TAG_ALPHA, tags.get(S.TAG_ALPHA_PER_LOOK, ALPHA)))
    except (TypeError, ValueError):
        alpha = ALPHA
    return alpha, tags.get(S.TAG_STOPPING_RULE, "")


def decision_design(data: SweepData):
    """(analysis.sequential.Design, sequential?) the sweep's verdicts are decided under."""
    import json

    from analysis.sequential import Design

    tags = data.parent.get("tags", {}) or {}
    alpha, _ = decision_rule(data)
    if tags.get(S.TAG_UNTIL_DECIDED) == "true" and S.TAG_LOOK_SEEDS in tags:
        try:
            return Design(tuple(int(n) for n in json.loads(tags[S.TAG_LOOK_SEEDS])), alpha,
                          tags.get(S.TAG_SPENDING, "obf")), True
        except (TypeError, ValueError):
            log.warning("unreadable %s tag %r: one-look verdicts", S.TAG_LOOK_SEEDS, tags[S.TAG_LOOK_SEEDS])
    return Design(alpha=alpha), False


def adaptive_html(data: SweepData) -> str:
    """Waves, seeds per cell and the stopping rule of an adaptive (--until-decided) sweep."""
    tags = data.parent.get("tags", {}) or {}
    if tags.get(S.TAG_UNTIL_DECIDED) != "true":
        return ""
    info = {k: tags[k] for k in (S.TAG_STOPPING_RULE, S.TAG_MAX_LOOKS, S.TAG_LOOKS_TAKEN, S.TAG_LOOK_SEEDS, S.TAG_SPENDING,
                                 S.TAG_ALPHA_PER_LOOK,
                                 S.TAG_MAX_SEEDS, S.TAG_TARGET_HALFWIDTH, S.TAG_ADAPTIVE_OUTCOME) if k in tags}
    runs = data.runs
    waves = ""
    if S.TAG_WAVE in runs and len(runs):
        keys = [k for k in result_keys(data) if k in runs]
        table = runs.assign(wave=pd.to_numeric(runs[S.TAG_WAVE], errors="coerce")).groupby(keys, dropna=False).agg(
            seeds=("run_id", "size"), waves=("wave", lambda w: ", ".join(str(int(v)) for v in sorted(set(w.dropna())))))
        waves = H.table_html(table.reset_index())
    return H.mapping_table(info) + waves


def _page(data, spec, results, figures, verdicts, notes, claims=()) -> str:
    p, uri = data.parent, data.parent.get("tracking_uri", "")
    exp_id = p.get("experiment_id", "")
    counts = data.runs[S.TAG_STATUS_REASON].value_counts().to_dict() if S.TAG_STATUS_REASON in data.runs else {}
    meta = {"experiment": p.get("experiment"), "sweep": data.name, "tracking URI": uri,
            "parent run": p.get("run_id", "—"), "git sha": p.get("tags", {}).get(S.TAG_GIT_SHA, "—"),
            "search": p.get("tags", {}).get(S.TAG_SEARCH, "—"), "smoke": p.get("tags", {}).get(S.TAG_SMOKE, "—"),
            "trials": f"{len(data.runs)} ({', '.join(f'{v} {k}' for k, v in counts.items()) or 'none'})",
            "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    parent_link = _run_link(uri, exp_id, p.get("run_id", "")) if p.get("run_id") else None
    header = (f"<p>{H.esc(spec.description)}</p>" if spec.description else "") + H.mapping_table(meta)
    if parent_link:
        header += f"<p>{H.link('open the parent run in MLflow', parent_link)}</p>"
    figs = "".join(H.figure_html(stem, png, cap) for stem, (png, cap) in figures.items()) or \
        '<p class="muted">(no figures)</p>'
    runs = data.runs.copy()
    cols = [c for c in ("run_name",) + tuple(data.swept_keys) + RUN_COLUMNS if c in runs]
    runs_df = runs[list(dict.fromkeys(cols))].copy()
    runs_df.insert(0, "run id", [H.link(r, _run_link(uri, exp_id, r)) for r in runs["run_id"]])
    from analysis.results import TABLE_NOTE

    sections = [
        ("Reproduction", "<p class=\"muted\">One row per claim of the source notebook (and cell, where a claim "
                         "covers several); every column: <a href=\"claims.csv\">claims.csv</a>.</p>"
                         + R.table_html(claims, with_experiment=False)),
        ("Hypotheses", hypotheses_html(verdicts, decision_rule(data)[1])),
        ("Results", "<p class=\"muted\">Completed trials only; " + H.esc(TABLE_NOTE.strip("()"))
                    + ". Every column: <a href=\"results.csv\">results.csv</a>.</p>"
                    + H.table_html(display_table(results))),
        ("Figures", figs),
        ("Sweep configuration", H.mapping_table(p.get("params", {})) + H.mapping_table(p.get("tags", {}))
         + (H.pre_json(p["declaration"]) if p.get("declaration") else "")),
        ("Runs", H.table_html(runs_df, raw_columns=("run id",))),
    ]
    from analysis.confirmation import confirmation_html  # searches: best config per model vs `sweep confirm`

    adaptive = adaptive_html(data)
    if adaptive:
        sections.insert(1, ("Adaptive replicates", adaptive))
    best = confirmation_html(data)
    if best:
        sections.insert(1, ("Best configuration per model", best))
    if "param_explosion" in spec.plots:
        from analysis.param_explosion import explosion_table

        counts = pd.DataFrame(explosion_table(), columns=["image size", "inputs", "parameters"])
        counts[["inputs", "parameters"]] = counts[["inputs", "parameters"]].map(lambda v: f"{v:,}")
        sections.insert(1, ("Parameter counts", "<p class=\"muted\">MLP [256, 128] → 10, "
                                                "Σ(in·out + out) over its dense layers.</p>" + H.table_html(counts)))
    if notes:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{H.esc(n)}</li>" for n in notes) + "</ul>"))
    return H.page(f"{p.get('experiment') or data.name}: {data.name}", sections, header)


__all__ = ["ReportSpec", "build_report", "report_spec", "write_report"]
