"""Starting or joining Ray, and the per-trial resource request."""
from __future__ import annotations

import os
from pathlib import Path

from core.errors import ConfigError

# Files a worker never needs when the driver ships the working directory to a cluster.
SHIP_EXCLUDES = [".venv/", ".git/", "mlflow.db", "mlartifacts/", "ray_results/", "reports/", "data/",
                 "benchmarks/out/", "**/__pycache__/"]
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                  "SWEEP_DATA_ROOT", "SWEEP_ALLOW_FAULT_INJECTION")


def init_ray(address: str | None, num_cpus: int | None = None, ship_code: bool = True) -> None:
    """`ray.init()` capped to this machine when no address; join a cluster otherwise.

    For a remote cluster the working directory (this project) travels in the runtime
    environment unless ship_code is False (project installed on every node, e.g. the recipes'
    images), and MLflow credentials / data root travel as environment variables, never as config.
    """
    import ray

    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in CREDENTIAL_ENV if k in os.environ}
    if address is None:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1",
                 runtime_env={"env_vars": env} if env else None, log_to_driver=True,
                 configure_logging=True, logging_level="WARNING")
        return
    runtime_env: dict = {"env_vars": env} if env else {}
    if ship_code:
        runtime_env["working_dir"] = str(Path.cwd())
        runtime_env["excludes"] = SHIP_EXCLUDES
    try:
        ray.init(address=address, runtime_env=runtime_env or None, logging_level="WARNING")
    except ConnectionError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at --address {address!r}: {exc}") from None


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
