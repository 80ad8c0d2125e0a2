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


def describe(exc: BaseException) -> str:
    """One line saying what stopped the driver, looking through wrapped causes (Tune wraps errors)."""
    import errno

    seen, cur = set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {cur.filename}" if cur.filename else ""
            return f"no space left on the device{where} (disk full or quota reached)"
        if isinstance(cur, BrokenPipeError) or (isinstance(cur, OSError) and cur.errno == errno.EBADF):
            return "the console was closed (stdout is a closed pipe)"
        inner = getattr(cur, "cause", None)  # a trial's error, as Ray hands it over (RayTaskError.cause)
        cur = cur.__cause__ or cur.__context__ or (inner if isinstance(inner, BaseException) else None)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def console_closed(exc: BaseException) -> bool:
    return "console was closed" in describe(exc)


def disk_full(exc: BaseException) -> bool:
    return describe(exc).startswith("no space left")


def silence_stdout() -> None:
    """Point a broken stdout at /dev/null so nothing more (not even Python's exit flush) fails on it."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def stop_trials() -> None:
    """Disconnect from Ray: a local Ray (started by this driver) stops with its workers; on a
    `sweep up` head or a cluster, Ray kills the trial actors this driver owned."""
    try:
        from cluster.infra.ray_setup import stop_ray

        stop_ray()
    except Exception:  # noqa: BLE001 - stopping is best effort; the runs are marked either way
        pass


def mark_failed(client, record: SweepRecord, exc: BaseException) -> str:
    """Parent and every child run still RUNNING -> FAILED with the reason; the folder's exit
    manifest recorded. Returns a sentence saying what was marked (or why it could not be)."""
    import signal

    why = describe(exc)
    if console_closed(exc):
        silence_stdout()
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in interrupts.SIGNALS}
    try:
        stop_trials()  # no trial may log (and reopen its run) after the runs are marked
        try:
            n = interrupts.mark_unfinished(client, record.experiment_id, record.parent_run_id, f"driver stopped: {why}",
                                           status="FAILED", status_reason="driver_error")
            marked = f"parent and {n} running trial run(s) marked FAILED"
        except Exception as mark_exc:  # noqa: BLE001 - the store may be the thing that failed
            marked = (f"the MLflow runs could not be marked ({describe(mark_exc)}); `sweep resume` marks them "
                      "once the store answers again")
        record.record_exit_state()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return marked


FULL_BELOW = 1 << 20  # bytes free under which the storage counts as full


def full_storage(record: SweepRecord, exc: BaseException) -> BaseException:
    """`exc`, or an ENOSPC naming the sweep folder when that folder's filesystem is full: Tune then
    fails on files the full disk truncated (an empty pickled error: EOFError, UnpicklingError),
    errors that do not say why."""
    import errno
    import shutil

    if disk_full(exc) or "://" in record.storage_path:
        return exc
    try:
        free = shutil.disk_usage(record.folder).free
    except OSError:
        return exc
    if free >= FULL_BELOW:
        return exc
    full = OSError(errno.ENOSPC, f"No space left on device ({free} bytes free; then {describe(exc)})",
                   str(record.folder))
    full.__cause__ = exc
    return full


def failed(client, record: SweepRecord, exc: BaseException) -> int:
    """The driver cannot go on (a full disk, a store that stopped answering, a closed console):
    runs marked (mark_failed), one message on stderr, exit code 1. `sweep resume` then continues
    the sweep (finished trials are not rerun).
    """
    exc = full_storage(record, exc)
    marked = mark_failed(client, record, exc)
    where = _traceback_to_log(record, exc)
    try:
        print(f"sweep {record.name}: stopped: {describe(exc)}; {marked}. Fix the cause, then "
              f"`sweep resume {record.name}` reruns only what did not finish{where}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass  # stderr closed too: the exit code and the runs' stop_reason tags say it
    return 1


def _traceback_to_log(record: SweepRecord, exc: BaseException) -> str:
    """The whole traceback of an error that is not a fault of the machine (a bug, a library
    error), appended to the sweep's driver.log: the console keeps its one line. Returns the
    sentence pointing at it ("" when nothing was written)."""
    import traceback

    if not record.driver_log or disk_full(exc) or console_closed(exc):
        return ""
    try:
        with open(record.driver_log, "a", encoding="utf-8") as f:
            f.write(f"sweep {record.name}: stopped by this error:\n")
            traceback.print_exception(exc, file=f)
    except OSError:
        return ""
    return f" (the traceback is in {record.driver_log})"


# Set by the `sweep` program (cluster.cli) for `sweep run` and `sweep resume`, whose process ends
# with the sweep: Ray is disconnected (a local Ray stopped) in a thread as soon as fit returns,
# while the parent run is closed and the results table read and printed, instead of in Ray's
# atexit hook afterwards (which also sleeps 0.5 s first). In-process callers (tests, notebooks,
# `sweep study`'s several sweeps) keep their Ray.
STOP_RAY_AFTER_FIT = {"on": False}


def _stop_ray_in_background():
    """Start stop_trials() (ray_setup.stop_ray) in a thread; returns the thread (join it before the process ends)."""
    import threading

    thread = threading.Thread(target=stop_trials, name="sweep-ray-shutdown", daemon=True)
    thread.start()
    return thread


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
    full = next((r.error for r in results if r.error is not None and disk_full(r.error)), None)
    if full is not None:  # the trials met a full disk (their checkpoints): the sweep stops as the driver would
        return failed(client, record, full)
    stopping = _stop_ray_in_background() if STOP_RAY_AFTER_FIT["on"] else None
    try:
        record.record_exit_state()
        errors = sum(1 for r in results if r.error is not None)
        client.set_tag(record.parent_run_id, S.TAG_N_ERRORS, str(errors))
        client.set_terminated(record.parent_run_id, status="FINISHED" if errors < len(results) else "FAILED")
        if not opts.quiet:
            print_results(record)
    finally:
        if stopping is not None:
            stopping.join()
            phases.mark("ray_stopped")
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
