"""Benchmark 5, Tune overhead: what one more trial costs a sweep beyond its own training.

Two `sweep run edge-data-per-class --set epochs=1 --set data_per_class=10` sweeps, with 100
trials (50 seeds x 2 pairings) and with 2, once with MLflow logging off (the target's figure: the
framework's own cost) and once with it on (recorded; benchmark 4 measures logging alone). Their
difference cancels the fixed costs (interpreter, Ray start, MLflow parent run, shutdown):
per-trial overhead = (T100 - T2) / 98 - (one trial's own training time) / concurrency, where the
training time is measured in-process with `run_trial`.

Run alone: `python -m benchmarks.bench_tune_overhead [--full]`.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import benchmark_main, Result, run_command, run_isolated, sweep_argv

TRIAL = ["--set", "epochs=1", "--set", "data_per_class=10", "--set", "log_to_mlflow=false"]


def trial_seconds(repeats: int = 20) -> dict:
    """Mean wall time of one such trial in-process (data, model, one epoch), both pairings, after warm-up."""
    import torch

    from trainables.trainable import run_trial

    torch.set_num_threads(1)
    times = []
    for pairing in ("simple_cnn/edges", "three_layer_mlp/edges"):
        cfg = {"pairing": pairing, "epochs": 1, "data_per_class": 10, "log_to_mlflow": False, "threads": 1}
        run_trial(cfg)
        for seed in range(repeats):
            t0 = time.perf_counter()
            run_trial({**cfg, "seed": 100 + seed})
            times.append(time.perf_counter() - t0)
    return {"seconds": sum(times) / len(times)}


def run(short: bool = True) -> list[Result]:
    n = 100
    concurrency = os.cpu_count() or 1
    own = run_isolated("benchmarks.bench_tune_overhead:trial_seconds")["seconds"]
    results = []
    for logging, extra in (("off", TRIAL), ("on", TRIAL[:-2])):
        with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
            work = Path(tmp)
            big, _ = run_command(sweep_argv("t100", work, "--seeds", str(n // 2), *extra), work)
            small, _ = run_command(sweep_argv("t2", work, "--seeds", "1", *extra), work)
        marginal = (big - small) / (n - 2)
        overhead = marginal - own / concurrency
        # The target is for the framework's own cost (logging off); with logging on the figure also
        # holds each trial's MLflow child run (params, per-epoch metrics, JSON/npy artifacts): recorded.
        results.append(Result(
            "5 Tune overhead", f"per-trial overhead, {n} one-epoch trials, MLflow logging {logging}", overhead,
            unit="s", target=0.1 if logging == "off" else None, higher_is_better=False,
            detail=f"logging {logging}: sweep of {n} trials {big:.1f} s, of 2 trials {small:.1f} s: {marginal:.3f} s "
                   f"per extra trial, of which training {own:.3f} s / {concurrency} concurrent"))
    return results


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
