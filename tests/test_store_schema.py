"""An MLflow sqlite store written by another MLflow version: refused by name before MLflow opens it,
saying which way (a newer MLflow's unknown revision: never `mlflow db upgrade`; an older one: back up
and upgrade), exit 2; the installed MLflow's own head passes."""
from __future__ import annotations

import sqlite3

import pytest

from cluster.cli import main
from cluster.infra.tracking import check_tracking_uri, mlflow_schema_revisions
from core.errors import ConfigError


def _store(path, revision: str) -> str:
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE alembic_version (version_num VARCHAR(32));"
                      "CREATE TABLE experiments (experiment_id INTEGER); CREATE TABLE runs (run_uuid VARCHAR(32));")
    con.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    con.commit()
    con.close()
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
