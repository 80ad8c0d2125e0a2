"""Benchmark 4, logging overhead: the same sweep with MLflow logging on vs off (log_to_mlflow=false),
to a sqlite store and to a local `mlflow server` (cluster.infra.server.TrackingServer).

"Off" still creates the sweep's parent run (a fixed cost of both); "on" adds every trial's child
run, per-epoch metrics (buffered, written with log_batch) and artifacts (figures, histories).
Overhead = (on - off) / on of the sweep's wall time; the two alternate to share the machine's
drift. Both join one `sweep up` head (no Ray start in either wall, so the share is not diluted).

Run alone: `python -m benchmarks.bench_logging [--full]`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import benchmark_main, ray_head, Result, alternate, median, run_command, sweep_argv


def _sweep(work: Path, name: str, epochs: int, uri: str | None, log: bool) -> float:
    argv = sweep_argv(name, work, "--seeds", "1", "--set", f"epochs={epochs}",
                      "--set", f"log_to_mlflow={'true' if log else 'false'}", tracking_uri=uri)
    wall, _ = run_command(argv, work)
    return wall


def measure(work: Path, label: str, uri: str | None, epochs: int, repeats: int) -> Result:
    count = {"n": 0}

    def one(log: bool) -> float:
        count["n"] += 1
        return _sweep(work, f"{label.split()[-1]}-{count['n']}", epochs, uri, log)
    walls = alternate({"on": lambda: one(True), "off": lambda: one(False)}, repeats)
    on, off = median(walls["on"]), median(walls["off"])
    return Result("4 logging overhead", f"MLflow logging, {label} (8 trials x {epochs} epochs)",
                  100 * (on - off) / on, unit="%", target=5.0, higher_is_better=False,
                  detail=f"sweep wall with logging {on:.1f} s, without {off:.1f} s "
                         f"(median of {repeats}: on {', '.join(f'{w:.1f}' for w in walls['on'])}; "
                         f"off {', '.join(f'{w:.1f}' for w in walls['off'])})")


def run(short: bool = True) -> list[Result]:
    from cluster.infra.server import TrackingServer

    epochs, repeats = (60, 1) if short else (200, 2)
    with tempfile.TemporaryDirectory(prefix="bench-logging-") as tmp, ray_head():  # sweeps as users run many
        work = Path(tmp)
        results = [measure(work, "sqlite", None, epochs, repeats)]
        (work / "server").mkdir()
        with TrackingServer(root=work / "server") as server:
            results.append(measure(work, "local mlflow server", server.uri, epochs, repeats))
    return results


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
