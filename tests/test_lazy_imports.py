"""Commands that only read the store or the registry start fast: `sweep list`, `sweep results`
and `sweep report` import neither torch nor Ray, and `sweep results` on a sqlite store neither
MLflow (its SQLAlchemy store) nor scipy.stats (checked in a fresh interpreter's sys.modules)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis_fakes import fake_store

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "ray")
PROBE = """
import json, sys
from cluster.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
heavy = json.loads(sys.argv[1])
loaded = sorted({h for h in heavy for m in sys.modules if m == h or m.startswith(h + ".")})
print("LOADED=" + json.dumps({"code": code, "heavy": loaded}))
"""


def _loaded(argv: list[str], cwd: Path, heavy: tuple[str, ...] = HEAVY) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(heavy), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LOADED=")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(line[len("LOADED="):])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("lazy-store")
    uri, _ = fake_store(root)
    return root, uri


def test_sweep_list_imports_neither_torch_nor_ray(tmp_path):
    got = _loaded(["list"], tmp_path)
    assert got == {"code": 0, "heavy": []}


def test_sweep_results_imports_neither_torch_nor_ray(store):
    root, uri = store
    # nor matplotlib: a table draws nothing (the report's plots import it when they draw)
    got = _loaded(["results", "fake-exp", "--tracking-uri", uri], root, HEAVY + ("matplotlib",))
    assert got == {"code": 0, "heavy": []}


# What `sweep results` costed before it read sqlite stores itself (analysis.sqlite_store) and took its
# intervals from analysis.dist: about 2.5 s of MLflow and SQLAlchemy, 1 s of scipy.stats.
STORE_CLIENTS = ("mlflow", "sqlalchemy", "alembic", "scipy.stats", "scipy.optimize")


def test_sweep_results_on_sqlite_imports_neither_mlflow_nor_scipy_stats(store):
    root, uri = store
    got = _loaded(["results", "fake-exp", "--tracking-uri", uri, "--format", "csv"], root, HEAVY + STORE_CLIENTS)
    assert got == {"code": 0, "heavy": []}


def test_sweep_report_imports_neither_torch_nor_ray(store):
    root, uri = store
    got = _loaded(["report", "fake-exp", "--tracking-uri", uri, "--out", str(root / "report")], root)
    assert got == {"code": 0, "heavy": []}
    assert (root / "report" / "index.html").exists()
