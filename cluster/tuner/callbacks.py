"""Tune callback that keeps MLflow's child runs truthful when Tune, not the trial, ends them."""
from __future__ import annotations

import logging

from ray import tune
from ray.tune.logger import TBXLoggerCallback

from core import phases, store_schema as S
from search_spaces.experiment import DEFAULT_METRIC, DEFAULT_MODE

log = logging.getLogger(__name__)


def _run_id(client, trial, experiment_id: str, parent_run_id: str) -> str | None:
    rid = (trial.last_result or {}).get("mlflow_run_id")
    if rid:
        return rid
    flt = S.trial_filter(parent_run_id, trial.trial_id)
    runs = client.search_runs([experiment_id], filter_string=flt, max_results=1)
    return runs[0].info.run_id if runs else None


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path:
        try:
            with open(path) as f:
                return f.read()[-5000:]
        except OSError:
            pass
    return str(getattr(trial, "error_msg", "") or "trial failed")


class MlflowTrialFinalizer(tune.Callback):
    """Marks runs stopped by a scheduler (status KILLED, tag status_reason=stopped_early with the
    epoch) and runs that failed for good (FAILED, error tag and error.txt artifact)."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str):
        self.uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id
        self.completed, self.stopped, self.failed = 0, 0, 0

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if S.METRIC_EPOCHS_COMPLETED in last:
            self.completed += 1
            return
        self.stopped += 1
        try:
            client = self._client()
            rid = _run_id(client, trial, self.experiment_id, self.parent_run_id)
            if rid:
                epoch = int(last.get("epoch", 0))
                client.set_tag(rid, S.TAG_STATUS_REASON, S.STATUS_STOPPED_EARLY)
                client.set_tag(rid, S.TAG_STOPPED_EPOCH, str(epoch))
                client.set_tag(rid, S.TAG_STOP_REASON, "scheduler stopped the trial at epoch %d" % epoch)
                client.set_terminated(rid, status="KILLED")
        except Exception as exc:  # bookkeeping must never take the sweep down
            log.warning("could not mark trial %s as stopped early in MLflow: %s", trial.trial_id, exc)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        try:
            client = self._client()
            rid = _run_id(client, trial, self.experiment_id, self.parent_run_id)
            if rid:
                text = _error_text(trial)
                client.set_tag(rid, S.TAG_STATUS_REASON, S.STATUS_FAILED)
                client.set_tag(rid, S.TAG_ERROR, text.strip().splitlines()[-1][:5000] if text.strip() else "failed")
                client.log_text(rid, text, S.ART_ERROR)
                client.set_terminated(rid, status="FAILED")
        except Exception as exc:
            log.warning("could not mark trial %s as failed in MLflow: %s", trial.trial_id, exc)


class TuneStateKeeper(tune.Callback):
    """The driver's last good copy of Tune's experiment state (cluster.folder.tune_copy): after
    each step in which Tune saved its state, a fresh copy in the sweep folder and the parent run's
    tag naming it. A failed copy (a full disk, a store that does not answer) keeps the previous one."""

    def __init__(self, tracking_uri: str, parent_run_id: str):
        self.uri, self.parent_run_id = tracking_uri, parent_run_id
        self._seen = None  # (name, mtime_ns, size) of the staged experiment state last copied
        self.copies = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_seen": None, "copies": 0}

    def on_step_end(self, iteration, trials, **info):
        if not trials:
            return
        from pathlib import Path

        import time

        from cluster.folder import tune_copy

        t0 = time.perf_counter()
        storage = trials[0].storage
        if getattr(storage.storage_filesystem, "type_name", "local") != "local":
            return  # cloud storage: no sweep folder of the driver's (`sweep resume` needs a local one)
        folder = Path(storage.experiment_fs_path)  # where Tune writes now (a moved sweep included)
        try:
            staging = Path(storage.experiment_driver_staging_path)
            newest = tune_copy.newest_state(staging)
            if newest is None:
                return
            st = newest.stat()
            seen = (newest.name, st.st_mtime_ns, st.st_size)
            if seen == self._seen:
                return
            files = tune_copy.staged_files(staging)
            if files is None:
                return
            self._seen = seen  # tried once per save of Tune's (a full disk: one warning per save, not per step)
            name, digest = tune_copy.write_copy(folder, files)
        except Exception as exc:  # a full disk: the previous copy stays the good one
            log.warning("could not copy Tune's experiment state into %s: %s", folder, exc)
            return
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=self.uri).set_tag(self.parent_run_id, tune_copy.TAG_COPY, f"{name} {digest}")
        except Exception as exc:  # the tag still names the previous copy, which is kept
            log.warning("could not record the copy of Tune's experiment state: %s", exc)
            import shutil

            shutil.rmtree(folder / tune_copy.COPY_ROOT / name, ignore_errors=True)
            return
        self.copies += 1
        tune_copy.drop_copies(folder, keep=name)
        phases.mark("state_copy", s=round(time.perf_counter() - t0, 4))


def _members(trial) -> list[tuple[dict, dict]]:
    """(config, last metrics) of each cell a Tune trial trains: one, or a pack's members ("m{i}/" keys)."""
    cfg, last = getattr(trial, "config", {}) or {}, getattr(trial, "last_result", None) or {}
    members = cfg.get("members")
    if not members:
        return [(cfg, last)]
    return [(m, {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith(f"m{i}/")})
            for i, m in enumerate(members)]


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class NoTensorBoardFiles(TBXLoggerCallback):
    """Takes the place of Tune's TensorBoard logger, which Tune adds to every run unless one is
    given, and writes nothing. The sweep's record is MLflow; Tune's own result.json and
    progress.csv stay (Tune's analysis and `sweep resume` read them). The real logger opens a
    writer (and its thread) per trial and writes an events file per result in the driver's loop,
    while the reporting trial waits for the driver (Tune's function trainables report
    synchronously): 0.21 s of driver CPU for 8 trials x 20 results measured here, against 0.003 s
    for the CSV logger and 0.007 s for the JSON one."""

    _SAVED_FILE_TEMPLATES: list[str] = []

    def __init__(self):  # noqa: D107 - no tensorboardX import (the parent's __init__ is that import)
        pass

    def log_trial_start(self, trial) -> None:
        pass

    def log_trial_result(self, iteration, trial, result) -> None:
        pass

    def log_trial_end(self, trial, failed: bool = False) -> None:
        pass


