"""The suite collects without the optional stacks, and the GPU tests run on a torch-only machine.

Each check runs pytest in a subprocess whose `sitecustomize` hides chosen top-level packages from
every import finder, exactly as if they were not installed (`import ray` raises
ModuleNotFoundError, `importlib.util.find_spec("ray")` is None), so a module that imports Ray or
MLflow at collection time shows up as a collection error.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = '''
import os, sys

BLOCKED = set(os.environ["SWEEP_TEST_BLOCK_IMPORTS"].split(","))


class _Hidden:
    """Wraps an import finder; finds nothing for a blocked package, as if it were not installed."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        find = getattr(self.finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [_Hidden(f) for f in sys.meta_path]
'''
# What a GPU box with only torch, numpy, scipy, matplotlib and pytest lacks of this project's stack.
GPU_BOX_MISSING = "ray,mlflow,pandas,torchvision,timm,yaml,hyperopt,optuna"


def run_blocked(tmp_path: Path, blocked: str, *args: str, timeout: float = 300,
                extra_env: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, **(extra_env or {}), "SWEEP_TEST_BLOCK_IMPORTS": blocked,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_blocker_really_hides_packages(tmp_path):
    proc = run_blocked(tmp_path, "ray,mlflow", "-c", "import importlib.util; assert importlib.util.find_spec('ray') "
                       "is None; import mlflow")
    assert proc.returncode != 0 and "No module named 'mlflow'" in proc.stderr, proc.stderr[-2000:]


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


@pytest.mark.slow
def test_gpu_tests_dry_run_on_cpu_with_torch_alone(tmp_path):
    """The GPU tests' code paths, run on the CPU (SWEEP_GPU_TEST_DEVICE=cpu) without Ray, MLflow,
    pandas or torchvision: they pass, and what needs torchvision skips with its reason."""
    proc = run_blocked(tmp_path, GPU_BOX_MISSING, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                       "tests/test_gpu.py", timeout=600, extra_env={"SWEEP_GPU_TEST_DEVICE": "cpu"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert " passed" in out and "ModifiedResNet18 is torchvision's ResNet-18" in out, out[-4000:]


@pytest.mark.slow
def test_gpu_benchmark_dry_run_with_torch_alone(tmp_path):
    """`python -m benchmarks.gpu --device cpu --quick` without Ray, MLflow, pandas or torchvision: every
    section runs and both outputs are written, marked as a CPU dry run (about a minute on 2 cores)."""
    out = tmp_path / "out"
    proc = run_blocked(tmp_path, GPU_BOX_MISSING, "-m", "benchmarks.gpu", "--device", "cpu", "--quick",
                       "--json", str(out / "gpu.json"), "--md", str(out / "results-gpu.md"), timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    doc = json.loads((out / "gpu.json").read_text())
    assert doc["machine"]["mode"].startswith("CPU DRY RUN") and doc["skipped"] == {}, doc["skipped"]
    assert set(doc["raw"]) == {"packing", "sharing", "loops", "cifar"}
    assert {r["section"] for r in doc["results"]} == {"1 packing", "2 sharing a GPU", "3 trial loop vs notebook",
                                                     "4 CIFAR-10 LabCNN epoch"}
    assert set(doc["packing_rule"]) == {"mlp", "cnn"}
    assert "CPU DRY RUN" in (out / "results-gpu.md").read_text()
