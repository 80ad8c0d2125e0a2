"""The read-only sqlite reader (analysis.sqlite_store) loads exactly what MlflowClient loads.

Every store here is written by MLflow itself (MlflowClient on sqlite): the fabricated sweep of
analysis_fakes plus the awkward cases (deleted runs and experiments, RUNNING/FAILED/KILLED runs, NaN
and infinite metrics, metrics logged out of step order, unicode, equal start times, several sweeps).
`load_sweep` through the reader and through MlflowClient (`fast=False`) must give equal SweepData,
compared exactly; anything the reader was not verified on must reach MlflowClient.
"""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("mlflow", reason="reads and writes MLflow stores")
from analysis_fakes import fake_store

from analysis import load as L
from analysis import sqlite_store as Q
from core.errors import ConfigError

T0 = 1_700_000_000_000


def assert_same(fast, slow) -> None:
    """Two loaded sweeps are equal: every table exactly (columns, order, dtypes, values), every field."""
    pd.testing.assert_frame_equal(fast.runs, slow.runs, check_exact=True)
    pd.testing.assert_frame_equal(fast.history, slow.history, check_exact=True)
    assert fast.parent == slow.parent
    assert (fast.swept_keys, fast.metrics, fast.params) == (slow.swept_keys, slow.metrics, slow.params)


def both(uri: str, **kw):
    fast = L.load_sweep(uri, fast=True, **kw)
    slow = L.load_sweep(uri, fast=False, **kw)
    return fast, slow


