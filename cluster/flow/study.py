"""`sweep study NAME`: run a study's experiments as one resumable job, then write one study report.

State lives in STORAGE/<study name>/study.json: per experiment its sweep name, status and wall
time. A re-run skips experiments whose sweep finished, resumes an interrupted one
(`resume_sweep`, Tune's own restore) and starts the rest; Ray starts once for the whole study.
Sweeps are named "<study name>.<experiment>", so the study report reads its own sweeps.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from analysis.study import StudyEntry
from cluster.flow.options import StudyOptions
from cluster.infra import tracking
from search_spaces.studies import Study, check_studies, get_study
from core.errors import ConfigError
from core.safe_paths import is_name, report_dir
from core.state_json import load_state_json

STATE_FILE = "study.json"


def _storage(opts: StudyOptions) -> Path:
    from cluster.folder.storage import resolve_storage

    storage = resolve_storage(opts.storage_path)
    if "://" in storage:
        raise ConfigError("sweep study keeps its state in a local or shared directory: pass a filesystem "
                          "--storage-path (cloud URIs are for single sweeps)")
    return Path(storage)


def load_state(path: Path, study: Study, opts: StudyOptions) -> list[StudyEntry]:
    """The entries of an earlier run of this study (same name), else fresh ones."""
    wanted = [e for e in study.experiments if not opts.only or e in opts.only]
    old = {}
    if os.path.lexists(path):
        saved = _load_study_json(path)
        if saved.get("study") != study.name or bool(saved.get("smoke")) != opts.smoke:
            raise ConfigError(f"{path} belongs to study {saved.get('study')!r} (smoke={saved.get('smoke')}); "
                              f"pick another --name")
        old = {e["experiment"]: StudyEntry(**e) for e in saved["entries"]}
    return [old.get(e) or StudyEntry(e, f"{opts.study_name}.{e}") for e in wanted]


def _load_study_json(path: Path) -> dict:
    """study.json through the checked loader: entries must be objects naming their fields."""
    what = "remove it to start the study afresh under this name, or pick another --name"
    saved = load_state_json(path, {"study": str, "entries": list}, what)
    fields = {f.name for f in dataclasses.fields(StudyEntry)}
    for e in saved["entries"]:
        if (not isinstance(e, dict) or not isinstance(e.get("experiment"), str) or not set(e) <= fields
                or not is_name(e.get("sweep")) or not isinstance(e.get("wall_s", 0.0), (int, float))):
            raise ConfigError(f"{path} is damaged (an entry is not a study entry: {str(e)[:80]}); {what}")
        try:
            StudyEntry(**e)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path} is damaged ({exc}); {what}") from None
    return saved


def save_state(path: Path, study: Study, opts: StudyOptions, entries: list[StudyEntry]) -> None:
    """Write the state atomically (a crash never leaves half a file)."""
    old = {}
    if os.path.lexists(path):
        old = {e["experiment"]: e for e in _load_study_json(path)["entries"]}
    old.update({e.experiment: dataclasses.asdict(e) for e in entries})
    ordered = [old[e] for e in study.experiments if e in old]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"study": study.name, "smoke": opts.smoke, "tracking_uri": opts.tracking_uri,
                               "entries": ordered}, indent=2))
    tmp.replace(path)


def _run_options(opts: StudyOptions, exp_name: str, sweep: str):
    from cluster.flow.options import RunOptions
    from search_spaces import get_experiment

    exp = get_experiment(exp_name)
    adaptive = opts.until_decided and bool(exp.hypotheses) and exp.search is None and not exp.analytic
    return RunOptions(experiment=exp_name, smoke=opts.smoke, name=sweep, tracking_uri=opts.tracking_uri,
                      storage_path=opts.storage_path, address=opts.address, max_concurrent=opts.max_concurrent,
                      cpus_per_trial=opts.cpus_per_trial, data_root=opts.data_root, quiet=opts.quiet,
                      until_decided=adaptive, max_seeds=opts.max_seeds if adaptive else None,
                      target_halfwidth=opts.target_halfwidth if adaptive else None)


def _run_one(opts: StudyOptions, entry: StudyEntry, storage: Path) -> int:
    """Start, or resume, one experiment's sweep; returns its exit code."""
    from cluster.flow.resume import resume_sweep
    from cluster.flow.run import run_sweep
    from cluster.folder.record import SWEEP_FILE

    if (storage / entry.sweep / SWEEP_FILE).exists():
        from ray import tune

        if tune.Tuner.can_restore(str(storage / entry.sweep)):
            return resume_sweep(entry.sweep, opts.storage_path, opts.address)
        # Interrupted before Tune wrote any state: nothing ran; start again under a fresh name.
        entry.sweep = f"{entry.sweep}-{time.strftime('%H%M%S')}"
    return run_sweep(_run_options(opts, entry.experiment, entry.sweep))


