"""The Python API: sweeps, studies, results and reports from a notebook or a script.

    from cluster import api

    api.use("my_study.py")                        # its models, datasets, pairings, experiments
    sweep = api.run("my_study.py:TINY", smoke=True)   # runs the sweep, returns a handle
    sweep.results()                               # pandas DataFrame: the columns of `sweep results`
    sweep.report()                                # HTML report; in Jupyter its verdicts and figures inline

`run` takes what `sweep run` takes (keyword arguments named like the flags or RunOptions'
fields: seeds=, set=, grid=, name=, address=, tracking_uri=, storage_path=, ...), builds the same
RunOptions through the same declarations and refuses the same bad input with the same ConfigError (the CLI turns it into exit code 2). In Jupyter the progress is one
line redrawn in place in the cell's output; elsewhere the API prints nothing unless
`progress="console"`. The `sweep` CLI is a thin layer over these functions.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.flow import user_code
from cluster.infra import tracking
from core.errors import ConfigError
from core.user_modules import ModuleRef
from search_spaces.experiment import Experiment



def _uri(tracking_uri: str | None) -> str:
    """The given URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db (as the CLI)."""
    import os

    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking.DEFAULT_TRACKING_URI


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython kernel with a display front end)."""
    import sys

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def use(module: str) -> ModuleRef:
    """Load a user module ("my_study.py" or an installed "acme.studies"): its registrations
    (models, datasets, pairings, module-level experiments) become available; a changed file is
    read again. Returns its ref (name, sha256, path)."""
    from core import user_modules

    return user_modules.load(module)[1]


@dataclass
class Sweep:
    """A sweep that ran (or was resumed): its name, exit code and where it is stored."""

    name: str
    experiment: str
    exit_code: int
    tracking_uri: str
    storage_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def results(self):
        """Per cell: mean, 95% interval, median, seeds at chance, counts (the `sweep results` columns)."""
        return results(sweep=self.name, tracking_uri=self.tracking_uri)

    def report(self, out: str | Path | None = None, display: bool | None = None) -> Report:
        return report(sweep=self.name, tracking_uri=self.tracking_uri, out=out, display=display)

    def _repr_html_(self) -> str:
        state = "finished" if self.ok else f"exit code {self.exit_code}"
        return (f"<b>sweep {html.escape(self.name)}</b> ({html.escape(self.experiment)}), {state}; "
                f"MLflow {html.escape(self.tracking_uri)}")


@dataclass
class Report:
    """A written report: index.html, its figures (PNG per stem), results.csv and notes."""

    path: Path
    figures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    claims: list = field(default_factory=list)  # analysis.reproduction.ClaimRow per source claim and cell

    def figure(self, stem: str | None = None):
        """One figure as an IPython Image (the first if no stem); its path outside IPython."""
        if not self.figures:
            raise ConfigError(f"the report {self.path} has no figures")
        if stem is not None and stem not in self.figures:
            raise ConfigError(f"no figure {stem!r} in {self.path.parent}; figures: {', '.join(self.figures)}")
        path = self.figures[stem or next(iter(self.figures))]
        try:
            from IPython.display import Image
        except ImportError:
            return path
        return Image(filename=str(path))

    def _repr_html_(self) -> str:
        """The whole report (verdicts, tables, figures) in an isolated frame."""
        page = self.path.read_text(encoding="utf-8")
        notes = "".join(f"<p><b>note:</b> {html.escape(n)}</p>" for n in self.notes)
        return (f"{notes}<iframe srcdoc=\"{html.escape(page, quote=True)}\" style=\"width:100%;height:720px;"
                f"border:1px solid #ccc\"></iframe><p>{html.escape(str(self.path))}</p>")

    def __str__(self) -> str:
        return str(self.path)


def run(experiment: str | Experiment, *, progress: str = "auto", **options: Any) -> Sweep:
    """Run a sweep to its end and return its handle.

    Args:
        experiment: a registered name, "my_study.py:NAME", "acme.studies:NAME" or an Experiment.
        progress: "auto" (in Jupyter: redrawn in the cell; else nothing), "notebook", "console", "none".
        **options: what `sweep run` takes, named as RunOptions' fields or as their flags
            (smoke=True, seeds=3, set={"lr": 0.01} or sets=, grid={"lr": [1e-3, 1e-2]},
            sample={"lr": "loguniform(1e-4,1e-1)"}, name=, tracking_uri=, storage_path=, address=,
            cpus_per_trial=, max_concurrent=, pack=, until_decided=, ...). Built into the same
            RunOptions as the CLI's flags (cluster.flow.options.from_kwargs: one declaration, same checks).

    Raises:
        ConfigError: bad input (an unknown option, a bad value), before Ray or MLflow start (the CLI's exit 2).
    """
    from cluster.flow.options import RunOptions, from_kwargs
    from cluster.flow.run import run_sweep

    exp_name = user_code.experiment_name(experiment)
    opts = from_kwargs(RunOptions, _with_defaults(options, progress, notebook_progress=True), experiment=exp_name)
    started: list[str] = []
    code = run_sweep(opts, on_start=started.append)
    return Sweep(started[0] if started else exp_name, exp_name, code, opts.tracking_uri, opts.storage_path)


