"""Benchmark 1, sweep wall time: `sweep run edge-data-per-class` end to end vs the notebook way vs a
hand-written Ray Tune sweep with MLflow's Tune callback, the same 8 trials (1 seed).

Each of the three runs as its own command (interpreter start, imports, Ray and MLflow setup
included), one after another, in a fresh temp dir. `sweep run` joins a `sweep up` head started
once before (the way to run many sweeps: no Ray start and stop per sweep); the same sweep
without a head (a first-time `sweep run`) is recorded too. The full run adds the default sweep
(3 seeds, SPEC epochs = 500) against the notebook doing the same 24 trials.

Targets (issue 15): 8 x 200 at least 1.2x the notebook (2x stays the long-term goal), at least
6x the hand-written Tune sweep, the default sweep at least 2x the notebook.

Run alone: `python -m benchmarks.bench_sweep [--full]`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import benchmark_main, no_head, PYTHON, ray_head, ROOT, Result, run_command, sweep_argv


def notebook_seconds(epochs: int, seeds: int = 1) -> float:
    wall, _ = run_command([PYTHON, "-m", "benchmarks.notebook", "--epochs", str(epochs), "--seeds", str(seeds)], ROOT)
    return wall


def sweep_seconds(work: Path, name: str, *extra: str) -> float:
    wall, _ = run_command(sweep_argv(name, work, *extra), work)
    return wall


def handwritten_seconds(work: Path, epochs: int) -> float:
    wall, _ = run_command([PYTHON, "-m", "benchmarks.handwritten_tune", "--epochs", str(epochs),
                           "--work", str(work / "handwritten")], ROOT)
    return wall


def run(short: bool = True) -> list[Result]:
    epochs = 100 if short else 200
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp, ray_head() as up_s:
        work = Path(tmp)
        nb = notebook_seconds(epochs)
        ours = sweep_seconds(work, "b1", "--seeds", "1", "--set", f"epochs={epochs}")
        hw = handwritten_seconds(work, epochs)
        with no_head():
            cold = sweep_seconds(work, "b1cold", "--seeds", "1", "--set", f"epochs={epochs}")
        size = f"8 trials x {epochs} epochs"
        results += [
            Result("1 sweep wall time", f"sweep run vs notebook ({size})", nb / ours, target=1.2,
                   detail=f"notebook {nb:.1f} s, sweep run {ours:.1f} s (`sweep up` head; `sweep up` took "
                          f"{up_s:.1f} s once)"),
            Result("1 sweep wall time", f"sweep run vs hand-written Tune + MLflowLoggerCallback ({size})", hw / ours,
                   target=6.0, detail=f"hand-written {hw:.1f} s, sweep run {ours:.1f} s"),
            Result("1 sweep wall time", f"first-time sweep run (no head) vs notebook ({size})", nb / cold,
                   detail=f"notebook {nb:.1f} s, sweep run starting its own Ray {cold:.1f} s"),
        ]
        if not short:
            nb3 = notebook_seconds(500, seeds=3)
            full = sweep_seconds(work, "b1full")
            results.append(Result("1 sweep wall time", "default sweep (3 seeds, 500 epochs) vs notebook", nb3 / full,
                                  target=2.0, detail=f"notebook {nb3:.1f} s, sweep run {full:.1f} s (`sweep up` head)"))
    return results


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
