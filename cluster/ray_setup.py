"""Starting or joining Ray, and the per-trial resource request."""
from __future__ import annotations

import os
from pathlib import Path

from trainables.errors import ConfigError

# Files a worker never needs when the driver ships the working directory to a cluster.
SHIP_EXCLUDES = [".venv/", ".git/", "mlflow.db", "mlartifacts/", "ray_results/", "reports/", "data/",
                 "benchmarks/out/", "**/__pycache__/"]
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                  "SWEEP_DATA_ROOT", "SWEEP_ALLOW_FAULT_INJECTION")


def init_ray(address: str | None, num_cpus: int | None = None, ship_code: bool = True) -> str:
    """Join or start Ray; returns how: "head" (the project's `sweep up` head), "local" (started
    here, capped to this machine, stopped when the sweep ends), "cluster" (--address), "running".

    Without an address, the head recorded by `sweep up` is joined when its state file names a live
    one (cluster.ray_head); otherwise Ray starts here as it always did. It never joins a cluster it
    was not told about (no address="auto"). For a remote cluster the working directory (this
    project) travels in the runtime environment unless ship_code is False (project installed on
    every node, e.g. the recipes' images), and MLflow credentials / data root travel as
    environment variables, never as config.
    """
    import ray

    if ray.is_initialized():
        return "running"
    env = {k: os.environ[k] for k in CREDENTIAL_ENV if k in os.environ}
    if address is None:
        from cluster import ray_head

        head = ray_head.live_head()
        if head is not None:
            _join_head(head, {"env_vars": env} if env else None)
            return "head"
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1",
                 runtime_env={"env_vars": env} if env else None, log_to_driver=True,
                 configure_logging=True, logging_level="WARNING")
        return "local"
    runtime_env: dict = {"env_vars": env} if env else {}
    if ship_code:
        runtime_env["working_dir"] = str(Path.cwd())
        runtime_env["excludes"] = SHIP_EXCLUDES
    try:
        ray.init(address=address, runtime_env=runtime_env or None, logging_level="WARNING")
    except ConnectionError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at --address {address!r}: {exc}") from None
    return "cluster"


def _join_head(head, runtime_env: dict | None) -> None:
    """Connect this driver to the project's loopback head: same node address (127.0.0.1) and token
    authentication as the keeper that started it."""
    import ray
    from ray._private import ray_constants

    from cluster.ray_head import LOOPBACK_ENV

    os.environ.update(LOOPBACK_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import; Ray may be imported already
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # a Ray without token authentication
        pass
    try:
        ray.init(address=head.address, runtime_env=runtime_env, log_to_driver=True, configure_logging=True,
                 logging_level="WARNING")
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(f"cannot join the Ray head of `sweep up` ({head.describe()}): {exc}; "
                          "`sweep down` and `sweep up` again, or `sweep down` to let each sweep start Ray") from None


def cluster_resources() -> tuple[float, float, int]:
    """(CPUs, GPUs, alive nodes) that Ray sees."""
    import ray

    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return float(res.get("CPU", 0)), float(res.get("GPU", 0)), nodes


def trial_resources(cpus: float | None, gpus: float | None, total_cpus: float, total_gpus: float) -> dict[str, float]:
    """The per-trial request: 1 CPU and 0.25 GPU by default where Ray sees GPUs, else 0 GPU.

    Raises:
        ConfigError: cpus < 1 or more than the cluster has; gpus < 0, or above 1 and not whole.
    """
    cpus = 1.0 if cpus is None else float(cpus)
    if cpus < 1 or cpus != int(cpus):
        raise ConfigError(f"--cpus-per-trial must be a whole number >= 1, got {cpus:g}")
    if cpus > total_cpus:
        raise ConfigError(f"--cpus-per-trial {cpus:g} is more than the cluster has ({total_cpus:g} CPUs)")
    if gpus is None:
        gpus = 0.25 if total_gpus > 0 else 0.0
    gpus = float(gpus)
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise ConfigError(f"--gpus-per-trial must be in [0, 1] or a whole number, got {gpus:g}")
    if gpus > 0 and gpus > max(total_gpus, 0):
        raise ConfigError(f"--gpus-per-trial {gpus:g} but the cluster has {total_gpus:g} GPUs")
    return {"cpu": cpus, "gpu": gpus}


def check_gpu_arg(gpus: float | None) -> None:
    """Static part of the GPU check, before Ray starts."""
    if gpus is not None and (gpus < 0 or (gpus > 1 and gpus != int(gpus))):
        raise ConfigError(f"--gpus-per-trial must be in [0, 1] or a whole number, got {gpus:g}")