def _with_defaults(options: dict[str, Any], progress: str, notebook_progress: bool) -> dict[str, Any]:
    """The options with the API's defaults: MLflow at $MLFLOW_TRACKING_URI (as the CLI), quiet
    outside Jupyter unless progress="console"."""
    if progress == "auto":
        progress = "notebook" if in_notebook() else "none"
    if progress not in ("notebook", "console", "none"):
        raise ConfigError(f"progress={progress!r}: use 'auto', 'notebook', 'console' or 'none'")
    out = dict(options)
    if out.get("tracking_uri") is None:
        out["tracking_uri"] = _uri(None)
    out.setdefault("quiet", progress != "console")
    if notebook_progress:
        out["progress"] = progress
    return out


def resume(name: str, *, storage_path: str | None = None, address: str | None = None) -> Sweep:
    """Continue an interrupted sweep (`sweep resume`); refused if one of its user modules changed."""
    from cluster.flow.resume import resume_sweep
    from cluster.folder.record import find_sweep

    record = find_sweep(name, storage_path)
    code = resume_sweep(name, storage_path, address)
    return Sweep(name, record.experiment, code, record.tracking_uri, storage_path)


@dataclass
class StudyRun:
    """A study that ran (or continued): its on-disk name, exit code and report."""

    name: str
    exit_code: int
    report: Report | None

    def _repr_html_(self) -> str:
        head = f"<b>study {html.escape(self.name)}</b>, exit code {self.exit_code}"
        return head + (self.report._repr_html_() if self.report is not None else "")


def study(target: str, *, progress: str = "auto", **options: Any) -> StudyRun:
    """Run (or continue) a study: a built-in one, "my_study.py" (every experiment it defines, in
    order) or "my_study.py:STUDY" (a Study it defines); returns its handle with the study report.
    options: what `sweep study` takes, named as StudyOptions' fields or their flags (smoke=, only=,
    name=, until_decided=, max_concurrent=, data_root=, out=, tracking_uri=, ...)."""
    from cluster.flow.options import StudyOptions, from_kwargs
    from cluster.flow.study import run_study

    st = user_code.module_study(target)
    opts = from_kwargs(StudyOptions, _with_defaults(options, progress, notebook_progress=False), study=st.name)
    code = run_study(opts)
    index = (Path(opts.out) if opts.out else Path("reports") / opts.study_name) / "index.html"
    return StudyRun(opts.study_name, code, _report_handle(index, []) if index.exists() else None)


def results(experiment: str | None = None, *, sweep: str | None = None, tracking_uri: str | None = None):
    """The results table of a sweep (an experiment's newest, or `sweep=NAME`) as a DataFrame."""
    from analysis.results import results_table

    return results_table(tracking.check_tracking_uri(_uri(tracking_uri)), experiment=_name(experiment), sweep=sweep)


def report(experiment: str | None = None, *, sweep: str | None = None, tracking_uri: str | None = None,
           out: str | Path | None = None, display: bool | None = None) -> Report:
    """Write the HTML report (as `sweep report`) and return its handle; in Jupyter (or with
    display=True) it is shown inline. Its notes say, among other things, when a user module
    changed since the sweep ran."""
    from analysis.report import build_report

    notes: list[str] = []
    path, claims = build_report(tracking.check_tracking_uri(_uri(tracking_uri)), experiment=_name(experiment),
                                sweep=sweep, out_dir=out, notes_out=notes)
    handle = _report_handle(Path(path), notes)
    handle.claims = list(claims)
    if display if display is not None else in_notebook():
        from IPython.display import display as show

        show(handle)
    return handle


def _report_handle(index: Path, notes: list[str]) -> Report:
    figures = {p.stem: p for p in sorted(index.parent.glob("*.png"))}
    return Report(index, figures, notes)


def _name(experiment: str | Experiment | None) -> str | None:
    """An experiment argument of results/report: a name, "my_study.py:NAME" or an Experiment."""
    if experiment is None:
        return None
    if isinstance(experiment, Experiment) or user_code.user_modules.parse_target(experiment) is not None:
        return user_code.experiment_name(experiment)
    return experiment


def close() -> None:
    """Stop the Ray this process started (a notebook's sweeps keep it between runs)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from cluster.infra.ray_setup import stop_ray

        stop_ray()


__all__ = ["Report", "StudyRun", "Sweep", "close", "in_notebook", "report", "results", "resume", "run", "study", "use"]
