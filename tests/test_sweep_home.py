"""$SWEEP_HOME (where `sweep up` keeps its Ray head state) that is a file, not a folder: `sweep run`
and `sweep up` refuse it with a message naming it, exit 2, before anything starts."""
from __future__ import annotations

from cluster.cli import main
from refusal import assert_refused


def test_sweep_run_refuses_a_sweep_home_that_is_a_file(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("SWEEP_HOME", str(home))
    assert_refused(["run", "edge-data-per-class", "--smoke"], [f"$SWEEP_HOME={home} is a file, not a folder"],
                   tmp_path, capsys)
    assert home.read_text() == "not a folder"


def test_sweep_up_refuses_a_sweep_home_that_is_a_file(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.write_text("x")
    monkeypatch.setenv("SWEEP_HOME", str(home))
    assert main(["up"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_missing_sweep_home_is_fine(tmp_path, monkeypatch):
    from cluster.infra.ray_head import state_dir

    monkeypatch.setenv("SWEEP_HOME", str(tmp_path / "new"))
    assert state_dir() == (tmp_path / "new").resolve()
