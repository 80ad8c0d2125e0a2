"""Benchmark 6, concurrency: trials/s with 1 and with 2 concurrent trials on this machine's cores,
threads per trial = its CPU share (`--cpus-per-trial`); on a GPU machine also 4 trials sharing a
GPU (0.25 each) vs 1 trial per GPU.

Throughput is measured over the Tune phase only (first trial start to last trial end, from the
sweep's progress lines), so Ray start-up and MLflow set-up do not dilute it.

Run alone: `python -m benchmarks.bench_concurrency [--full]`.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from benchmarks.common import benchmark_main, Result, device_name, run_command, sweep_argv

PROGRESS = re.compile(r"\[\s*(\d+)s\]\s+(\d+)/(\d+)")


def tune_phase(output: str) -> tuple[float, int]:
    """(seconds from Tune start to the last finished trial, trials finished) from the progress lines."""
    hits = [(float(m.group(1)), int(m.group(2))) for m in PROGRESS.finditer(output)]
    if not hits:
        raise RuntimeError("no progress lines in the sweep output")
    return max(h[0] for h in hits), max(h[1] for h in hits)


def trials_per_second(work: Path, name: str, epochs: int, *extra: str) -> tuple[float, str]:
    _, out = run_command(sweep_argv(name, work, "--seeds", "1", "--set", f"epochs={epochs}", *extra), work)
    seconds, n = tune_phase(out)
    return n / max(seconds, 1.0), f"{n} trials in {seconds:.0f} s"


def run(short: bool = True) -> list[Result]:
    epochs = 40 if short else 150
    cores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as tmp:
        work = Path(tmp)
        one, d1 = trials_per_second(work, "c1", epochs, "--max-concurrent", "1", "--cpus-per-trial", str(cores))
        many, d2 = trials_per_second(work, "c2", epochs, "--max-concurrent", str(cores), "--cpus-per-trial", "1")
        results.append(Result("6 concurrency", f"trials/s, {cores} concurrent x 1 thread vs 1 x {cores} threads",
                              many / one,
                              detail=f"{cores} concurrent: {d2} ({many:.2f}/s); 1 at a time: {d1} ({one:.2f}/s)"))
        if device_name() == "cuda":
            g1, e1 = trials_per_second(work, "g1", epochs, "--gpus-per-trial", "1")
            g4, e4 = trials_per_second(work, "g4", epochs, "--gpus-per-trial", "0.25")
            results.append(Result("6 concurrency", "GPU sharing: 4 trials at 0.25 GPU vs 1 trial per GPU", g4 / g1,
                                  target=2.5, detail=f"0.25 GPU: {e4}; 1 GPU: {e1}"))
    return results


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
