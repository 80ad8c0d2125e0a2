"""An MLflow sqlite store written by another MLflow version: refused by name before MLflow opens it,
saying which way (a newer MLflow's unknown revision: never `mlflow db upgrade`; an older one: back up
and upgrade), exit 2; the installed MLflow's own head passes. A store another process is creating or
migrating right now (`mlflow ui`, an MlflowClient) is waited for, never refused half-made."""
from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from cluster.cli import main
from cluster.infra.tracking import check_tracking_uri, mlflow_schema_revisions
from core.errors import ConfigError


def _store(path, revision: str, age_s: float = 3600.0) -> str:
    """An MLflow-shaped store at `revision`, last written `age_s` seconds ago (an hour: an old store)."""
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE alembic_version (version_num VARCHAR(32));"
                      "CREATE TABLE experiments (experiment_id INTEGER); CREATE TABLE runs (run_uuid VARCHAR(32));")
    con.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    con.commit()
    con.close()
    then = time.time() - age_s
    os.utime(path, (then, then))
    return f"sqlite:///{path}"


def test_the_installed_mlflow_has_one_head_among_its_revisions():
    known, heads = mlflow_schema_revisions()
    assert len(known) > 20 and len(heads) == 1 and heads <= known


def test_head_revision_passes(tmp_path):
    [head] = mlflow_schema_revisions()[1]
    uri = _store(tmp_path / "m.db", head)
    assert check_tracking_uri(uri) == uri


def test_a_newer_mlflows_store_is_refused_without_suggesting_an_upgrade(tmp_path, capsys):
    uri = _store(tmp_path / "m.db", "0123456789ab")
    with pytest.raises(ConfigError, match="unknown to the installed MLflow .* do not run `mlflow db upgrade`"):
        check_tracking_uri(uri)
    assert main(["results", "edge-data-per-class", "--tracking-uri", uri]) == 2
    assert "schema revision '0123456789ab'" in capsys.readouterr().err


def test_an_older_store_says_back_up_and_upgrade(tmp_path):
    known, heads = mlflow_schema_revisions()
    older = sorted(known - heads)[0]
    uri = _store(tmp_path / "m.db", older)
    with pytest.raises(ConfigError, match=f"older schema revision '{older}'.*mlflow db upgrade sqlite:///"):
        check_tracking_uri(uri)


def _write_later(path, delay_s: float, sql: str, *params) -> threading.Thread:
    """Another process's next migration step: `sql` committed after `delay_s` seconds."""
    def step():
        time.sleep(delay_s)
        con = sqlite3.connect(path)
        con.execute(sql, params)
        con.commit()
        con.close()

    thread = threading.Thread(target=step)
    thread.start()
    return thread


def test_a_store_being_migrated_now_is_waited_for_until_the_head(tmp_path, monkeypatch):
    """MLflow migrates a new database one commit at a time: a sweep starting beside `mlflow ui` saw an
    older revision mid-migration and was refused (exit 2) before this wait."""
    import cluster.infra.tracking as T

    monkeypatch.setattr(T, "WRITE_QUIET_S", 1.0)
    known, heads = mlflow_schema_revisions()
    [head] = heads
    path = tmp_path / "m.db"
    uri = _store(path, sorted(known - heads)[0], age_s=0)  # written just now, another step comes in 0.6 s
    steps = [_write_later(path, 0.6, "UPDATE alembic_version SET version_num = ?", sorted(known - heads)[1]),
             _write_later(path, 1.2, "UPDATE alembic_version SET version_num = ?", head)]
    start = time.monotonic()
    assert check_tracking_uri(uri) == uri
    waited = time.monotonic() - start
    for step in steps:
        step.join()
    assert 1.1 < waited < 2.5  # until the head arrived: past the first quiet second, not past the second


def test_tables_being_created_now_are_waited_for(tmp_path, monkeypatch):
    """Tables before a revision (MLflow creates them, then stamps): not "another program's database"."""
    import cluster.infra.tracking as T

    monkeypatch.setattr(T, "WRITE_QUIET_S", 1.0)
    [head] = mlflow_schema_revisions()[1]
    path = tmp_path / "m.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE experiments (experiment_id INTEGER)")
    con.commit()
    con.close()
    step = _write_later(path, 0.5, "CREATE TABLE runs (run_uuid VARCHAR(32))")
    stamp = _write_later(path, 0.8, "CREATE TABLE alembic_version AS SELECT ? AS version_num", head)
    assert check_tracking_uri(f"sqlite:///{path}") == f"sqlite:///{path}"
    step.join()
    stamp.join()


def test_a_fresh_store_that_stays_older_is_refused_once_quiet(tmp_path, monkeypatch):
    import cluster.infra.tracking as T

    monkeypatch.setattr(T, "WRITE_QUIET_S", 0.5)
    known, heads = mlflow_schema_revisions()
    uri = _store(tmp_path / "m.db", sorted(known - heads)[0], age_s=0)
    start = time.monotonic()
    with pytest.raises(ConfigError, match="older schema revision"):
        check_tracking_uri(uri)
    assert time.monotonic() - start >= 0.4  # judged after the quiet time, not on the first look


def test_an_old_store_is_judged_at_once(tmp_path):
    known, heads = mlflow_schema_revisions()
    uri = _store(tmp_path / "m.db", sorted(known - heads)[0])
    start = time.monotonic()
    with pytest.raises(ConfigError, match="older schema revision"):
        check_tracking_uri(uri)
    assert time.monotonic() - start < 1.0


def test_a_real_mlflow_creating_the_store_beside_the_check(tmp_path):
    """The race of the CI failure, with MLflow itself: a client creates the database while the check runs."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    creator = threading.Thread(target=lambda: MlflowClient(tracking_uri=uri).search_experiments())
    creator.start()
    db = tmp_path / "m.db"
    while creator.is_alive() and not (db.exists() and db.stat().st_size > 0):
        time.sleep(0.005)
    try:
        assert check_tracking_uri(uri) == uri
    finally:
        creator.join()
