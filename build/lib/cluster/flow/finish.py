"""How `sweep run` and `sweep resume` end: fit, close the parent run, or mark an interrupt exactly."""
from __future__ import annotations

import sys
from pathlib import Path

from cluster.flow.options import RunOptions
from cluster.folder.record import record_exit_state
from cluster.infra import interrupts, tracking
from core import store_schema as S


def interrupted(client, meta: dict, signum: int, folder: Path | None) -> int:
    """Mark the parent and every RUNNING child KILLED; 128 + signal number."""
    import signal

    # A third signal while MLflow is being updated must not leave runs RUNNING.
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in interrupts.SIGNALS}
    try:
        n = interrupts.mark_killed(client, meta["experiment_id"], meta["parent_run_id"], signum)
        record_exit_state(folder, meta)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"sweep {meta['name']}: interrupted by {signal.Signals(signum).name}; parent and {n} running trial "
          f"run(s) marked KILLED. Continue with `sweep resume {meta['name']}`", file=sys.stderr, flush=True)
    return 128 + signum

def fit_and_close(tuner, client, meta: dict, opts: RunOptions, guard: interrupts.SignalGuard,
                   folder: Path | None) -> int:
    with guard.fitting():
        results = tuner.fit()
    if guard.signum is not None:  # Tune stopped gracefully on our SIGINT/SIGTERM
        return interrupted(client, meta, guard.signum, folder)
    record_exit_state(folder, meta)
    errors = sum(1 for r in results if r.error is not None)
    client.set_tag(meta["parent_run_id"], S.TAG_N_ERRORS, str(errors))
    client.set_terminated(meta["parent_run_id"], status="FINISHED" if errors < len(results) else "FAILED")
    if not opts.quiet:
        print_results(meta)
    return 1 if errors else 0

def print_results(meta: dict) -> None:
    from analysis.results import format_results, results_table

    table = results_table(meta["tracking_uri"], sweep=meta["name"])
    print(f"\nResults of {meta['name']} (mean and 95% CI over seeds):")
    print(format_results(table, "table"))
    print(f"\nBrowse every trial:  {tracking.ui_hint(meta['tracking_uri'], meta.get('experiment_id'))}")
    if meta.get("driver_log") and not meta.get("options", {}).get("verbose"):
        print(f"Ray and MLflow logs: {meta['driver_log']}")
