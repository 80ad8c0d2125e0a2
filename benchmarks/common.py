"""Shared pieces of the benchmarks: results with targets, machine facts, isolated runs, timing.

Every benchmark returns `Result`s: a ratio measured side by side in one run, its target and
whether it passed. Work that should be measured on its own (one trial, one sweep) runs in a
fresh subprocess (`run_isolated` / `run_command`), which also gives its peak RSS.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
OUT = ROOT / "benchmarks" / "out"
SWEEP = str(Path(PYTHON).with_name("sweep"))
# The `sweep up` head that `sweep run` commands join while `ray_head()` is active (its $SWEEP_HOME).
HEAD: dict[str, str | None] = {"home": None}


@dataclass
class Result:
    """One measured figure.

    Attributes:
        bench: benchmark name ("1 sweep wall time", ...).
        name: what was compared.
        value: the measured ratio (or figure, see unit).
        unit: "x" for a speed-up, "%" or "s" otherwise.
        target: the issue's target; None when the figure is recorded only.
        higher_is_better: direction of the target.
        detail: the raw measurements behind the ratio, in words.
    """

    bench: str
    name: str
    value: float
    unit: str = "x"
    target: float | None = None
    higher_is_better: bool = True
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value < self.target

    def verdict(self) -> str:
        return {None: "recorded", True: "PASS", False: "FAIL"}[self.passed]

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<'} {self.target:g}{self.unit}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def device_name() -> str:
    """'cuda' when a GPU is visible, else 'cpu' (the benchmarks' device='auto')."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def machine() -> dict[str, Any]:
    """Facts printed with every run and written into results.md."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host_cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "device": device_name(),
            "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import ray

        info["ray"] = ray.__version__
        import mlflow

        info["mlflow"] = mlflow.__version__
    except ImportError:
        pass
    return info


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("RAY_DEDUP_LOGS", "0")
    env.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    env.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    env.pop("SWEEP_HOME", None)
    if HEAD["home"]:
        env["SWEEP_HOME"] = HEAD["home"]
    return env


@contextlib.contextmanager
def ray_head(num_cpus: int | None = None):
    """A `sweep up` head (in its own $SWEEP_HOME) that every `sweep run` of the block joins; the
    seconds `sweep up` took are yielded. Outside the block sweeps start their own Ray."""
    home = tempfile.mkdtemp(prefix="bench-head-")
    env = {**_env(), "SWEEP_HOME": home}
    t0 = time.perf_counter()
    subprocess.run([SWEEP, "up"] + (["--num-cpus", str(num_cpus)] if num_cpus else []), env=env, check=True,
                   capture_output=True, text=True, timeout=600)
    HEAD["home"] = home
    try:
        yield time.perf_counter() - t0
    finally:
        HEAD["home"] = None
        subprocess.run([SWEEP, "down"], env=env, capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def no_head():
    """Sweeps in this block start their own Ray even inside `ray_head()` (the first-time path)."""
    saved, HEAD["home"] = HEAD["home"], None
    try:
        yield
    finally:
        HEAD["home"] = saved


def run_isolated(target: str, timeout: float = 900, **kwargs) -> dict[str, Any]:
    """Call `module:function(**kwargs)` in a fresh Python process; return its JSON-able dict result.

    The child adds `peak_rss_mb` (its own peak RSS) and `wall_s` (the call's wall time).
    """
    code = ("import json, sys, time; from benchmarks.common import _child; "
            f"_child({target!r}, json.loads(sys.argv[1]))")
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        proc = subprocess.run([PYTHON, "-c", code, json.dumps(kwargs), out.name], cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{target} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text())


def _child(target: str, kwargs: dict) -> None:
    import importlib

    module, func = target.split(":")
    fn = getattr(importlib.import_module(module), func)
    t0 = time.perf_counter()
    result = fn(**kwargs)
    result = {**result, "wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}
    Path(sys.argv[2]).write_text(json.dumps(result))


def run_command(argv: list[str], cwd: Path, timeout: float = 1800, env: dict | None = None) -> tuple[float, str]:
    """Run a command to completion; return (wall seconds, combined output). Raises on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def sweep_argv(name: str, work: Path, *extra: str, experiment: str = "edge-data-per-class",
               tracking_uri: str | None = None) -> list[str]:
    """`sweep run` in `work` with its own MLflow store and Tune storage."""
    return [SWEEP, "run", experiment, "--name", name, "--tracking-uri",
            tracking_uri or f"sqlite:///{work}/mlflow.db", "--storage-path", str(work / "ray_results"), *extra]


def median(values: list[float]) -> float:
    return statistics.median(values)


def alternate(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each measurement `repeats` times, interleaved (ABAB...) so slow drift hits both alike."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            out[k].append(fn())
    return out


def print_results(results: list[Result]) -> None:
    for r in results:
        print(f"  [{r.verdict():>8}] {r.bench} | {r.name}: {r.value:.3g}{r.unit} (target {r.target_text()})"
              + (f" -- {r.detail}" if r.detail else ""), flush=True)


def benchmark_main(run, doc: str) -> None:
    """Command line of one benchmark script: `python -m benchmarks.<name> [--full]`."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--full", action="store_true")
    print_results(run(short=not p.parse_args().full))
