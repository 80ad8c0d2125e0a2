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
