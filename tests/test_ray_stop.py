"""cluster.infra.ray_setup.stop_ray: a Ray started by this process stops with every process it
started, and none of them is left to Ray's one-second SIGTERM grace and SIGKILL (the autoscaler
monitor was: 1.0 s of every local sweep's 1.1 s shut-down)."""
from __future__ import annotations

import subprocess

import pytest

from cluster.infra import ray_setup

ray = pytest.importorskip("ray")


def test_local_ray_stops_every_process_without_waiting_out_a_grace(monkeypatch):
    from ray._private import ray_constants, worker

    with ray_setup.loopback_only():
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        started = [(kind, info.process) for kind, infos in worker._global_node.all_processes.items()
                   for info in infos]
        assert ray_constants.PROCESS_TYPE_MONITOR in {kind for kind, _ in started}  # the one stop_ray kills first
        timed_out: list[str] = []
        real_wait = subprocess.Popen.wait

        def wait(self, timeout=None):
            try:
                return real_wait(self, timeout)
            except subprocess.TimeoutExpired:
                timed_out.append(next((kind for kind, p in started if p is self), str(self.args)))
                raise

        monkeypatch.setattr(subprocess.Popen, "wait", wait)
        ray_setup.stop_ray()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert not ray.is_initialized()
    assert [kind for kind, p in started if p.poll() is None] == [], "a Ray process outlived stop_ray"
    assert timed_out == [], f"Ray waited out its SIGTERM grace on {timed_out}"


def test_stop_ray_without_ray_running_does_nothing():
    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    ray_setup.stop_ray()
    assert not ray.is_initialized()


def _workers_of(raylet_pid: int) -> list[int]:
    """Pids of the Python workers a raylet has started (Linux /proc): its children titled "ray::..."
    ("ray::IDLE" until they run something), not its agents ("ray::DashboardAgent", "ray::RuntimeEnvAgent")."""
    from pathlib import Path

    pids = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == raylet_pid and cmd.startswith(b"ray::") \
                and not cmd.split(b"\0")[0].endswith(b"Agent"):
            pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="reads /proc")
def test_a_local_ray_prestarts_no_idle_workers(monkeypatch, tmp_path):
    """Ray would start one idle worker per CPU for the first driver; Tune's actors never use them,
    so a Ray this project starts prestarts none (they only took CPU from the start)."""
    import time

    from ray._private import ray_constants, worker

    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path))  # no `sweep up` head to join
    assert ray_setup.init_ray(None, num_cpus=2) == "local"
    try:
        raylet = worker._global_node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
        deadline = time.monotonic() + 4  # prestarted workers show up within about a second
        while time.monotonic() < deadline and not _workers_of(raylet):
            time.sleep(0.2)
        assert _workers_of(raylet) == []

        @ray.remote(num_cpus=1)
        def pid():
            return __import__("os").getpid()

        assert ray.get(pid.remote()) in _workers_of(raylet)  # workers still start when work asks
    finally:
        ray_setup.stop_ray()
