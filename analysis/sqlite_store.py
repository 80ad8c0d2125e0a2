"""A read-only reader of MLflow's own sqlite tables, for the commands that only read (`sweep results`,
`sweep report`): the stdlib `sqlite3` instead of MLflow's SQLAlchemy store, whose import alone costs
more than the whole table.

It answers what `analysis.load` asks of a store exactly as `MlflowClient` does on the same file
(tests/test_sqlite_store.py compares the loaded sweeps): the same runs (deleted runs left out of a
search, found by id), in the same order (start time newest first, then run id), the same latest
metric per key (MLflow's `latest_metrics` table, which MLflow keeps at the largest step, then
timestamp, then value; NaN from its `is_nan` flag, infinities stored by MLflow as +-1.797e308 read
as MLflow reads them), tags and params as strings, and the same error texts.

It only reads: the file is opened with `mode=ro` (never created, never migrated, never written), all
reads of one load see one snapshot (one transaction), and a writer holding the lock is waited for
(`BUSY_TIMEOUT_S`, as MLflow's own busy timeout). `open_reader` returns None, and the caller uses
MlflowClient, for anything it was not verified on: another scheme, a schema revision other than
`KNOWN_REVISIONS`, MLflow's workspaces, a file it cannot open as such a database.
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

# Schema revisions (alembic_version) this reader was checked against: the head of the MLflow in
# pyproject's range that the tests ran (MLflow 3.17). Any other revision: MlflowClient reads it.
KNOWN_REVISIONS = frozenset({"dc11669786a5"})
BUSY_TIMEOUT_S = 20.0  # MLflow's sqlite engine sets PRAGMA busy_timeout = 20000
IN_CHUNK = 500  # ids per `IN (...)`: what SQLAlchemy's selectinload sends (and the same row order)
MAX_EXPERIMENTS = 1000  # MlflowClient.search_experiments' default page


class ReaderUnavailable(Exception):
    """This store cannot be read here: the caller falls back to MlflowClient."""


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    lifecycle_stage: str
    artifact_location: str | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    run_name: str | None
    experiment_id: str
    status: str | None
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str | None
    artifact_uri: str | None
    user_id: str | None = None


@dataclass
class RunData:
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    """Shaped like mlflow.entities.Run where analysis.load reads it (info.*, data.tags/params/metrics)."""

    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    timestamp: int


class RunNotFound(LookupError):
    """MLflow's RESOURCE_DOES_NOT_EXIST for a run id (same message)."""


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URI (no query string), else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///"):]
    if not path or any(c in path for c in "?#%"):
        return None  # SQLAlchemy options, a fragment or an escape: MLflow's own parsing decides
    return Path(path)


def workspaces_enabled() -> bool:
    """MLFLOW_ENABLE_WORKSPACES makes MLflow scope every query to a workspace: not handled here."""
    return os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("1", "true")


def open_reader(tracking_uri: str) -> SqliteReader | None:
    """A reader of this store, or None where MlflowClient must read it (see the module docstring)."""
    path = sqlite_path(tracking_uri)
    if path is None or workspaces_enabled() or not path.is_file():
        return None
    try:
        return SqliteReader(path)
    except ReaderUnavailable:
        return None


