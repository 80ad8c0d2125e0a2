"""Read a sweep from any MLflow tracking URI into a SweepData of DataFrames."""
from __future__ import annotations

import ast
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.sweep_data import SweepData
from core import store_schema as S
from core.errors import ConfigError
from core.safe_paths import check_name

if TYPE_CHECKING:  # mlflow is imported when a store is read, so `import analysis` needs no mlflow
    from mlflow.tracking import MlflowClient

PAGE = 1000
# Tags parsed like params (everything else stays a string: a git sha can look like a number).
TYPED_TAGS = (S.TAG_SEED, S.TAG_STOPPED_EPOCH, S.TAG_N_CLASSES)


def parse_value(text: Any) -> Any:
    """Type back a param string: "0.01" -> 0.01, "[50, 10]" -> (50, 10), "True" -> True.

    Lists become tuples so cells can be grouped on them; anything unparseable stays a string.
    """
    if not isinstance(text, str):
        return text
    for parse in (ast.literal_eval, json.loads):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return _freeze(value)
    return text


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):  # dicts are not hashable; keep their text for grouping
        return json.dumps(value, sort_keys=True)
    return value


class MlflowStore:
    """MlflowClient behind the reader interface of analysis.sqlite_store (any tracking URI)."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def get_experiment(self, experiment_id: str):
        return self.client.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str):
        return self.client.get_experiment_by_name(name)

    def search_experiments(self) -> list:
        return self.client.search_experiments()

    def find_runs(self, experiment_ids: list[str], tags: dict[str, str], max_results: int | None = None,
                  newest_first: bool = False) -> list:
        """Active runs carrying every tag key = value in MLflow's order (newest first, then run id;
        `newest_first` puts runs without a start time last on every backend), all pages."""
        where = " and ".join(f"tags.`{k}` = {_quote(v)}" for k, v in tags.items())
        order = ["attributes.start_time DESC"] if newest_first else None
        runs, token = [], None
        while True:
            page = self.client.search_runs(experiment_ids, filter_string=where, order_by=order,
                                           max_results=min(PAGE, max_results or PAGE), page_token=token)
            runs.extend(page)
            token = page.token
            if not token or (max_results and len(runs) >= max_results):
                return runs[:max_results] if max_results else runs

    def get_metric_histories(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], list]:
        """{(run_id, key): metric history} for each pair: one query each, in parallel against a
        server (latency-bound)."""
        def one(pair):
            return pair, self.client.get_metric_history(*pair)

        if not self.client.tracking_uri.startswith(("http://", "https://")) or len(pairs) < 16:
            return dict(one(p) for p in pairs)
        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(pool.map(one, pairs))

    def close(self) -> None:
        pass


def _store(client) -> Any:
    """The reader interface over `client`: a reader of analysis.sqlite_store, or an MlflowClient."""
    return client if hasattr(client, "find_runs") else MlflowStore(client)


def _quote(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


def _experiment_ids(store, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in store.search_experiments()]
    exp = store.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in store.search_experiments())
        raise ConfigError(f"no MLflow experiment named {experiment!r} in this tracking store; "
                          f"experiments there: {', '.join(names) or '(none)'}")
    return [exp.experiment_id]


def find_parent(client, experiment: str | None = None, sweep: str | None = None,
                parent_run_id: str | None = None):
    """The sweep's parent run: by id, by sweep name (newest), or the experiment's newest sweep.

    Args:
        client: an MlflowClient, or a reader of analysis.sqlite_store.

    Raises:
        ConfigError: nothing identifies a sweep, or it is not in the store (the message lists
            the sweeps that are).
    """
    store = _store(client)
    if parent_run_id:
        try:
            return store.get_run(parent_run_id)
        except Exception as err:  # MlflowException with a backend-specific message
            raise ConfigError(f"no parent run with id {parent_run_id!r}: {err}") from None
    if experiment is None and sweep is None:
        raise ConfigError("name an experiment, a sweep or a parent run id to load")
    if sweep is not None:
        check_name(sweep)  # every sweep the driver wrote has one; anything else would reach a filter string
    ids = _experiment_ids(store, experiment)
    is_sweep = {S.TAG_ROLE: S.ROLE_SWEEP}
    where = is_sweep | ({S.TAG_SWEEP: sweep} if sweep else {})
    found = store.find_runs(ids, where, max_results=1, newest_first=True) if ids else []
    if found:
        return found[0]
    known = sorted({r.data.tags.get(S.TAG_SWEEP, r.info.run_name)
                    for r in store.find_runs(ids, is_sweep)}) if ids else []
    what = f"sweep {sweep!r}" if sweep else "sweep"
    scope = f" in experiment {experiment!r}" if experiment else ""
    raise ConfigError(f"no {what}{scope} in this tracking store; sweeps there: "
                      f"{', '.join(known) or '(none)'}")


def _declaration(store, tracking_uri: str, run) -> dict | None:
    path = download_artifact(tracking_uri, run.info.run_id, S.ART_DECLARATION,
                             fast=not isinstance(store, MlflowStore))
    return json.loads(path.read_text()) if path else None


def download_artifact(tracking_uri: str, run_id: str, artifact: str, dst: str | None = None,
                      fast: bool = True) -> Path | None:
    """A local path to a run's artifact (None when the run has no such artifact).

    With `fast`, a run of a sqlite store whose artifacts lie on this machine's disk (file: URIs, as
    `sweep run` stores them beside the database) is read in place, without MLflow: the returned
    path is the stored file itself, to be read, not changed. Anything else is downloaded by
    MLflow into `dst` (a new temporary directory by default).
    """
    if fast:
        found = _local_artifact(tracking_uri, run_id, artifact)
        if found is not False:
            return found
    import mlflow.artifacts

    try:
        return Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=dst or tempfile.mkdtemp(prefix="sweep-"),
            tracking_uri=tracking_uri))
    except Exception:  # missing artifact: MlflowException/OSError depending on the store
        return None


def _local_artifact(tracking_uri: str, run_id: str, artifact: str) -> Path | None | bool:
    """The artifact's path on this machine's disk, None if the run has no such file, False when
    MLflow must fetch it (not a sqlite store the reader reads, an artifact URI of another scheme)."""
    return _in_root(_local_roots(tracking_uri, [run_id]).get(run_id), artifact)


def _local_roots(tracking_uri: str, run_ids: list[str]) -> dict[str, Path | None]:
    """Each run's artifact directory on this machine's disk (None: MLflow must fetch its artifacts),
    read with one read-only reader for all the runs; {} when the store is not one the reader reads."""
    import sqlite3

    from analysis.sqlite_store import local_artifact_dir, open_reader

    reader = open_reader(tracking_uri)
    if reader is None:
        return {}
    try:
        with reader:
            return {run_id: local_artifact_dir(reader.artifact_uri(run_id)) for run_id in run_ids}
    except sqlite3.Error:
        return {}


def _in_root(root: Path | None, artifact: str) -> Path | None | bool:
    """`artifact` under a run's local artifact directory (None: the run has no such file), or False
    when there is no local directory (MLflow must fetch it)."""
    if root is None:
        return False
    path = root / artifact
    return path if path.exists() else None


def load_sweep(tracking_uri: str, experiment: str | None = None, sweep: str | None = None,
               parent_run_id: str | None = None, histories: bool = True, fast: bool = True) -> SweepData:
    """Load one sweep: the parent run, one row per trial, and the metric histories.

    Args:
        tracking_uri: any MLflow tracking URI (sqlite:///..., http://host:5000, file:...).
        experiment: experiment name; alone it selects the experiment's newest sweep.
        sweep: sweep name (the parent run's `sweep` tag); the newest one of that name wins.
        parent_run_id: the parent run id (takes precedence).
        histories: False leaves `history` empty (one store query per run and key saved: the
            results table reads only each run's final values).
        fast: a sqlite:/// store MLflow 3 wrote is read with the stdlib's sqlite3, read-only
            (analysis.sqlite_store: the same data, without importing MLflow); False, or any other
            store, schema or error there: MlflowClient reads it.

    Returns:
        SweepData with typed params (numbers as numbers, lists as tuples).

    Raises:
        ConfigError: the experiment or sweep does not exist (names what does).
    """
    if fast:
        import sqlite3

        from analysis.sqlite_store import open_reader

        reader = open_reader(tracking_uri)
        if reader is not None:
            try:
                with reader:
                    return _load(reader, tracking_uri, experiment, sweep, parent_run_id, histories)
            except sqlite3.Error:  # locked past the busy timeout, a damaged page: MLflow reads it
                pass
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    return _load(MlflowStore(MlflowClient(tracking_uri=tracking_uri)), tracking_uri, experiment, sweep,
                 parent_run_id, histories)


def _load(store, tracking_uri: str, experiment: str | None, sweep: str | None, parent_run_id: str | None,
          histories: bool) -> SweepData:
    parent = find_parent(store, experiment, sweep, parent_run_id)
    exp = store.get_experiment(parent.info.experiment_id)
    children = store.find_runs([parent.info.experiment_id], {S.TAG_PARENT_RUN_ID: parent.info.run_id})
    rows, history, params, metrics = [], [], set(), set()
    for run in children:
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name,
               "mlflow_status": run.info.status, "start_time": run.info.start_time}
        for key, value in run.data.tags.items():
            if not key.startswith(S.MLFLOW_TAG_PREFIX):
                row[key] = parse_value(value) if key in TYPED_TAGS else value
        for key, value in run.data.params.items():
            row[key] = parse_value(value)
            params.add(key)
        for key, value in run.data.metrics.items():
            row[key] = value
            metrics.add(key)
        rows.append(row)
    wanted = [(r.info.run_id, k) for r in children for k in r.data.metrics if histories and k in S.HISTORY_KEYS]
    for run_id, key, points in _histories(store, wanted):
        history += [(run_id, key, m.step, m.value) for m in points]
    runs = add_derived(pd.DataFrame(rows))
    reason = S.TAG_STATUS_REASON
    if reason not in runs and len(runs):  # runs logged without the framework's tag
        runs[reason] = np.where(runs["mlflow_status"] == "FINISHED", S.STATUS_COMPLETED, S.STATUS_FAILED)
    elif len(runs):  # still running, or killed before the driver tagged it: not a result
        runs[reason] = runs[reason].fillna(runs["mlflow_status"].str.lower())
    swept = parent.data.tags.get(S.TAG_SWEPT_KEYS)
    info = {"run_id": parent.info.run_id, "name": parent.data.tags.get(S.TAG_SWEEP, parent.info.run_name),
            "experiment": exp.name, "experiment_id": exp.experiment_id, "tracking_uri": tracking_uri,
            "tags": {k: v for k, v in parent.data.tags.items() if not k.startswith(S.MLFLOW_TAG_PREFIX)},
            "params": {k: parse_value(v) for k, v in parent.data.params.items()},
            "declaration": _declaration(store, tracking_uri, parent)}
    hist = pd.DataFrame(history, columns=["run_id", "key", "step", "value"])
    return SweepData(parent=info, runs=runs, history=hist.sort_values(["run_id", "key", "step"],
                                                                        ignore_index=True),
                     swept_keys=json.loads(swept) if swept else infer_swept_keys(runs, params),
                     metrics=sorted(metrics), params=sorted(params))


def _histories(store, wanted: list[tuple[str, str]]):
    """(run_id, key, metric history) for each pair, through the store's batch query."""
    if not wanted:
        return []
    found = store.get_metric_histories(wanted)
    return [(run_id, key, found.get((run_id, key), [])) for run_id, key in wanted]


# Metrics computed from a trial's logged final values, for claims no single logged metric states:
# name -> (minuend, subtrahend). "val_train_loss_gap" > 0: the last epoch's validation loss is above
# its training loss (BASE: "both models show signs of overfitting").
DERIVED_METRICS = {"val_train_loss_gap": ("val_loss", "train_loss")}


def add_derived(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table with DERIVED_METRICS added where both inputs were logged (NaN elsewhere)."""
    for name, (a, b) in DERIVED_METRICS.items():
        if a in runs and b in runs and name not in runs:
            runs[name] = pd.to_numeric(runs[a], errors="coerce") - pd.to_numeric(runs[b], errors="coerce")
    return runs


def infer_swept_keys(runs: pd.DataFrame, params: set[str]) -> list[str]:
    """Params that differ between trials (seed excluded), for sweeps without the tag."""
    keys = []
    for key in sorted(params):
        if key in (S.PARAM_SEED, "model_seed", S.TAG_TRIAL_ID) or key not in runs:
            continue
        if runs[key].astype(str).nunique() > 1:
            keys.append(key)
    return ([S.PARAM_PAIRING] if S.PARAM_PAIRING in keys else []) + [k for k in keys if k != S.PARAM_PAIRING]


def load_artifacts(data: SweepData, kernels: bool = True, confusion: bool = True) -> SweepData:
    """Fill `data.kernels` and `data.confusion` from the trials' artifacts (missing ones skipped)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file is noise
    uri = data.parent["tracking_uri"]
    run_ids = list(data.runs["run_id"])
    roots = _local_roots(uri, run_ids) if (kernels or confusion) else {}  # one reader, not one per file

    def fetch(run_id: str, artifact: str, dst: str) -> Path | None:
        found = _in_root(roots.get(run_id), artifact)
        return download_artifact(uri, run_id, artifact, dst, fast=False) if found is False else found

    k_rows, c_rows = [], []
    with tempfile.TemporaryDirectory(prefix="sweep-artifacts-") as tmp:
        for i, run_id in enumerate(run_ids):
            dst = str(Path(tmp) / str(i))
            if kernels:
                init = fetch(run_id, S.ART_KERNELS_INITIAL, dst)
                final = fetch(run_id, S.ART_KERNELS_FINAL, dst)
                if init and final:
                    k_rows.append((run_id, np.load(init), np.load(final)))
            if confusion:
                path = fetch(run_id, S.ART_CONFUSION, dst)
                if path:
                    doc = json.loads(path.read_text())
                    c_rows.append((run_id, list(doc["labels"]), np.asarray(doc["matrix"], float)))
    data.kernels = pd.DataFrame(k_rows, columns=["run_id", "initial", "final"])
    data.confusion = pd.DataFrame(c_rows, columns=["run_id", "labels", "matrix"])
    return data
