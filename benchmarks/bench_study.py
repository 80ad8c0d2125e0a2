"""Benchmark 8, the whole edge study: `sweep study edge` (the eleven edge experiments at their
defaults, then the study report) end to end, wall time on this machine. Target (issue 15): under
15 minutes on 2 cores. Full run only (`make bench-full`); it joins a `sweep up` head started once.

Run alone: `python -m benchmarks.bench_study --full`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import SWEEP, Result, benchmark_main, ray_head, run_command


def run(short: bool = True) -> list[Result]:
    if short:
        return []  # 15 minutes: `make bench-full` only
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp, ray_head() as up_s:
        work = Path(tmp)
        wall, out = run_command([SWEEP, "study", "edge", "--tracking-uri", f"sqlite:///{work}/mlflow.db",
                                 "--storage-path", str(work / "ray_results"), "--out", str(work / "report")],
                                work, timeout=4 * 3600)
    return [Result("8 edge study", "whole edge study (`sweep study edge`, 11 experiments at defaults)", wall / 60,
                   unit=" min", target=15.0, higher_is_better=False,
                   detail=f"{wall:.0f} s including the study report (`sweep up` took {up_s:.1f} s once before)")]


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