class SqliteReader:
    """One read-only snapshot of an MLflow sqlite store (close it, or use it as a context manager)."""

    def __init__(self, path: Path):
        try:
            self.con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise ReaderUnavailable(str(exc)) from None
        try:
            self.con.execute("BEGIN")  # one snapshot for every read until close()
            revision = [r[0] for r in self.con.execute("SELECT version_num FROM alembic_version")]
        except sqlite3.Error as exc:  # not MLflow's, corrupt, or locked past the timeout
            self.close()
            raise ReaderUnavailable(str(exc)) from None
        if len(revision) != 1 or revision[0] not in KNOWN_REVISIONS:
            self.close()
            raise ReaderUnavailable(f"schema revision {revision} not verified")
        self.path = path

    def close(self) -> None:
        try:
            self.con.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _rows(self, sql: str, args=()) -> list[tuple]:
        return self.con.execute(sql, tuple(args)).fetchall()

    # -- experiments ------------------------------------------------------------------------------
    def _experiment(self, where: str, args) -> Experiment | None:
        rows = self._rows("SELECT experiment_id, name, lifecycle_stage, artifact_location FROM experiments "
                          f"WHERE {where}", args)
        return Experiment(str(rows[0][0]), *rows[0][1:]) if rows else None

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment of that name, deleted or not (as MlflowClient)."""
        return self._experiment("name = ? AND lifecycle_stage IN ('active', 'deleted')", (name,))

    def get_experiment(self, experiment_id: str) -> Experiment:
        found = self._experiment("experiment_id = ?", (int(experiment_id),))
        if found is None:
            raise LookupError(f"No Experiment with id={experiment_id} exists")
        return found

    def search_experiments(self) -> list[Experiment]:
        """Active experiments, MlflowClient.search_experiments()'s first page and order."""
        rows = self._rows("SELECT experiment_id, name, lifecycle_stage, artifact_location FROM experiments "
                          "WHERE lifecycle_stage = 'active' ORDER BY creation_time DESC, experiment_id "
                          f"LIMIT {MAX_EXPERIMENTS}")
        return [Experiment(str(r[0]), *r[1:]) for r in rows]

    # -- runs ---------------------------------------------------------------------------------------
    RUN_COLUMNS = "run_uuid, name, experiment_id, status, start_time, end_time, lifecycle_stage, artifact_uri, user_id"

    def get_run(self, run_id: str) -> Run:
        """The run with this id, deleted or not; RunNotFound (MLflow's message) if none."""
        rows = self._rows(f"SELECT {self.RUN_COLUMNS} FROM runs WHERE run_uuid = ?", (run_id,))
        if not rows:
            raise RunNotFound(f"Run with id={run_id} not found")
        return self._complete(rows)[0]

    def find_runs(self, experiment_ids: list[str], tags: dict[str, str], max_results: int | None = None,
                  newest_first: bool = False) -> list[Run]:
        """Active runs of the experiments carrying every tag key = value (exact, case-sensitive), in
        MlflowClient.search_runs' order: start time newest first (none last in sqlite, with or without
        `newest_first`), then run id."""
        if not experiment_ids:
            return []
        joins, args = "", []
        for i, (key, value) in enumerate(tags.items()):
            joins += (f" JOIN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?) AS t{i} "
                      f"ON runs.run_uuid = t{i}.run_uuid")
            args += [key, value]
        ids = [int(e) for e in experiment_ids]
        sql = (f"SELECT DISTINCT {', '.join('runs.' + c for c in self.RUN_COLUMNS.split(', '))} FROM runs{joins} "
               f"WHERE runs.experiment_id IN ({', '.join('?' * len(ids))}) AND runs.lifecycle_stage = 'active' "
               "ORDER BY CASE WHEN runs.start_time IS NULL THEN 1 ELSE 0 END, runs.start_time DESC, runs.run_uuid")
        if max_results is not None:
            sql += f" LIMIT {int(max_results)}"
        return self._complete(self._rows(sql, args + ids))

    def _complete(self, rows: list[tuple]) -> list[Run]:
        """Runs with their tags, params and latest metrics, each read as SQLAlchemy's selectinload reads
        them (same statement shape, same chunks: rows come back in the same order)."""
        runs = {}
        for r in rows:
            info = RunInfo(r[0], r[1], str(r[2]), *r[3:])
            runs[r[0]] = Run(info, RunData())
        ids = list(runs)
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start:start + IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for run_id, key, value in self._rows(
                    f'SELECT params.run_uuid, params."key", params.value FROM params WHERE params.run_uuid IN ({marks})',
                    chunk):
                runs[run_id].data.params[key] = value
            for run_id, key, value, is_nan in self._rows(
                    'SELECT latest_metrics.run_uuid, latest_metrics."key", latest_metrics.value, latest_metrics.is_nan '
                    f"FROM latest_metrics WHERE latest_metrics.run_uuid IN ({marks})", chunk):
                runs[run_id].data.metrics[key] = float("nan") if is_nan else float(value)
            for run_id, key, value in self._rows(
                    f'SELECT tags.run_uuid, tags."key", tags.value FROM tags WHERE tags.run_uuid IN ({marks})', chunk):
                runs[run_id].data.tags[key] = value
        out = []
        for run in runs.values():
            if not run.info.run_name and "mlflow.runName" in run.data.tags:  # as SqlRun.to_mlflow_entity
                run.info = RunInfo(run.info.run_id, run.data.tags["mlflow.runName"], *_after_name(run.info))
            out.append(run)
        return out

    def get_metric_histories(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], list[MetricPoint]]:
        """MlflowClient.get_metric_history of every (run id, key) pair: every logged value, NaN from
        is_nan, in MLflow's order (timestamp, step, value); a few queries instead of one per pair."""
        keys = sorted({key for _, key in pairs})
        runs = list(dict.fromkeys(run_id for run_id, _ in pairs))
        wanted, out = set(pairs), {}
        for start in range(0, len(runs), IN_CHUNK):
            chunk = runs[start:start + IN_CHUNK]
            rows = self._rows(
                "SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics "
                f"WHERE run_uuid IN ({', '.join('?' * len(chunk))}) AND key IN ({', '.join('?' * len(keys))}) "
                "ORDER BY run_uuid, key, timestamp, step, value", chunk + keys)
            for run_id, key, step, value, nan, stamp in rows:
                if (run_id, key) in wanted:
                    out.setdefault((run_id, key), []).append(
                        MetricPoint(step, float("nan") if nan else float(value), stamp))
        return out

    # -- artifacts ----------------------------------------------------------------------------------
    def artifact_uri(self, run_id: str) -> str | None:
        """Where the run's artifacts are stored (None for no such run)."""
        rows = self._rows("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
        return rows[0][0] if rows else None


def _after_name(info: RunInfo) -> tuple:
    return (info.experiment_id, info.status, info.start_time, info.end_time, info.lifecycle_stage,
            info.artifact_uri, info.user_id)


def local_artifact_dir(uri: str | None) -> Path | None:
    """The local directory of a `file:` artifact URI (read as MLflow's local_file_uri_to_path reads it)
    or of a plain absolute path; None for any other scheme (MLflow downloads those)."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file" and not parsed.netloc:
        return Path(url2pathname(parsed.path))
    if not parsed.scheme and uri.startswith("/"):
        return Path(url2pathname(uri))
    return None
