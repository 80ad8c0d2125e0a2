"""Starting or joining Ray, and the per-trial resource request."""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from core.errors import ConfigError

# Files a worker never needs when the driver ships the working directory to a cluster.
SHIP_EXCLUDES = [".venv/", ".git/", "mlflow.db", "mlartifacts/", "ray_results/", "reports/", "data/",
                 "benchmarks/out/", "**/__pycache__/", ".sweep/"]
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                  "SWEEP_DATA_ROOT", "SWEEP_ALLOW_FAULT_INJECTION")
# A Ray this project starts (a sweep's own, `sweep up`'s head) prestarts no idle workers. By default
# the raylet starts one idle Python worker per CPU when the first driver connects; Tune's trial
# actors never get them (each actor is started its own worker on demand), so on a small machine
# they only took CPU from Ray's start and the driver's MLflow set-up (~0.3 s of a cold 2-trial
# sweep here). `_system_config` is ray.init's setting for RayConfig (ray_config_def.h).
LOCAL_RAY_SYSTEM_CONFIG = {"prestart_worker_first_driver": False}


def init_ray(address: str | None, num_cpus: int | None = None, ship_code: bool = True,
             py_modules: list[str] | None = None) -> str:
    """Join or start Ray; returns how: "head" (the project's `sweep up` head), "local" (started
    here, capped to this machine, stopped when the sweep ends), "cluster" (--address), "running".

    Without an address, the head recorded by `sweep up` is joined when its state file names a live
    one started with this process's credentials and data root (cluster.infra.ray_head); otherwise Ray
    starts here as it always did. It never joins a cluster it was not told about (no
    address="auto"). For a remote cluster the working directory (this project) travels in the
    runtime environment unless ship_code is False (project installed on every node, e.g. the
    recipes' images), and MLflow credentials / data root travel as environment variables, never
    as config. The user's module files (`py_modules`) travel in the runtime environment too,
    also with ship_code False: they are never installed on the nodes.

    A local Ray (started here or by `sweep up`) gets no runtime environment at all: its workers
    inherit the starting process's environment (credentials included), and a runtime env would
    write them in clear text to Ray's runtime-env agent log. It binds 127.0.0.1 (`loopback_only`).
    """
    import ray

    if ray.is_initialized():
        return "running"
    if address is None:
        from cluster.infra import ray_head

        head = ray_head.live_head(env_digest=credential_digest())
        if head is not None:
            _join_head(head)
            return "head"
        ray_head.reap_orphans()  # agents a SIGKILLed sweep of this folder left (Ray does not stop them)
        with loopback_only():
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1",
                     log_to_driver=True, configure_logging=True, logging_level="WARNING",
                     _system_config=LOCAL_RAY_SYSTEM_CONFIG)
        return "local"
    check_address(address)
    env = {k: os.environ[k] for k in CREDENTIAL_ENV if k in os.environ}
    runtime_env: dict = {"env_vars": env} if env else {}
    if ship_code:
        runtime_env["working_dir"] = str(Path.cwd())
        runtime_env["excludes"] = SHIP_EXCLUDES
    if py_modules:  # the user's own files (cluster.flow.user_code), with or without --no-ship-code
        runtime_env["py_modules"] = list(py_modules)
    try:
        ray.init(address=address, runtime_env=runtime_env or None, logging_level="WARNING")
    except ConnectionError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at --address {address!r}: {exc}") from None
    return "cluster"


def stop_ray() -> None:
    """Disconnect from Ray (`ray.shutdown()`); a Ray started by this process stops without waiting
    a second on its autoscaler monitor.

    A local Ray (`ray.init()` without an address, here or in `sweep up`'s keeper) runs an
    autoscaler monitor. `ray.shutdown()` stops the raylet and the GCS first; the monitor, sent
    SIGTERM once the GCS is gone, tries to report its termination to that GCS, so Ray waits its
    full second for it and then kills it (measured: 1.0 s of a 1.1 s shutdown). The monitor of a
    single-machine Ray has nothing to scale and no state to keep, so it is killed first, as Ray
    would kill it a second later; the raylet, the GCS and every other process stop as
    `ray.shutdown()` stops them. A driver that joined a head or a cluster started no monitor:
    only `ray.shutdown()` runs.
    """
    import ray

    if not ray.is_initialized():
        return
    for process in _own_monitor_processes():
        try:
            process.kill()
            process.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass  # Ray's own shutdown below terminates whatever is left, as before
    ray.shutdown()


def _own_monitor_processes() -> list:
    """The autoscaler monitor processes (subprocess.Popen) that this process's Ray node started;
    [] for a driver that joined Ray, or a Ray without these (private) attributes."""
    try:
        from ray._private import ray_constants, worker

        node = getattr(worker, "_global_node", None)
        infos = [] if node is None else node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, [])
        return [info.process for info in infos if info.process.poll() is None]
    except (ImportError, AttributeError, TypeError):
        return []


def credential_digest() -> str:
    """A digest of the credential / data-root environment: a `sweep up` head is joined only by
    drivers whose values match the ones its workers inherited (none travel in a runtime env)."""
    import hashlib

    text = "\0".join(f"{k}={os.environ.get(k, '')}" for k in CREDENTIAL_ENV)
    return hashlib.sha256(text.encode()).hexdigest()


def _join_head(head) -> None:
    """Connect this driver to the project's loopback head (node address 127.0.0.1, token
    authentication with the user's token, as the keeper that started it)."""
    import ray

    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # a Ray without token authentication
        pass
    try:
        with loopback_only():
            ray.init(address=head.address, log_to_driver=True, configure_logging=True, logging_level="WARNING")
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(f"cannot join the Ray head of `sweep up` ({head.describe()}): {exc}; "
                          "`sweep down` and `sweep up` again, or `sweep down` to let each sweep start Ray") from None


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While Ray starts: make a local Ray's processes listen on 127.0.0.1 only.

    Ray 2.60 resolves `_node_ip_address="127.0.0.1"` to the machine's routable address unless
    clusters are disabled (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, Ray's own single-machine mode
    on macOS/Windows): then the node IP is the loopback address and GCS, raylet, object manager
    and workers bind it. Set in the environment (read by Ray's child processes) and on the
    already-imported constant (read by `ray.init`); both are put back once Ray runs, so a later
    `ray.init(address=...)` in this process is unaffected.
    """
    from ray._private import ray_constants

    old_env, old_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = old_env


def check_address(address: str) -> None:
    """`ray://` needs Ray Client (the `ray[client]` extra, i.e. grpcio): say so before connecting."""
    import importlib.util

    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise ConfigError(f"--address {address} uses Ray Client, which needs the grpcio package: "
                          "pip install 'ray[client]==<the cluster's Ray version>', or run the driver on the "
                          "cluster with --address auto")


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