def _awkward_store(root: Path) -> tuple[str, dict]:
    """fake_store plus runs of every awkward kind; returns (uri, ids)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    uri, pid = fake_store(root)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name("fake-exp").experiment_id
    base = {"mlflow.parentRunId": pid, "role": "trial", "sweep": "fake-sweep", "pairing": "simple_cnn/edges"}
    ids = {"parent": pid}

    def child(name, status=None, start=None, tags=None, params=None, metrics=()):
        run = client.create_run(exp_id, run_name=name, start_time=start, tags={**base, **(tags or {})})
        rid = run.info.run_id
        client.log_batch(rid, metrics=list(metrics), params=[Param(k, v) for k, v in (params or {}).items()])
        if status:
            client.set_terminated(rid, status=status)
        ids[name] = rid
        return rid

    child("running", params={"seed": "20", "data_per_class": "10"}, tags={"seed": "20"})
    child("failed", "FAILED", params={"seed": "21", "data_per_class": "10"}, tags={"status_reason": "failed"},
          metrics=[Metric("val_acc", 0.0, T0, 1)])
    child("killed", "KILLED", params={"seed": "22", "data_per_class": "30"})
    # NaN and infinities (MLflow stores +-inf as +-1.797e308 and reads that back), unicode everywhere
    child("odd-values", "FINISHED", params={"seed": "23", "data_per_class": "10", "note": "Δ-µ ✓ 学习"},
          tags={"status_reason": "completed", "comment": "naïve — ünïcode ✓ 学习", "seed": "23"},
          metrics=[Metric("val_acc", float("nan"), T0, 4), Metric("val_loss", float("inf"), T0, 4),
                   Metric("train_loss", float("-inf"), T0, 4), Metric("best_val_acc", 0.5, T0, 0)])
    # MLflow's latest value: the largest step wins over a later timestamp; equal steps: later timestamp,
    # then the larger value; NaN at the latest step hides an earlier number
    child("steps", "FINISHED", params={"seed": "24", "data_per_class": "30"}, tags={"status_reason": "completed"},
          metrics=[Metric("val_acc", 0.9, T0 + 50, 3), Metric("val_acc", 0.7, T0 + 10, 5),
                   Metric("val_acc", 0.8, T0 + 99, 4), Metric("train_acc", 0.3, T0 + 5, 2),
                   Metric("train_acc", 0.4, T0 + 5, 2), Metric("train_acc", 0.2, T0 + 1, 2),
                   Metric("val_loss", 0.5, T0, 1), Metric("val_loss", float("nan"), T0, 2)])
    # equal start times: MLflow orders them by run id
    for i in range(3):
        child(f"same-start-{i}", "FINISHED", start=T0, params={"seed": str(30 + i), "data_per_class": "30"},
              tags={"status_reason": "completed"}, metrics=[Metric("val_acc", 0.5 + i / 10, T0, 1)])
    gone = child("deleted", "FINISHED", params={"seed": "25", "data_per_class": "10"},
                 tags={"status_reason": "completed"}, metrics=[Metric("val_acc", 1.0, T0, 1)])
    client.delete_run(gone)
    # a newer sweep of another name in the same experiment, and a newest one that was deleted
    other = client.create_run(exp_id, run_name="other", tags={"sweep": "other-sweep", "role": "sweep"})
    client.set_terminated(other.info.run_id)
    ids["other-sweep"] = other.info.run_id
    client.log_batch(client.create_run(exp_id, tags={"mlflow.parentRunId": other.info.run_id, "role": "trial",
                                                     "pairing": "p"}).info.run_id,
                     metrics=[Metric("val_acc", 0.25, T0, 1)], tags=[RunTag("mlflow.runName", "tagged-name")])
    newest = client.create_run(exp_id, run_name="deleted-sweep", tags={"sweep": "fake-sweep", "role": "sweep"})
    client.delete_run(newest.info.run_id)
    ids["deleted-sweep"] = newest.info.run_id
    # a deleted experiment holding a sweep (its runs deleted with it): found by name, not listed, its
    # sweep found by parent run id only
    dead = client.create_experiment("dead-exp", artifact_location=(root / "dead").as_uri())
    sweep = client.create_run(dead, run_name="dead-sweep", tags={"sweep": "dead-sweep", "role": "sweep"})
    client.create_run(dead, tags={"mlflow.parentRunId": sweep.info.run_id, "role": "trial", "pairing": "p"})
    client.delete_experiment(dead)
    ids["dead-sweep"] = sweep.info.run_id
    return uri, ids


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _awkward_store(tmp_path_factory.mktemp("awkward"))


@pytest.mark.parametrize("histories", [False, True])
@pytest.mark.parametrize("query", [{"experiment": "fake-exp"}, {"sweep": "fake-sweep"},
                                   {"experiment": "fake-exp", "sweep": "other-sweep"}, "parent", "deleted-sweep", "dead-sweep"])
def test_the_reader_loads_what_mlflow_loads(store, query, histories):
    uri, ids = store
    kw = {"parent_run_id": ids[query]} if isinstance(query, str) else dict(query)
    fast, slow = both(uri, histories=histories, **kw)
    assert_same(fast, slow)


def test_the_awkward_runs_are_there(store):
    """What the equality above covers: the cases exist in the loaded data (not an empty comparison)."""
    uri, ids = store
    data = L.load_sweep(uri, sweep="fake-sweep")
    runs = data.runs.set_index("run_name")
    assert ids["deleted"] not in set(data.runs["run_id"]) and len(runs) == 12 + 8
    assert runs.loc["running", "mlflow_status"] == "RUNNING" and runs.loc["running", "status_reason"] == "running"
    assert runs.loc["failed", "mlflow_status"] == "FAILED" and runs.loc["killed", "status_reason"] == "killed"
    odd = runs.loc["odd-values"]
    assert odd["val_acc"] != odd["val_acc"] and odd["val_loss"] == 1.7976931348623157e308
    assert odd["train_loss"] == -1.7976931348623157e308 and odd["comment"] == "naïve — ünïcode ✓ 学习"
    assert runs.loc["steps", "val_acc"] == 0.7 and runs.loc["steps", "train_acc"] == 0.4
    assert runs.loc["steps", "val_loss"] != runs.loc["steps", "val_loss"]
    same = data.runs[data.runs["run_name"].str.startswith("same-start")]["run_id"].tolist()
    assert same == sorted(same)
    assert L.load_sweep(uri, sweep="other-sweep").runs["run_name"].tolist() == ["tagged-name"]
    assert data.parent["declaration"]["name"] == "fake-exp"


@pytest.mark.parametrize("query", [{"experiment": "nope"}, {"sweep": "nope"}, {"experiment": "dead-exp", "sweep": "x"},
                                   {"sweep": "dead-sweep"}, {"experiment": "dead-exp"},
                                   {"parent_run_id": "0" * 32}, {}])
def test_errors_say_the_same(store, query):
    uri, _ = store
    messages = []
    for fast in (True, False):
        with pytest.raises(ConfigError) as err:
            L.load_sweep(uri, fast=fast, histories=False, **query)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _db(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):])


def test_the_reader_only_reads(store, tmp_path):
    uri, _ = store
    db = tmp_path / "copy.db"
    shutil.copy(_db(uri), db)
    before = (_sha(db), sorted(p.name for p in tmp_path.iterdir()))
    reader = Q.open_reader(f"sqlite:///{db}")
    with reader:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.con.execute("DELETE FROM runs")
        L._load(reader, f"sqlite:///{db}", "fake-exp", None, None, True)
    assert (_sha(db), sorted(p.name for p in tmp_path.iterdir())) == before  # no journal, no -wal left
    missing = tmp_path / "missing.db"
    assert Q.open_reader(f"sqlite:///{missing}") is None and not missing.exists()


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example", "file:///tmp/mlruns",
                                 "./mlruns", "databricks", "postgresql://u@h/db", "sqlite://", "sqlite:///",
                                 "sqlite:///m.db?timeout=5", "sqlite:///a%20b.db", "sqlite:///m.db#x"])
def test_other_stores_go_to_mlflow(uri):
    assert Q.open_reader(uri) is None


def _with_revision(store_uri: str, tmp_path: Path, revision: str) -> str:
    db = tmp_path / "other.db"
    shutil.copy(_db(store_uri), db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    con.close()
    return f"sqlite:///{db}"


def test_an_unknown_schema_revision_goes_to_mlflow(store, tmp_path, monkeypatch):
    uri, _ = store
    other = _with_revision(uri, tmp_path, "0123456789ab")
    before = _sha(_db(other))
    assert Q.open_reader(other) is None and _sha(_db(other)) == before
    # the revision MLflow wrote, not verified (a newer reader's list): load_sweep uses MlflowClient
    monkeypatch.setattr(Q, "KNOWN_REVISIONS", frozenset({"0123456789ab"}))
    assert Q.open_reader(uri) is None
    used, find_runs = [], L.MlflowStore.find_runs
    monkeypatch.setattr(L.MlflowStore, "find_runs", lambda self, *a, **kw: used.append(1) or find_runs(self, *a, **kw))
    fast = L.load_sweep(uri, experiment="fake-exp")
    assert used
    monkeypatch.undo()
    assert_same(fast, L.load_sweep(uri, experiment="fake-exp", fast=False))


def test_the_revision_mlflow_writes_is_the_verified_one(tmp_path):
    """A new store written by the installed MLflow has a revision the reader knows (else every
    `sweep results` would quietly take the slow path after an MLflow upgrade)."""
    uri, _ = fake_store(tmp_path)
    with sqlite3.connect(_db(uri)) as con:
        revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
    con.close()
    assert revision == [(rev,) for rev in Q.KNOWN_REVISIONS] and Q.open_reader(uri) is not None


def test_workspaces_go_to_mlflow(store, monkeypatch):
    uri, _ = store
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert Q.open_reader(uri) is None


def test_a_sqlite_error_while_reading_goes_to_mlflow(store, monkeypatch):
    uri, _ = store
    slow = L.load_sweep(uri, experiment="fake-exp", fast=False)

    def broken(self, *args, **kw):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(Q.SqliteReader, "find_runs", broken)
    assert_same(L.load_sweep(uri, experiment="fake-exp"), slow)


def test_a_writer_holding_the_lock_is_waited_for(store, tmp_path, monkeypatch):
    """A sweep writing (an exclusive lock) while `sweep results` reads: the read waits for the
    commit, then sees the written run (not 'database is locked', not a half-written state)."""
    from mlflow.tracking import MlflowClient

    uri, _ = store
    db = tmp_path / "busy.db"
    shutil.copy(_db(uri), db)
    busy = f"sqlite:///{db}"
    before = L.load_sweep(busy, experiment="fake-exp", histories=False)
    parent = before.parent["run_id"]
    exp_id = MlflowClient(tracking_uri=busy).get_experiment_by_name("fake-exp").experiment_id
    locked, done = threading.Event(), threading.Event()

    def writer():
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        con.execute("INSERT INTO runs (run_uuid, name, status, start_time, lifecycle_stage, experiment_id, "
                    "source_type) VALUES ('f' || hex(randomblob(15)), 'late', 'RUNNING', 1, 'active', ?, 'LOCAL')",
                    (int(exp_id),))
        con.execute("INSERT INTO tags (key, value, run_uuid) SELECT 'mlflow.parentRunId', ?, run_uuid FROM runs "
                    "WHERE name = 'late'", (parent,))
        locked.set()
        time.sleep(1.0)
        con.execute("COMMIT")
        con.close()
        done.set()

    monkeypatch.setattr(L.MlflowStore, "find_runs", None)  # the reader itself waits: no fallback
    thread = threading.Thread(target=writer)
    thread.start()
    locked.wait(10)
    data = L.load_sweep(busy, experiment="fake-exp", histories=False)
    thread.join()
    assert done.is_set() and "late" in set(data.runs["run_name"]) and len(data.runs) == len(before.runs) + 1


def test_artifacts_are_read_in_place_and_equal_mlflows_download(store, monkeypatch):
    """The report's artifacts (declaration, kernels, confusion matrices, sample images) of a sqlite
    store are read from the artifact directory itself: the same bytes MLflow downloads."""
    uri, ids = store
    data = L.load_sweep(uri, sweep="fake-sweep")
    for run_id in data.runs["run_id"].tolist()[:4] + [ids["parent"]]:
        for artifact in ("confusion_matrix.json", "samples.npz", "kernels/conv1_final.npy", "sweep/experiment.json",
                         "nothing.json"):
            local = L.download_artifact(uri, run_id, artifact)
            slow = L.download_artifact(uri, run_id, artifact, fast=False)
            assert (local is None) == (slow is None), (run_id, artifact)
            if local is not None:
                assert local.read_bytes() == slow.read_bytes() and not local.is_relative_to(slow.parent)
    slow = L.load_artifacts(L.load_sweep(uri, sweep="fake-sweep", fast=False))
    monkeypatch.setattr("mlflow.artifacts.download_artifacts", None)  # in place: MLflow is not asked
    fast = L.load_artifacts(L.load_sweep(uri, sweep="fake-sweep"))
    assert len(fast.kernels) == len(slow.kernels) > 0 and len(fast.confusion) == len(slow.confusion) > 0
    for a, b in zip(fast.kernels.itertuples(), slow.kernels.itertuples()):
        assert a.run_id == b.run_id and (a.initial == b.initial).all() and (a.final == b.final).all()
    for a, b in zip(fast.confusion.itertuples(), slow.confusion.itertuples()):
        assert (a.run_id, a.labels) == (b.run_id, b.labels) and (a.matrix == b.matrix).all()


def test_load_artifacts_opens_one_reader_for_every_run(store, monkeypatch):
    """The report's kernels and confusion matrices of every trial come from one read-only reader
    (one per file cost ~1 ms each: 3 s for a 1,000-run sweep), the same values as before."""
    uri, _ = store
    data = L.load_sweep(uri, sweep="fake-sweep")
    expected = L.load_artifacts(L.load_sweep(uri, sweep="fake-sweep"))
    opened = []
    real = Q.open_reader
    monkeypatch.setattr(Q, "open_reader", lambda u: opened.append(u) or real(u))
    monkeypatch.setattr("mlflow.artifacts.download_artifacts", None)  # in place: MLflow is not asked
    got = L.load_artifacts(data)
    assert opened == [uri] and len(data.runs) > 1
    assert len(got.kernels) == len(expected.kernels) > 0 and len(got.confusion) == len(expected.confusion) > 0
    for a, b in zip(got.kernels.itertuples(), expected.kernels.itertuples()):
        assert a.run_id == b.run_id and (a.initial == b.initial).all() and (a.final == b.final).all()


def test_artifacts_elsewhere_are_downloaded_by_mlflow(store, tmp_path):
    """A run whose artifacts live on a server (mlflow-artifacts:, s3:) is not looked for on the disk."""
    uri, ids = store
    db = tmp_path / "remote.db"
    shutil.copy(_db(uri), db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET artifact_uri = 'mlflow-artifacts:/1/x/artifacts' WHERE run_uuid = ?",
                    (ids["parent"],))
    con.close()
    assert L._local_artifact(f"sqlite:///{db}", ids["parent"], "sweep/experiment.json") is False
    assert L._local_artifact(f"sqlite:///{db}", ids["steps"], "sweep/experiment.json") is None
    assert L._local_artifact(f"sqlite:///{db}", "0" * 32, "sweep/experiment.json") is False  # no such run
    assert Q.local_artifact_dir("s3://bucket/x") is None and Q.local_artifact_dir("file://host/x") is None
    assert Q.local_artifact_dir("file:///a%20b/c") == Path("/a b/c") and Q.local_artifact_dir("/a/b") == Path("/a/b")


def test_rows_only_older_mlflow_wrote(store, tmp_path):
    """Runs without a name column (the name only in the mlflow.runName tag), as older MLflow versions
    wrote them (set here by hand on a copy): read as MlflowClient reads them."""
    uri, ids = store
    db = tmp_path / "old-rows.db"
    shutil.copy(_db(uri), db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET name = NULL WHERE run_uuid IN (?, ?)", (ids["steps"], ids["killed"]))
        con.execute("INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES ('mlflow.runName', 'from-tag', ?)",
                    (ids["steps"],))
    con.close()
    fast, slow = both(f"sqlite:///{db}", sweep="fake-sweep")
    assert_same(fast, slow)
    names = fast.runs["run_name"].tolist()
    assert "from-tag" in names and "killed" in names  # both from their tag
