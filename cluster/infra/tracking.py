"""Driver-side MLflow: check the tracking URI, create the sweep's parent run, close trial runs.

Trials create and fill their own child runs (trainables.tracking); the driver owns the parent run
and a Tune callback that marks runs stopped early by a scheduler or failed for good.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from core.errors import ConfigError
from core import store_schema as S
from trainables.tracking import param_value, redact

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str, timeout: float = 5.0) -> str:
    """Validate the scheme and reachability of a tracking URI before any run starts.

    Returns:
        The URI, with a relative sqlite path made absolute (trials may run in other directories).

    Raises:
        ConfigError: unsupported scheme, unwritable sqlite directory, or unreachable server.
    """
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in SCHEMES:
        raise ConfigError(f"tracking URI {uri!r} has unsupported scheme {scheme or '(none)'!r}; use one of "
                          f"{', '.join(s + '://' for s in SCHEMES)} (MLflow 3 has no file store: use sqlite:///mlflow.db)")
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"sqlite tracking URI must look like sqlite:///path/to/mlflow.db, got {uri!r}")
        if any(c in path for c in "?#%") or any(ord(c) < 32 for c in path):
            # SQLAlchemy reads '?...' as connection options and '#' or '%xx' differently from the path
            # checked here: the runs would go to another file.
            raise ConfigError(f"the sqlite path {path!r} contains '?', '#', '%' or a control character, which "
                              "the tracking URI cannot carry; use a path without them")
        try:
            db = Path(path).expanduser().resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise ConfigError(f"the MLflow database path {path!r} cannot be resolved: {exc}") from None
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise ConfigError(f"cannot write the MLflow database {db}: directory {db.parent} is missing or not writable")
        check_sqlite_file(db)
        return f"sqlite:///{db}"
    if scheme in ("http", "https"):
        _within(PROBE_DEADLINE, uri, lambda: _probe_server(uri, timeout))
    return uri


# A server that trickles one byte every few seconds never trips a per-read timeout: the whole
# probe (/health, then MLflow's REST API) must finish within this many seconds.
PROBE_DEADLINE = 20.0


def _within(seconds: float, uri: str, probe) -> None:
    """Run `probe` in a daemon thread; ConfigError if it has not finished after `seconds`."""
    import threading

    outcome: list = []

    def run():
        try:
            probe()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, name="sweep-tracking-probe", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ConfigError(f"MLflow tracking server {uri} did not answer within {seconds:.0f} s (it accepts "
                          "connections but answers too slowly or not at all); check the server or pass "
                          "another --tracking-uri")
    if outcome and outcome[0] is not None:
        raise outcome[0]


def _probe_server(uri: str, timeout: float) -> None:
    """/health answers, then MLflow's REST API answers like MLflow (ConfigError otherwise)."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as resp:  # noqa: S310 (user-given server)
            if resp.status != 200:
                raise ConfigError(f"MLflow server {uri} answered {resp.status} on /health")
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):  # basic-auth servers refuse /health without credentials
            raise ConfigError(f"MLflow server {uri} answered HTTP {exc.code} on /health") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"MLflow tracking server {uri} is unreachable ({getattr(exc, 'reason', exc)}); "
                          f"start one with `sweep server` or pass another --tracking-uri") from None
    check_is_mlflow(uri, timeout)


SQLITE_HEADER = b"SQLite format 3\x00"


# Another process (`mlflow ui`, an MlflowClient, a second sweep) may be creating or migrating the
# database right now: MLflow creates the tables, then runs its migrations one commit at a time, so a
# reader sees tables without a revision, then older revisions. Such a database is judged once the
# schema revision is the installed MLflow's head, or once nothing has written it (the file, its
# journal or write-ahead log) for WRITE_QUIET_S seconds; at most WRITE_WAIT_S in all.
WRITE_QUIET_S = 3.0
WRITE_WAIT_S = 120.0
MLFLOW_TABLES = frozenset({"alembic_version", "experiments", "runs"})  # what every MLflow store has


