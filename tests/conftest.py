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
    import ray

    if ray.is_initialized():
        ray.shutdown()


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
