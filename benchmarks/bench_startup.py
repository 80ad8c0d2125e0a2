"""Benchmark 7, start-up: the fixed cost of a sweep, i.e. the wall time of a 2-trial, 1-epoch sweep
(`sweep run edge-data-per-class --seeds 1 --set epochs=1 --set data_per_class=10`, logging off),
where nearly everything is interpreter, imports, Ray and MLflow set-up and shutdown.

Measured side by side, interleaved, after one untimed warm-up each (the MLflow store exists, as for
any user's second sweep):
- head: this tree, with a `sweep up` head running (the way to run many sweeps);
- cold: this tree, no head (a first-time `sweep run`: Ray starts and stops with the sweep);
- before: the tree of git ref $BENCH_BEFORE_REF (e.g. `main` before this work; `python -m
  benchmarks.run --before REF`), cold, when that variable is set.

Run alone: `python -m benchmarks.bench_startup [--full]`.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import (PYTHON, ROOT, Result, alternate, benchmark_main, median, no_head, ray_head,
                               run_command)

TRIAL = ["--seeds", "1", "--set", "epochs=1", "--set", "data_per_class=10", "--set", "log_to_mlflow=false"]


def export_tree(ref: str, dest: Path) -> Path:
    """`git archive` of `ref` into dest (the code as it was, nothing installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _sweep(work: Path, name: str, tree: Path | None = None) -> float:
    argv = [PYTHON, "-m", "cluster.cli", "run", "edge-data-per-class", "--name", name, "--tracking-uri",
            f"sqlite:///{work}/mlflow.db", "--storage-path", str(work / "ray_results"), *TRIAL]
    env = {"PYTHONPATH": str(tree)} if tree is not None else None
    wall, _ = run_command(argv, tree or ROOT, env=env)
    return wall


def run(short: bool = True) -> list[Result]:
    repeats = 2 if short else 3
    before_ref = os.environ.get("BENCH_BEFORE_REF")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        tmp = Path(tmp)
        works = {k: tmp / k for k in ("head", "cold", "before")}
        for w in works.values():
            w.mkdir()
        tree = export_tree(before_ref, tmp / "before-tree") if before_ref else None
        count = {"n": 0}

        def one(kind: str) -> float:
            count["n"] += 1
            if kind == "head":
                return _sweep(works[kind], f"s{count['n']}")
            with no_head():
                return _sweep(works[kind], f"s{count['n']}", tree if kind == "before" else None)

        kinds = ["head", "cold"] + (["before"] if tree else [])
        with ray_head() as up_s:
            for k in kinds:
                one(k)  # warm-up: MLflow store created, files cached
            walls = alternate({k: (lambda k=k: one(k)) for k in kinds}, repeats)
    fixed = {k: median(v) for k, v in walls.items()}
    raw = "; ".join(f"{k} {', '.join(f'{w:.1f}' for w in v)}" for k, v in walls.items())
    results = [
        Result("7 start-up", "fixed cost of a 2-trial 1-epoch sweep, `sweep up` head", fixed["head"], unit="s",
               target=6.0, higher_is_better=False,
               detail=f"median of {repeats}: {raw} s; `sweep up` itself took {up_s:.1f} s once"),
        Result("7 start-up", "fixed cost of a 2-trial 1-epoch sweep, first-time (Ray started per sweep)",
               fixed["cold"], unit="s", detail=f"median of {repeats} (same run as the row above)"),
    ]
    if tree is not None:
        results.append(Result("7 start-up", f"fixed cost before ({before_ref}) / with a head", fixed["before"] / fixed["head"],
                              detail=f"before {fixed['before']:.1f} s (Ray per sweep), head {fixed['head']:.1f} s, "
                                     f"cold {fixed['cold']:.1f} s; before/cold {fixed['before'] / fixed['cold']:.2f}x"))
    return results


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
