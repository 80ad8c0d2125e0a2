"""Tune callback that keeps MLflow's child runs truthful when Tune, not the trial, ends them."""
from __future__ import annotations

import logging

from ray import tune

from core import store_schema as S

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


class ProgressPrinter(tune.Callback):
    """One line per finished, stopped or failed trial (Tune's own tables are off: they print a
    config box and a result box for every trial, hundreds of lines per sweep)."""

    def __init__(self, total: int, swept_keys: list[str]):
        self.total, self.keys, self.done = total, [k for k in swept_keys if k != "pairing"], 0
        self.start = None

    def _label(self, trial) -> str:
        cfg = getattr(trial, "config", trial)  # a Trial or a config dict
        if "members" in cfg:  # a packed trial (sweep run --pack): its members' cells
            return " + ".join(self._label(m) for m in cfg["members"])
        parts = [str(cfg.get("pairing", ""))] + [f"{k}={cfg[k]}" for k in self.keys if k in cfg]
        return " ".join(parts + [f"seed={cfg.get('seed')}"])

    def _elapsed(self) -> str:
        import time

        if self.start is None:
            self.start = time.monotonic()
        return f"{time.monotonic() - self.start:6.0f}s"

    def setup(self, **info):
        self._elapsed()

    def on_trial_complete(self, iteration, trials, trial, **info):
        members = trial.config.get("members")
        if members:  # a packed trial: one line per member, whose metrics are under "m{i}/"
            last = trial.last_result or {}
            for i, cfg in enumerate(members):
                own = {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith(f"m{i}/")}
                self._complete(cfg, own)
            return
        self._complete(trial.config, trial.last_result or {})

    def _complete(self, cfg: dict, last: dict) -> None:
        self.done += 1
        status = "done" if "epochs_completed" in last else f"stopped early at epoch {last.get('epoch', '?')}"
        metric = f"val_acc {last['val_acc']:.3f}" if "val_acc" in last else f"val_loss {last.get('val_loss', float('nan')):.4g}"
        print(f"[{self._elapsed()}] {self.done:>4}/{self.total} {self._label(cfg)}: {metric} ({status})", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += len(trial.config.get("members") or [None])
        print(f"[{self._elapsed()}] {self.done:>4}/{self.total} {self._label(trial)}: FAILED "
              f"(see error.txt of its MLflow run)", flush=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(f"[{self._elapsed()}]      {self._label(trial)}: failed, retrying from its last checkpoint", flush=True)
