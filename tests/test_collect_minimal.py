"""The suite collects without the optional stacks, and the GPU tests run on a torch-only machine.

Each check runs pytest in a subprocess whose `sitecustomize` makes chosen top-level packages
unimportable (a meta-path finder raising ModuleNotFoundError, as a missing package does), so a
module that imports Ray or MLflow at collection time shows up as a collection error.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = '''
import os, sys
from importlib.abc import MetaPathFinder

BLOCKED = set(os.environ["SWEEP_TEST_BLOCK_IMPORTS"].split(","))


class _Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _Missing())
'''
# What a GPU box with only torch, numpy, scipy, matplotlib and pytest lacks of this project's stack.
GPU_BOX_MISSING = "ray,mlflow,pandas,torchvision,timm,yaml,hyperopt,optuna"


def run_blocked(tmp_path: Path, blocked: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "SWEEP_TEST_BLOCK_IMPORTS": blocked,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_blocker_really_hides_packages(tmp_path):
    proc = run_blocked(tmp_path, "ray,mlflow", "-c", "import ray")
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr


def test_suite_collects_without_ray_and_mlflow(tmp_path):
    """`pytest --collect-only` of the whole suite: no collection error; modules that need Ray or
    MLflow are skipped (importorskip) with their reason."""
    proc = run_blocked(tmp_path, "ray,mlflow", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "error" not in out.lower().split("short test summary")[-1], out[-4000:]
    assert "tests/test_gpu.py::" in out


def test_gpu_tests_run_with_torch_alone(tmp_path):
    """`pytest -m gpu tests/test_gpu.py` on a machine without Ray, MLflow, pandas or torchvision:
    collects and passes or skips (here: skipped, no CUDA), never errors."""
    proc = run_blocked(tmp_path, GPU_BOX_MISSING, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                       "tests/test_gpu.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert " error" not in out.lower(), out[-4000:]
