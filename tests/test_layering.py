"""The package layering, checked on the import graph (every import statement, lazy ones too).

core <- trainables, search_spaces <- cluster; analysis reads the store and imports only core
and search_spaces (experiment declarations). See README "Layout".
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "trainables", "search_spaces", "cluster", "analysis")
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "core": set(),
    "trainables": {"core"},
    "search_spaces": {"core"},
    "analysis": {"core", "search_spaces"},
    "cluster": {"core", "trainables", "search_spaces", "analysis"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of every import in the file at `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in PACKAGES}
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported, line in sorted(imported_packages(path)):
            if imported != package and imported not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_its_layer_allows(package):
    assert violations(package) == []


def test_the_check_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from trainables.data import build_data\n    import cluster.cli\n")
    assert imported_packages(f) == {("trainables", 4), ("cluster", 5)}


def test_no_kernel_shims_left_in_trainables():
    """errors, config_base and figures live in core only (no re-exporting modules)."""
    assert not [p.name for p in (ROOT / "trainables").glob("*.py")
                if p.stem in ("errors", "config_base", "figures")]


def test_no_compatibility_aliases_left():
    """One resolver (trainables/spec.py, TrialSpec): the old `trainables/resolve.py` alias is gone; the driver
    keeps no modules at its pre-split paths (cluster/runner.py, ...)."""
    assert not (ROOT / "trainables" / "resolve.py").exists()
    # the driver's two entry points stay at the top: the CLI and the Python API (cluster.api, issue 23)
    assert sorted(p.name for p in (ROOT / "cluster").glob("*.py")) == ["__init__.py", "api.py", "cli.py"]


DRIVER_MAX_LINES = 400


def test_driver_files_stay_small():
    """cluster/ is split by concern (flow/, folder/, tuner/, planning/, infra/): no file over 400 lines."""
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "cluster").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > DRIVER_MAX_LINES}
    assert big == {}


DOMAIN_CLASSES = ("LogUniform", "Uniform", "RandInt", "Choice", "SAMPLED", "_Domain")


def domain_dispatch(path: Path) -> list[int]:
    """Lines of `path` that test a value's search-domain class (isinstance(x, Choice), ...)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if names & set(DOMAIN_CLASSES):
                lines.append(node.lineno)
    return lines


def test_search_domains_own_their_behaviour():
    """No isinstance dispatch on a domain class outside search_spaces/domains.py: each domain knows its
    representative value, extremes, Tune form, sample and Optuna suggestion."""
    found = {f"{p.relative_to(ROOT)}:{n}" for pkg in ("cluster", "search_spaces", "analysis", "trainables")
             for p in (ROOT / pkg).rglob("*.py") if p.name != "domains.py" for n in domain_dispatch(p)}
    assert found == set()


def test_the_domain_check_sees_a_dispatch(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f(v):\n    return isinstance(v, (Choice, int))\n")
    assert domain_dispatch(f) == [2]


def test_the_driver_reads_typed_options():
    """Options are a typed RunOptions/StudyOptions: no duck-typed getattr(opts, ...) in the driver."""
    found = []
    for p in (ROOT / "cluster").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and node.args
                    and getattr(node.args[0], "id", None) in ("opts", "options")):
                found.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert found == []
