"""How `sweep run` and `sweep resume` end: fit, close the parent run, or mark an interrupt exactly."""
from __future__ import annotations

import sys

from cluster.flow.options import RunOptions
from cluster.folder.record import SweepRecord
from cluster.infra import interrupts, tracking
from core import phases, store_schema as S


def interrupted(client, record: SweepRecord, signum: int) -> int:
    """Mark the parent and every RUNNING child KILLED; 128 + signal number."""
    import signal

    # A third signal while MLflow is being updated must not leave runs RUNNING.
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in interrupts.SIGNALS}
    try:
        n = interrupts.mark_killed(client, record.experiment_id, record.parent_run_id, signum)
        record.record_exit_state()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"sweep {record.name}: interrupted by {signal.Signals(signum).name}; parent and {n} running trial "
          f"run(s) marked KILLED. Continue with `sweep resume {record.name}`", file=sys.stderr, flush=True)
    return 128 + signum


def fit_and_close(tuner, client, record: SweepRecord, opts: RunOptions, guard: interrupts.SignalGuard) -> int:
    """Fit; then the parent run FINISHED (FAILED when every trial failed) and the results, or the
    interrupt's exact state. Returns the exit code (0 ok, 1 some trials failed, 128 + signal)."""
    phases.mark("fit_start")
    if not opts.quiet:
        _preload_results_table()
    with guard.fitting():
        results = tuner.fit()
    phases.mark("fit_end")
    if guard.signum is not None:  # Tune stopped gracefully on our SIGINT/SIGTERM
        return interrupted(client, record, guard.signum)
    record.record_exit_state()
    errors = sum(1 for r in results if r.error is not None)
    client.set_tag(record.parent_run_id, S.TAG_N_ERRORS, str(errors))
    client.set_terminated(record.parent_run_id, status="FINISHED" if errors < len(results) else "FAILED")
    if not opts.quiet:
        print_results(record)
    return 1 if errors else 0


def _preload_results_table() -> None:
    """Import the results table's modules (pandas, scipy, analysis) in a daemon thread while the
    trials train, so the table prints as soon as fit returns."""
    import threading

    def load() -> None:
        try:
            import analysis.results  # noqa: F401
        except Exception:  # the table's own import reports any problem, in the main thread
            pass

    threading.Thread(target=load, name="sweep-preload-results", daemon=True).start()


def print_results(record: SweepRecord) -> None:
    from analysis.results import format_results, results_table

    table = results_table(record.tracking_uri, sweep=record.name)
    print(f"\nResults of {record.name} (mean and 95% CI over seeds):")
    print(format_results(table, "table"), flush=True)
    phases.mark("results_table")
    print(f"\nBrowse every trial:  {tracking.ui_hint(record.tracking_uri, record.experiment_id)}")
    if record.driver_log and not record.options.get("verbose"):
        print(f"Ray and MLflow logs: {record.driver_log}")
