"""Ctrl-C (SIGINT) and SIGTERM in the driver: Tune stops gracefully, MLflow is left exact.

The first SIGINT or SIGTERM during `Tuner.fit` asks Tune to stop the way its own Ctrl-C handler
does (Tune saves the experiment state one last time, so `sweep resume` continues it); Tune's
SIGINT handler is switched off (TUNE_DISABLE_SIGINT_HANDLER) and its SIGUSR1 handler, installed
for every fit, is called instead, so SIGTERM gets the same treatment. A second signal, or one
outside `fit`, raises `Interrupted` at once. Either way the driver then marks the sweep's parent
run and every child run still RUNNING as KILLED and exits 128 + signal (130, 143).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import Any

from core import store_schema as S

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The driver got SIGINT or SIGTERM; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """Installs the handlers for its `with` block and remembers the first signal (`signum`)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._env: str | None = None
        self._in_fit = False

    @contextlib.contextmanager
    def fitting(self):
        """Marks `Tuner.fit` as running: only then is a first signal handed to Tune's graceful stop.

        Tune leaves its SIGUSR1 handler installed after a fit returns, so the handler alone cannot
        tell whether a fit is running (a signal after it, e.g. while the results print or between
        a study's sweeps, must raise at once). For the same reason the handler an earlier fit of
        this process left (an adaptive wave, a study's previous sweep) is taken down first: its
        event is watched by nobody, so a signal that reached it before this fit installs its own
        would be lost and the trials would run to the end; until then a signal raises at once.
        """
        usr1 = getattr(signal, "SIGUSR1", None)
        previous = signal.signal(usr1, signal.SIG_DFL) if usr1 is not None else None
        self._in_fit = True
        try:
            yield self
        finally:
            self._in_fit = False
            if usr1 is not None:
                signal.signal(usr1, previous)

    def __enter__(self) -> SignalGuard:
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        tune_stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if (first and self._in_fit and callable(tune_stop)
                and getattr(tune_stop, "__name__", "") == "signal_interrupt_tune_run"):
            print(f"\n{signal.Signals(signum).name}: stopping the sweep (Tune saves its state; "
                  "send the signal again to stop at once)", flush=True)
            tune_stop(signal.SIGUSR1, frame)  # Tune's own graceful stop
            return
        raise Interrupted(self.signum)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)


def mark_killed(client, experiment_id: str, parent_run_id: str, signum: int) -> int:
    """Parent and every child run left RUNNING (or failed by the interrupt itself) -> KILLED.

    Returns:
        The number of child runs marked.
    """
    return mark_unfinished(client, experiment_id, parent_run_id, f"interrupted by {signal.Signals(signum).name}")


def mark_unfinished(client, experiment_id: str, parent_run_id: str, reason: str, status: str = "KILLED",
                    status_reason: str = S.STATUS_INTERRUPTED) -> int:
    """Parent and every child run left RUNNING (or failed by an interrupt) -> `status`, with `reason`.

    Returns:
        The number of child runs marked.
    """
    flt = S.children_filter(parent_run_id)
    n = 0
    for run in client.search_runs([experiment_id], filter_string=flt, max_results=50000):
        now, error = run.info.status, run.data.tags.get(S.TAG_ERROR, "")
        if now == "RUNNING" or (now == "FAILED" and error.startswith("KeyboardInterrupt")):
            client.set_tag(run.info.run_id, S.TAG_STATUS_REASON, status_reason)
            client.set_tag(run.info.run_id, S.TAG_STOP_REASON, reason)
            client.set_terminated(run.info.run_id, status=status)
            n += 1
    client.set_tag(parent_run_id, S.TAG_STATUS_REASON, status_reason)
    client.set_tag(parent_run_id, S.TAG_STOP_REASON, reason)
    client.set_terminated(parent_run_id, status=status)
    return n
