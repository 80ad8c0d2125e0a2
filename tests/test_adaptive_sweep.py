"""End to end: `sweep run --smoke --until-decided` on local Ray (2 CPUs), then `sweep resume` adds nothing."""
from __future__ import annotations

from collections import Counter

import pytest

from cluster.cli import main
from conftest import mlflow_runs
from cluster.infra.ray_setup import stop_ray

EXP = "edge-data-per-class"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adaptive_sweep(tmp_path_factory):
    import ray

    tmp = tmp_path_factory.mktemp("adaptive")
    uri = f"sqlite:///{tmp}/mlflow.db"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        code = main(["run", EXP, "--smoke", "--until-decided", "--max-seeds", "4", "--name", "adapt",
                     "--tracking-uri", uri, "--storage-path", str(tmp / "ray_results")])
        resumed = main(["resume", "adapt", "--storage-path", str(tmp / "ray_results")])
    finally:
        stop_ray()
    return code, resumed, uri


def test_adaptive_sweep_one_parent_waves_and_the_maximum(adaptive_sweep):
    code, resumed, uri = adaptive_sweep
    assert code == 0 and resumed == 0
    parents, children = mlflow_runs(uri, EXP)
    assert len(parents) == 1
    tags = parents[0].data.tags
    assert tags["until_decided"] == "true" and tags["max_looks"] == "2"  # 2 seeds, then +2 up to 4
    # group-sequential design (issue 20): the looks and the spending are on the parent
    assert "O'Brien-Fleming" in tags["stopping_rule"] and tags["look_seeds"] == "[2, 4]"
    assert int(tags["looks_taken"]) >= 1 and tags.get("adaptive_outcome")
    assert all("classes_lost" in c.data.metrics and "min_class_recall" in c.data.metrics for c in children)
    per_cell = Counter((c.data.tags["pairing"], c.data.params["data_per_class"]) for c in children)
    assert max(per_cell.values()) <= 4 and min(per_cell.values()) >= 2
    # the last look after the last wave is taken (Tune asks the searcher once more) and recorded
    assert int(tags["looks_taken"]) == len({c.data.tags["wave"] for c in children})  # one look after each wave
    seeds = Counter((c.data.tags["pairing"], c.data.params["data_per_class"], c.data.tags["seed"]) for c in children)
    assert max(seeds.values()) == 1  # no duplicates, resume included
    waves = {c.data.tags["wave"] for c in children}
    assert "0" in waves and waves <= {"0", "1"}
    assert all(c.info.status == "FINISHED" for c in children)


def test_interrupted_adaptive_sweep_resumes_without_duplicates(tmp_path):
    """Ctrl+C in the second wave, then `sweep resume`: every (cell, seed) once, all finished."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import ray

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = str(tmp_path / "rr")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run", EXP, "--smoke", "--until-decided",
                             "--max-seeds", "6", "--name", "intr", "--tracking-uri", uri, "--storage-path", storage],
                            env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr").open("w"))
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            _, children = mlflow_runs(uri, EXP)
            if sum(c.info.status == "FINISHED" for c in children) >= 9:  # the first wave is 8 trials
                break
            time.sleep(0.25)  # the second and third waves take about 2 s on 2 CPUs
        assert proc.poll() is None, ("the sweep ended before it could be interrupted (exit "
                                     f"{proc.returncode}): {(tmp_path / 'stderr').read_text()[-3000:]}")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, before = mlflow_runs(uri, EXP)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        assert main(["resume", "intr", "--storage-path", storage]) == 0
    finally:
        stop_ray()
    parents, children = mlflow_runs(uri, EXP)
    seeds = Counter((c.data.tags["pairing"], c.data.params["data_per_class"], c.data.tags["seed"]) for c in children)
    assert max(seeds.values()) == 1 and len(children) >= len(before)
    assert all(c.info.status == "FINISHED" for c in children)
    assert parents[0].data.tags.get("adaptive_outcome")
    per_cell = Counter((p, d) for p, d, _ in seeds)
    # every cell of edge-data-per-class is in a source claim now (issue 20): each gets 2 to 6 seeds
    assert max(per_cell.values()) <= 6 and min(per_cell.values()) >= 2