class PhaseMarker(tune.Callback):
    """Start-up phases seen by Tune (core.phases; added only while $SWEEP_PHASE_LOG is set): the
    first trial actor started, the first result, and the last trial's completion."""

    def __init__(self):
        self.open = 0

    def on_trial_start(self, iteration, trials, trial, **info):
        phases.mark("first_actor_ready", once=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        phases.mark("first_result", once=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        phases.mark("trial_complete")

    def on_trial_error(self, iteration, trials, trial, **info):
        phases.mark("trial_complete")


class ProgressDisplay(tune.Callback):
    """The sweep's one progress display: trials done / running / failed, ETA and the best so far.

    On a terminal it is a single line redrawn in place (at most every `redraw_s`); elsewhere (CI
    logs, pipes) a plain line at each tenth of the trials finished, a heartbeat when no trial
    finished for `interval_s` (or a tenth of the time so far, if longer), and the end: a dozen or
    two lines however long the sweep. A failed trial or
    a retry also prints a line of its own. Tune's tables are off (they print a config and a result box per
    trial, hundreds of lines per sweep).
    """

    def __init__(self, total: int, swept_keys: list[str], metric: str = DEFAULT_METRIC, mode: str = DEFAULT_MODE,
                 stream=None, tty: bool | None = None, interval_s: float = 60.0, redraw_s: float = 0.5,
                 clock=None):
        import time

        from cluster.infra.console import is_tty

        self.total, self.keys = total, [k for k in swept_keys if k not in ("pairing", "seed")]
        self.metric, self.mode = metric, mode
        self._stream = stream  # None: sys.stdout at write time (Tune pickles callbacks with its state)
        self.tty = is_tty(self.stream) if tty is None else tty
        self.interval_s, self.redraw_s = interval_s, redraw_s
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self.done = self.stopped = self.failed = self.running = 0
        self.best: tuple[float, str] | None = None
        self._last_print = self.start
        self._width = 0
        self._step = max(1, -(-total // 10))  # plain lines: one per tenth of the trials finished
        self._milestone = self._step
        self._last_finished = -1

    @property
    def stream(self):
        import sys

        return self._stream or sys.stdout

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}

    def _label(self, cfg: dict) -> str:
        parts = [str(cfg.get("pairing", ""))] + [f"{k}={cfg[k]}" for k in self.keys if k in cfg]
        return " ".join(parts + [f"seed={cfg.get('seed')}"])

    def status(self, width: int | None = None) -> str:
        """The progress line (no carriage return or newline); within `width` the best trial's
        label goes first, then the line is cut."""
        elapsed = self.clock() - self.start
        finished = self.done + self.failed
        counts = [f"{self.running} running"] + ([f"{self.stopped} stopped early"] if self.stopped else [])
        parts = [f"[{_duration(elapsed):>6}] {finished}/{self.total} trials done ("
                 + ", ".join(counts + [f"{self.failed} failed"]) + ")"]
        if 0 < finished < self.total:
            parts.append(f"ETA {_duration(elapsed / finished * (self.total - finished))}")
        if self.best is not None:
            parts.append(f"best {self.metric} {self.best[0]:.4g}")
        line = " | ".join(parts)
        full = line + (f" ({self.best[1]})" if self.best is not None else "")
        if width is None or len(full) <= width:
            return full
        return line[:width]

    def _show(self, force: bool = False) -> None:
        now = self.clock()
        if self.tty:
            if not force and now - self._last_print < self.redraw_s:
                return
            import shutil

            width = max(shutil.get_terminal_size((100, 20)).columns - 1, 20)
            line = self.status(width)
            self.stream.write("\r" + line + " " * max(self._width - len(line), 0))
            self._width = len(line)
        else:
            finished = self.done + self.failed
            quiet_for = now - self._last_print
            heartbeat = (finished == self._last_finished
                         and quiet_for >= max(self.interval_s, (now - self.start) / 10))
            if force:
                if finished == self._last_finished:
                    return  # the end, already shown
            elif finished < self._milestone and not heartbeat:
                return
            while self._milestone <= finished:
                self._milestone += self._step
            self._last_finished = finished
            self.stream.write(self.status() + "\n")
        self.stream.flush()
        self._last_print = now

    def _message(self, text: str) -> None:
        """A line of its own (a failure, a retry), above the progress line on a terminal."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(f"[{_duration(self.clock() - self.start):>6}] {text}\n")
        self.stream.flush()
        if self.tty:
            self._show(force=True)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def on_step_end(self, iteration, trials, **info):
        self.running = sum(len(_members(t)) for t in trials if getattr(t, "status", None) == "RUNNING")
        self._show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        for cfg, last in _members(trial):
            self.done += 1
            self.running = max(self.running - 1, 0)
            if "epochs_completed" not in last:
                self.stopped += 1
            value = last.get(self.metric)
            if isinstance(value, (int, float)) and value == value and self._better(float(value)):
                self.best = (float(value), self._label(cfg))
        self._show(force=self.tty)

    def on_trial_error(self, iteration, trials, trial, **info):
        members = _members(trial)
        self.failed += len(members)
        self.running = max(self.running - len(members), 0)
        self._message(" + ".join(self._label(c) for c, _ in members) + ": FAILED (see error.txt of its MLflow run)")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._message(" + ".join(self._label(c) for c, _ in _members(trial))
                      + ": failed, retrying from its last checkpoint")

    def on_experiment_end(self, trials, **info):
        self.running = 0
        self._show(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
