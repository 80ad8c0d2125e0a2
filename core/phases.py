"""Timestamps of a sweep's start-up and shut-down phases, for benchmarks/bench_phases.py.

When $SWEEP_PHASE_LOG names a file, `mark(phase)` appends one JSON line to it:
{"phase": ..., "t": wall-clock seconds (time.time()), "pid": ..., "cpu": the process's CPU
seconds so far (all threads; a load-independent measure)}. Unset (the default), `mark`
does nothing and costs one dictionary lookup. The benchmark starts the clock when it launches
the command and reads the lines back, so every phase is a measured instant, not an estimate.

Phases a `sweep run` records, in the order they usually happen: cli_imported, run_imported,
planned (plan + preflight checks), ray_ready, mlflow_ready (store, client and experiment; in a
thread), parent_run, fit_start, first_actor_ready (Tune started the first trial actor),
trial_start (in each trial process), first_result, trial_complete (each trial), fit_end,
results_table (printed), ray_stopped (`sweep run`/`resume` as the program: Ray disconnected or
stopped while the table printed), exit (the last atexit hook, after Ray's shutdown).
Each trial process also marks, per trial: trial_start, trial_session (Tune session and checkpoint
read), trial_built (data, model, trainer; then the MLflow run opens and training starts) and
trial_end (with `report_s`, the seconds its reports to Tune blocked, and `reports`); the driver
marks state_copy (with `s`) each time it copies Tune's experiment state.
"""
from __future__ import annotations

import json
import os
import threading
import time

ENV = "SWEEP_PHASE_LOG"
_lock = threading.Lock()
_seen: set[str] = set()


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def mark(phase: str, once: bool = False, **extra) -> None:
    """Append `phase` with the current wall-clock time to $SWEEP_PHASE_LOG (no-op when unset).

    With `once`, only the first mark of that phase in this process is written.
    """
    path = os.environ.get(ENV)
    if not path:
        return
    t = time.time()
    with _lock:
        if once:
            if phase in _seen:
                return
            _seen.add(phase)
        line = json.dumps({"phase": phase, "t": t, "pid": os.getpid(), "cpu": round(time.process_time(), 3), **extra})
        try:
            with open(path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass  # a benchmark aid never breaks a sweep


def read(path: str) -> list[dict]:
    """The marks of a phase log, in file order; unparseable lines are skipped."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out
