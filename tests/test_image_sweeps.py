"""Every image experiment's --smoke variant runs through `sweep run` on fake on-disk data."""
from __future__ import annotations

import pytest

from cluster.cli import main
from cluster.planning.plan import make_plan
from conftest import mlflow_runs
from fakedata import fake_data_root, weights_dir  # noqa: F401
from search_spaces import EXPERIMENTS
from cluster.infra.ray_setup import stop_ray

IMAGE = sorted(n for n, e in EXPERIMENTS.items()
               if not e.analytic and any(not p.endswith("/edges") for p in e.pairings))


@pytest.fixture(scope="module")
def shared_ray():
    """One local Ray for the module (the CLI joins it), shut down at the end."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    stop_ray()


@pytest.mark.parametrize("name", IMAGE)
def test_image_experiment_smoke_sweep(name, fake_data_root, weights_dir, tmp_path, shared_ray):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["run", name, "--smoke", "--seeds", "1", "--name", f"t-{name}", "--tracking-uri", uri,
            "--storage-path", str(tmp_path / "rr"), "--data-root", str(fake_data_root)]
    extra = {"data_root": str(fake_data_root)}
    if any(p.endswith("/cifar10_features") for p in EXPERIMENTS[name].pairings):
        args += ["--set", f"weights={weights_dir}", "--set", f"feature_cache_dir={tmp_path / 'fc'}"]
        extra.update(weights=str(weights_dir), feature_cache_dir=str(tmp_path / "fc"))
    assert main(args) == 0
    expected = make_plan(EXPERIMENTS[name], smoke=True, seeds=1, extra_fixed=extra).n_trials()
    parents, children = mlflow_runs(uri, name)
    assert len(parents) == 1 and len(children) == expected
    assert all(c.info.status == "FINISHED" for c in children)
    for c in children:
        assert "val_loss" in c.data.metrics
    if name == "object-localization":
        assert all("iou_original" in c.data.metrics and "iou_shifted" in c.data.metrics for c in children)
    if name == "shift-robustness":
        assert all("shift_acc_at_max" in c.data.metrics for c in children)
    if name == "pretrained-linear-probe":
        assert {c.data.tags.get("feature_cache_hit") for c in children} <= {"true", "false"}
