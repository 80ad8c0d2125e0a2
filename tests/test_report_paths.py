"""Report output and sweep names from the store are not trusted (issue 24): a parent run whose
`sweep` tag is an absolute path or `..` still writes under ./reports, `--out` an existing file and
a sweep name that would break an MLflow filter string are exit 2 with a message."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="reads and writes MLflow stores")
from analysis_fakes import fake_store  # noqa: E402

from cluster.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fake_store(tmp_path_factory.mktemp("store-root"))[0]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("tag", ["ABS", pytest.param("../../escaped", marks=pytest.mark.slow)])
def test_store_tag_cannot_send_the_report_outside_reports(tmp_path, monkeypatch, capsys, tag):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sweep = str(elsewhere / "evil") if tag == "ABS" else tag
    (tmp_path / "store-root").mkdir()
    uri, pid = fake_store(tmp_path / "store-root", sweep=sweep)
    work = tmp_path / "work" / "cwd"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["report", "fake-exp", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"reports/{pid}/index.html" in out
    assert (work / "reports" / pid / "index.html").is_file()
    assert _files(elsewhere) == set() and not list((tmp_path / "work").glob("*.html"))
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "work" / "escaped").exists()


def test_planted_reports_symlink_is_refused(store, tmp_path, monkeypatch, capsys):
    uri = store
    victim = tmp_path / "victim"
    victim.mkdir()
    work = tmp_path / "cwd"
    (work / "reports").mkdir(parents=True)
    (work / "reports" / "fake-sweep").symlink_to(victim)
    monkeypatch.chdir(work)
    assert main(["report", "fake-exp", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "outside ./reports" in err and "Traceback" not in err
    assert _files(victim) == set()


def test_report_out_an_existing_file_is_exit_2(store, tmp_path, capsys):
    uri = store
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert main(["report", "fake-exp", "--tracking-uri", uri, "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "existing file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("name", ["a'b\"c", "ok\n", "caf\udce9", "x' or tags.role = 'trial"])
@pytest.mark.parametrize("command", ["report", "results"])
def test_unsafe_sweep_names_never_reach_a_filter(store, tmp_path, capsys, name, command):
    uri = store
    assert main([command, "--sweep", name, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "must be letters, digits" in err and repr(name) in err and "Traceback" not in err