def sweep_finished(path: Path) -> bool:
    """Did the sweep in `path` run to its end? (Tune returns normally after Ctrl+C, so the exit
    code alone cannot tell.) Every trial in Tune's newest experiment state must be TERMINATED or
    ERROR, and every planned trial must exist: for --until-decided the searcher said FINISHED,
    else the trial count reaches the plan's."""
    from cluster.folder.record import SweepRecord

    states = sorted(path.glob("experiment_state-*.json"))
    if not states:
        return False
    try:
        trials = json.loads(states[-1].read_text()).get("trial_data", [])
        statuses = [json.loads(t[0]).get("status") for t in trials]
    except (ValueError, UnicodeDecodeError, TypeError, IndexError, AttributeError):
        return False  # cut short (a full disk) or not Tune's: not finished; its resume repairs or refuses it
    if any(s not in ("TERMINATED", "ERROR") for s in statuses):
        return False
    record = SweepRecord.load(path)
    if record.options.get("until_decided"):
        saved = sorted(path.glob("searcher-state-*.pkl"))
        if not saved:
            return False
        try:
            return bool(json.loads(saved[-1].read_text()).get("finished"))
        except (ValueError, UnicodeDecodeError):  # an old or foreign state file: not finished
            return False
    return len(statuses) >= record.n_trials


def run_study(opts: StudyOptions) -> int:
    """Run (or continue) a study; write its report. Exit code: 0 all finished, 1 some trial or
    experiment failed, 2 bad input (before anything ran)."""
    from cluster.infra import ray_setup
    from cluster.flow.sweep import build_plan
    from search_spaces import get_experiment

    study = get_study(opts.study)
    check_studies()
    storage = _storage(opts)
    uri = tracking.check_tracking_uri(opts.tracking_uri)
    opts.tracking_uri = uri
    root = storage / opts.study_name
    root.mkdir(parents=True, exist_ok=True)
    path = root / STATE_FILE
    entries = load_state(path, study, opts)
    todo = [e for e in entries if e.status != "finished"]
    for e in todo:  # every plan checked before Ray starts: bad input fails in seconds, not mid-study
        if not get_experiment(e.experiment).analytic:
            build_plan(_run_options(opts, e.experiment, e.sweep))
    save_state(path, study, opts, entries)
    done = len(entries) - len(todo)
    if not opts.quiet:
        print(f"study {opts.study_name}: {len(entries)} experiments ({done} finished earlier, {len(todo)} to run); "
              f"state {path}", flush=True)
    if any(not get_experiment(e.experiment).analytic for e in todo):
        from cluster.flow.user_code import ship_paths
        from core.user_modules import loaded_refs

        ray_setup.init_ray(opts.address, py_modules=ship_paths(loaded_refs()))  # user modules travel once
    code = 0
    for entry in todo:
        entry.status, entry.note = "running", ""
        save_state(path, study, opts, entries)
        if not opts.quiet:
            print(f"\n== {entry.experiment} (sweep {entry.sweep})", flush=True)
        t0 = time.monotonic()
        try:
            rc = _run_one(opts, entry, storage)
        except ConfigError as exc:
            rc, entry.note = 2, str(exc)
        except KeyboardInterrupt:
            entry.wall_s += time.monotonic() - t0
            entry.note = "interrupted: `sweep study` again resumes here"
            save_state(path, study, opts, entries)
            raise
        entry.wall_s += time.monotonic() - t0
        entry.exit_code = rc
        analytic = get_experiment(entry.experiment).analytic
        # 130/143: the sweep caught SIGINT/SIGTERM itself (cluster.infra.interrupts) and marked its runs KILLED.
        if rc >= 128 or (rc in (0, 1) and not analytic and not sweep_finished(storage / entry.sweep)):
            entry.status, entry.note = "running", "interrupted: `sweep study` again resumes here"
            save_state(path, study, opts, entries)
            print(f"study {opts.study_name}: interrupted during {entry.experiment}; run the same command to "
                  "resume", flush=True)
            return rc if rc >= 128 else 130
        entry.status = "finished" if rc in (0, 1) else "failed"
        if rc == 1:
            entry.note = "some trials failed"
        code = max(code, 1 if rc else 0)
        save_state(path, study, opts, entries)
    from analysis.study import load_study

    loaded = load_study(uri, entries)  # once, for the report and the console summary
    report = write(opts, study, entries, root, loaded)
    if not opts.quiet:
        from analysis.study import summary_lines

        print(f"\nstudy {opts.study_name}:")
        for line in summary_lines(uri, entries, loaded=loaded):
            print(f"  {line}")
        print(f"study report: {report}")
    return code


def write(opts: StudyOptions, study: Study, entries: list[StudyEntry], root: Path, loaded: tuple | None = None) -> Path:
    from analysis.study import write_study_report

    out = report_dir(opts.out, opts.study_name)
    return write_study_report(opts.tracking_uri, opts.study_name, entries, out, study.description, loaded)


def list_studies() -> str:
    from search_spaces.studies import STUDIES

    width = max(len(n) for n in STUDIES)
    return "\n".join(f"{s.name:<{width}}  {'offline ' if s.offline else 'needs data'}  {len(s.experiments):>2} "
                     f"experiments  {s.description}" for s in STUDIES.values())
