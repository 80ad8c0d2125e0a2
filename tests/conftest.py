"""Shared fixtures: a throwaway MLflow store, a capped local Ray, quiet threads."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
torch.set_num_threads(1)


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    """A fresh sqlite MLflow store in the test's temp dir."""
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def ray_shutdown():
    """Make sure Ray started by the code under test is shut down afterwards, even on failure."""
    yield
    from cluster.infra.ray_setup import stop_ray

    stop_ray()  # ray.shutdown() without the local monitor's 1 s grace


def mlflow_runs(uri: str, experiment: str):
    """(parent runs, child runs) of an MLflow experiment, as lists of mlflow Run objects."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return [], []
    runs = client.search_runs([exp.experiment_id], max_results=10000)
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    return parents, children


@pytest.fixture
def clean_user_registries():
    """Whatever a test's user modules registered (models, datasets, pairings, experiments, loaded
    modules, entry-point plugins) is gone afterwards."""
    import sys
    import tempfile

    from cluster.flow import user_code
    from core import registry, user_modules

    origins, loaded, modules = set(registry.ORIGINS.values()), set(user_modules.LOADED), set(sys.modules)
    yield
    for origin in set(registry.ORIGINS.values()) - origins:
        registry.forget(origin)
    for name in set(user_modules.LOADED) - loaded:
        user_modules.LOADED.pop(name)
        sys.modules.pop(name, None)
    for name in set(sys.modules) - modules:  # user modules a test loaded (from its temp dir)
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(tempfile.gettempdir()):
            del sys.modules[name]
    user_code._PLUGINS_LOADED.clear()
