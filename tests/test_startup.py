"""Start-up: `sweep up` / `sweep down`, a head that later sweeps reuse, stale state, first-time runs."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from cluster.infra import ray_head, ray_setup, warm_server


@pytest.fixture
def sweep_home(tmp_path, monkeypatch):
    """The head's state lives in this test's folder ($SWEEP_HOME), never the project's."""
    home = tmp_path / "home"
    monkeypatch.setenv("SWEEP_HOME", str(home))
    return home


@pytest.fixture
def ray_init_spy(monkeypatch):
    """ray.init replaced by a recorder (no Ray starts)."""
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: calls.append(kw))
    return calls


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_state(home, pid: int, port: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / ray_head.STATE_NAME).write_text(json.dumps(
        {"address": f"127.0.0.1:{port}", "pid": pid, "num_cpus": 1, "temp_dir": "/tmp/x", "project": str(home),
         "started": 0.0}))


def test_state_file_is_scoped_to_sweep_home_or_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("SWEEP_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert ray_head.state_file() == tmp_path.resolve() / ".sweep" / ray_head.STATE_NAME
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path / "elsewhere"))
    assert ray_head.state_file() == (tmp_path / "elsewhere").resolve() / ray_head.STATE_NAME
    assert ray_head.ray_temp_dir(tmp_path) != ray_head.ray_temp_dir(tmp_path / "elsewhere")


def test_run_without_up_starts_its_own_local_ray(sweep_home, ray_init_spy):
    assert ray_setup.init_ray(None) == "local"
    assert len(ray_init_spy) == 1
    assert ray_init_spy[0].get("address") is None and ray_init_spy[0]["num_cpus"] >= 1


@pytest.mark.parametrize("kind", ["dead keeper", "live pid that is not a keeper", "unreadable"])
def test_stale_state_file_is_ignored_with_a_note(sweep_home, ray_init_spy, capsys, kind):
    listener = socket.socket()  # a port that answers: only the keeper check can call the state stale
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    if kind == "unreadable":
        sweep_home.mkdir(parents=True)
        (sweep_home / ray_head.STATE_NAME).write_text("{not json")
    else:
        import os

        _write_state(sweep_home, _dead_pid() if kind == "dead keeper" else os.getpid(), port)
    try:
        assert ray_setup.init_ray(None) == "local"
    finally:
        listener.close()
    assert ray_init_spy[0].get("address") is None  # started its own Ray, did not try the stale address
    assert "stale Ray head state file" in capsys.readouterr().out
    assert not (sweep_home / ray_head.STATE_NAME).exists()


def test_down_without_a_head_says_so(sweep_home):
    assert ray_head.down() is False


def test_up_run_down_cycle_reuses_the_head(sweep_home, ray_shutdown, monkeypatch):
    """`sweep up` starts one head; two drivers join it (no Ray start of their own); `sweep down` stops it."""
    import ray

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # joining sets it; undone after the test
    head = ray_head.up(num_cpus=1)
    try:
        assert head.address.startswith("127.0.0.1:") and ray_head.is_alive(head)
        assert warm_server.answers(ray_head.warm_socket())  # `sweep up` starts the warm driver beside the head
        assert ray_head.up() == head  # a second `sweep up` finds the live head
        local_starts = []
        real_init = ray.init

        def spy(*a, **kw):
            if kw.get("address") is None:
                local_starts.append(kw)
            return real_init(*a, **kw)

        monkeypatch.setattr(ray, "init", spy)
        for _ in range(2):  # two sweeps in a row
            assert ray_setup.init_ray(None) == "head"
            assert ray.get_runtime_context().gcs_address == head.address
            assert ray.get(ray.remote(lambda: 41 + 1).options(num_cpus=1).remote()) == 42
            assert ray_setup.cluster_resources()[0] == 1.0  # the head's capped CPUs
            ray.shutdown()
            assert ray_head.is_alive(head)  # the head outlives the sweep
        assert local_starts == []
    finally:
        stopped = ray_head.down()
    assert stopped
    assert not ray_head.state_file().exists()
    assert not ray_head.warm_socket().exists()  # the warm driver ended with its keeper
    assert not ray_head.is_alive(head)
    host, _, port = head.address.rpartition(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()


def test_cli_up_and_down(sweep_home, capsys):
    from cluster.cli import main

    assert main(["down"]) == 0
    assert "no Ray head was up" in capsys.readouterr().out
    assert main(["up", "--num-cpus", "0"]) == 2  # bad input: refused before anything starts
    assert not (sweep_home / ray_head.STATE_NAME).exists()


@pytest.mark.slow
def test_sweep_run_joins_the_head_of_sweep_up(tmp_path):
    """The real commands: `sweep up`, two `sweep run`s that join it, `sweep down`."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "SWEEP_HOME": str(tmp_path / "home")}

    def sweep(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    assert ": up." in sweep("up", "--num-cpus", "2")
    head = ray_head.read_state(tmp_path / "home" / ray_head.STATE_NAME)
    try:
        for name in ("one", "two"):
            env["SWEEP_PHASE_LOG"] = str(tmp_path / f"{name}.jsonl")
            out = sweep("run", "edge-data-per-class", "--seeds", "1", "--set", "epochs=1", "--set", "data_per_class=10",
                        "--name", name, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                        "--storage-path", str(tmp_path / "rr"))
            assert "Ray: the head of `sweep up`" in out and "2/2 trials done" in out
            assert ray_head.is_alive(head)
            assert '"warm_driver"' in (tmp_path / f"{name}.jsonl").read_text()  # run by `sweep up`'s warm driver
    finally:
        out = sweep("down")
    assert "stopped" in out and not ray_head.is_alive(head)
