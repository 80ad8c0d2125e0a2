"""End to end: `sweep run --smoke --until-decided` on local Ray (2 CPUs), then `sweep resume` adds nothing."""
from __future__ import annotations

from collections import Counter

import pytest

from cluster.cli import main
from conftest import mlflow_runs

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
        ray.shutdown()
    return code, resumed, uri


def test_adaptive_sweep_one_parent_waves_and_the_maximum(adaptive_sweep):
    code, resumed, uri = adaptive_sweep
    assert code == 0 and resumed == 0
    parents, children = mlflow_runs(uri, EXP)
    assert len(parents) == 1
    tags = parents[0].data.tags
    assert tags["until_decided"] == "true" and tags["max_looks"] == "2"  # 2 seeds, then +2 up to 4
    assert "Bonferroni" in tags["stopping_rule"] and int(tags["looks_taken"]) >= 1 and tags.get("adaptive_outcome")
    per_cell = Counter((c.data.tags["pairing"], c.data.params["data_per_class"]) for c in children)
    assert max(per_cell.values()) <= 4 and min(per_cell.values()) == 2
    # data_per_class=30 is in no hypothesis: never more than the first wave.
    assert all(n == 2 for (p, d), n in per_cell.items() if d == "30")
    seeds = Counter((c.data.tags["pairing"], c.data.params["data_per_class"], c.data.tags["seed"]) for c in children)
    assert max(seeds.values()) == 1  # no duplicates, resume included
    waves = {c.data.tags["wave"] for c in children}
    assert "0" in waves and waves <= {"0", "1"}
    assert all(c.info.status == "FINISHED" for c in children)