def check_sqlite_file(db: Path) -> None:
    """An existing database file must be SQLite and, if it has tables, MLflow's at the installed
    MLflow's schema revision (waited for while another process creates or migrates it).

    Raises:
        ConfigError: not SQLite (garbage, truncated header), unreadable, another program's database, or
            another MLflow version's schema (check_schema_revision).
    """
    if not db.exists() or db.stat().st_size == 0:
        return  # MLflow creates it (create_store, under a lock)
    hint = "move it away or pass another --tracking-uri"
    try:
        with open(db, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise ConfigError(f"the MLflow database {db} cannot be read ({exc.strerror}); {hint}") from None
    if header != SQLITE_HEADER:
        raise ConfigError(f"the MLflow database {db} is not an SQLite file (corrupt or something else); {hint}")
    heads = mlflow_schema_revisions()[1]
    tables, found = _sqlite_schema(db, hint)
    deadline = time.monotonic() + WRITE_WAIT_S
    while not _complete(tables, found, heads) and _written_within(db, WRITE_QUIET_S) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
        tables, found = _sqlite_schema(db, hint)
    if tables and not MLFLOW_TABLES <= tables:
        raise ConfigError(f"{db} is an SQLite database but not MLflow's (tables: {', '.join(sorted(tables)[:5])}); "
                          f"{hint}")
    if found:
        check_schema_revision(db, found)


def _sqlite_schema(db: Path, hint: str) -> tuple[set[str], str | None]:
    """(the database's tables, its alembic schema revision or None), read without writing."""
    import sqlite3

    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            found = [r[0] for r in con.execute("SELECT version_num FROM alembic_version")] \
                if "alembic_version" in tables else []
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"the MLflow database {db} is corrupt ({exc}); {hint}") from None
    return tables, (str(found[0]) if found else None)


def _complete(tables: set[str], found: str | None, heads: set[str]) -> bool:
    """MLflow's tables at the installed MLflow's head revision (any revision when its migrations are unknown)."""
    return MLFLOW_TABLES <= tables and found is not None and (not heads or found in heads)


def _written_within(db: Path, seconds: float) -> bool:
    """Whether the database, its rollback journal or its write-ahead log changed in the last `seconds`."""
    now = time.time()
    for path in (db, db.with_name(db.name + "-journal"), db.with_name(db.name + "-wal")):
        try:
            if now - path.stat().st_mtime < seconds:
                return True
        except OSError:
            continue
    return False


@functools.lru_cache(maxsize=1)
def mlflow_schema_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every schema revision the installed MLflow knows, its head revisions), read from its alembic
    migration scripts without importing mlflow."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return frozenset(), frozenset()
    versions = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions, parents = set(), set()
    for script in versions.glob("*.py"):
        text = script.read_text(errors="replace")
        rev = re.search(r'^revision\s*=\s*["\']([0-9a-f]+)["\']', text, re.M)
        if rev:
            revisions.add(rev.group(1))
        parents |= set(re.findall(r'^down_revision\s*=\s*.*?["\']([0-9a-f]+)["\']', text, re.M))
    return frozenset(revisions), frozenset(revisions - parents)


def check_schema_revision(db: Path, found: str) -> None:
    """An MLflow database written by another MLflow version gets a message saying which way, before
    MLflow itself would fail (or offer to migrate a database it does not know).

    Raises:
        ConfigError: the schema revision is unknown to the installed MLflow (a newer MLflow wrote it), or
            an older one that needs `mlflow db upgrade`.
    """
    from importlib.metadata import version

    known, heads = mlflow_schema_revisions()
    if not known or found in heads:
        return
    installed = version("mlflow")
    if found not in known:
        raise ConfigError(f"the MLflow database {db} has schema revision {found!r}, unknown to the installed MLflow "
                          f"{installed} (a newer MLflow wrote it?): open it with the MLflow that wrote it (or its "
                          f"tracking server, --tracking-uri http://...), or pass another --tracking-uri; do not run "
                          f"`mlflow db upgrade` on it with this version")
    raise ConfigError(f"the MLflow database {db} has the older schema revision {found!r} (MLflow {installed} expects "
                      f"{', '.join(sorted(heads))}): back it up, then run `mlflow db upgrade sqlite:///{db}`, or pass "
                      f"another --tracking-uri")


def _request(url: str) -> urllib.request.Request:
    """A GET with basic auth from $MLFLOW_TRACKING_USERNAME/PASSWORD when set (never logged)."""
    import base64

    req = urllib.request.Request(url)
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    return req


def check_is_mlflow(uri: str, timeout: float = 5.0) -> None:
    """The server must speak MLflow's REST API: a JSON answer to get-by-name (found or not found).

    A server that needs credentials we lack (401/403) is given the benefit of the doubt; the
    first MLflow call reports it.

    Raises:
        ConfigError: any other answer (an HTML 404, a plain 200 from another web app).
    """
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as resp:  # noqa: S310
            body = resp.read(65536)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return
        body = exc.read(65536) if exc.fp is not None else b""
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"MLflow tracking server {uri} stopped answering ({getattr(exc, 'reason', exc)})") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not ({"experiment", "error_code"} & set(answer)):
        raise ConfigError(f"{uri} answers /health but is not an MLflow tracking server (its REST API "
                          f"answered {body[:80]!r}); check --tracking-uri")


def create_store(uri: str) -> None:
    """Create (or migrate) the MLflow store before Ray starts, one process at a time.

    Two sweeps starting at once against a new sqlite file would both run MLflow's schema
    creation; an exclusive lock on `<db>.lock` beside the database serializes them (the second
    then finds the tables). Other stores are created by their server.
    """
    if not uri.startswith("sqlite:///"):
        return
    from cluster.folder.locks import file_lock
    from mlflow.tracking import MlflowClient

    db = Path(uri[len("sqlite:///"):])
    with file_lock(db.with_name(db.name + ".lock")):
        for attempt in range(3):
            try:
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
                return
            except Exception as exc:  # schema creation/migration failing: disk full, locked, newer schema
                if "already exists" in str(exc) and attempt < 2:
                    time.sleep(1.0)  # a process not taking the lock (mlflow ui, a script) created it meanwhile
                    continue
                raise ConfigError(f"the MLflow database {db} cannot be opened or created: {type(exc).__name__}: "
                                  f"{str(exc)[:300]}") from None


def artifact_root_for(uri: str) -> str | None:
    """For a local sqlite store, artifacts live beside the database in ./mlartifacts."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


# The MLflow 3 UI opens an experiment on the page its kind names; without the tag it shows the GenAI
# "Overview / Traces" page, empty for these experiments. Tag and value as the UI (3.x) writes them.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def get_or_create_experiment(client, name: str, uri: str) -> str:
    """The experiment's id, created if missing; either way tagged to open on the runs table."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND_TAG not in (exp.tags or {}):  # a kind chosen in the UI is kept
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root_for(uri),
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def ui_url(experiment_id: str | None, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's page of an experiment's runs table (the UI routes with a #/ hash)."""
    return f"{base}/#/experiments/{experiment_id}/runs" if experiment_id else base


def ui_hint(uri: str, experiment_id: str | None) -> str:
    """How to browse a sweep's runs: the server's runs page, or `mlflow ui` on a local store first."""
    if uri.startswith(("http://", "https://")):
        return ui_url(experiment_id, uri.rstrip("/"))
    return f"mlflow ui --backend-store-uri {uri}  (then open {ui_url(experiment_id)})"


def create_parent_run(client, experiment_id: str, sweep: str, experiment: str, tags: dict[str, str],
                      params: dict[str, Any], declaration: dict[str, Any]) -> str:
    """Create the sweep's parent run with its tags, fixed params and declaration artifact."""
    from mlflow.entities import Param, RunTag

    run = client.create_run(experiment_id, run_name=sweep,
                            tags={S.TAG_SWEEP: sweep, S.TAG_EXPERIMENT: experiment, S.TAG_ROLE: S.ROLE_SWEEP, **tags})
    items = [Param(k, param_value(v)[:6000]) for k, v in sorted(redact(params).items())]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i:i + 100])
    client.log_text(run.info.run_id, json.dumps(redact(declaration), indent=2, default=str), S.ART_DECLARATION)
    client.log_batch(run.info.run_id, tags=[RunTag(S.TAG_NOTE, declaration.get("description", ""))])
    return run.info.run_id


@contextlib.contextmanager
def trial_relay(record) -> Iterator[None]:
    """While the sweep runs, this driver makes the MLflow calls of the trials on its machine
    (trainables.tracking_relay): `record.relay` names the relay for the trials' TrackingInfo.
    Where Unix sockets do not exist, every trial logs to MLflow itself."""
    from trainables.tracking_relay import AVAILABLE, Relay

    if not AVAILABLE:
        yield
        return
    with Relay(record.tracking_uri) as relay:
        record.relay = relay.endpoint
        try:
            yield
        finally:
            record.relay = None


def find_parent_run(client, sweep: str):
    """The parent run of sweep `sweep` in any experiment, or None."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.{S.TAG_SWEEP} = '{sweep}' and tags.{S.TAG_ROLE} = '{S.ROLE_SWEEP}'", max_results=1)
    return runs[0] if runs else None
