"""A real two-node Ray cluster on loopback, a real `mlflow server`, and the MLflow UI in Chromium.

The cluster is started the way a user (or the Slurm recipe) starts one by hand: `ray start
--head` plus `ray start --address`, each node declaring one logical GPU (there is no physical
one); then `sweep run ... --address 127.0.0.1:PORT` joins it from the project root, shipping
the code in Ray's runtime environment (README, "Run on a cluster", "An existing Ray cluster"). Only processes this module started are stopped (by process group and
by their temp dir), never `ray stop`: other people run Ray on this machine too.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

from cluster.infra.server import TrackingServer, free_port
from conftest import mlflow_runs

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXP, NAME = "edge-data-per-class", "multinode"
# --smoke: 2 pairings x 2 data sizes, x --seeds 2. Trials run 1000 epochs (10-20 s each under load) so all
# 8 are in flight together and Ray must place them on both nodes; 3-epoch trials finished so fast
# that reused actors on one node took every trial before the second node's workers were up.
EPOCHS, N_TRIALS = 1000, 8
GPU_SHARE = 0.25
SWEEP_TIMEOUT = 420  # ~70 s on an idle 2-core machine
CPUS_PER_NODE = 5  # more CPU slots than GPU shares, so the GPU is what limits a node to 4 trials
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _cluster_env(token: str) -> dict[str, str]:
    """Environment of every process of the test cluster and its driver.

    Token auth is on, with a token of our own: Ray 2.60 turns token auth on for `ray start --head`
    whenever ~/.ray/auth_token exists (any earlier local ray.init() writes one), so without an
    explicit mode and token the worker node would be refused or use someone else's token.
    """
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "CUDA_VISIBLE_DEVICES"):
        env.pop(key, None)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               RAY_DEDUP_LOGS="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", PYTHONUNBUFFERED="1")
    return env


def _own_pids(marker: str) -> list[int]:
    """Pids of live processes whose command line mentions `marker` (our unique temp dir)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM a process started in its own session, then SIGKILL its whole group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` drains its node and stops its processes
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left (agents, workers)
    except ProcessLookupError:
        pass
    proc.wait()


class RayCluster:
    """`ray start --head` and one `ray start --address` worker node on 127.0.0.1, 1 logical GPU each."""

    def __init__(self, n_nodes: int = 2):
        self.n_nodes = n_nodes
        # Short path: Ray's unix sockets live under it and must stay under ~107 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="raymn-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
        self.env = _cluster_env(generate_new_authentication_token())
        self.procs: list[subprocess.Popen] = []

    def _start_node(self, head: bool) -> None:
        argv = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
                f"--num-cpus={CPUS_PER_NODE}", "--num-gpus=1", f"--temp-dir={self.temp_dir}",
                # Every port this node binds is a free one: fixed defaults (8265, 52365) would
                # collide with other Ray clusters on this machine and with our other node.
                f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}"]
        if head:
            argv += ["--head", f"--port={self.port}", "--include-dashboard=false",
                     f"--dashboard-port={free_port()}"]
        else:
            argv += [f"--address={self.address}"]
        log = open(Path(self.temp_dir) / f"node{len(self.procs)}.log", "wb")
        with log:
            self.procs.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               cwd=self.temp_dir, start_new_session=True))

    def status(self) -> str:
        out = subprocess.run([str(BIN / "ray"), "status", f"--address={self.address}"], env=self.env,
                             capture_output=True, text=True, timeout=60)
        return out.stdout + out.stderr

    def start(self, timeout: float = 180.0) -> RayCluster:
        self._start_node(head=True)
        self._wait(lambda: "Ray runtime started" in self.log(0), timeout, "the head node")
        for _ in range(self.n_nodes - 1):
            self._start_node(head=False)
        want = f"0.0/{self.n_nodes}.0 GPU"
        self._wait(lambda: want in self.status(), timeout, f"{self.n_nodes} nodes with a GPU each")
        return self

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
            if dead:
                raise RuntimeError(f"ray node {dead[0]} exited while waiting for {what}:\n{self.log(dead[0])}")
            if ready():
                return
            time.sleep(1.0)
        raise RuntimeError(f"timed out waiting for {what}; head log:\n{self.log(0)}")

    def log(self, i: int, tail: int = 4000) -> str:
        try:
            return (Path(self.temp_dir) / f"node{i}.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the workers, then the head; kill anything left that ran from our temp dir."""
        try:
            for proc in reversed(self.procs):
                _stop_group(proc, timeout=45)
            for pid in _own_pids(self.temp_dir):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster(n_nodes=2)
    try:
        yield c.start()
    finally:
        c.close()


@pytest.fixture(scope="module")
def server():
    with TrackingServer() as s:
        yield s


@pytest.fixture(scope="module")
def sweep(cluster, server, tmp_path_factory):
    """`sweep run` with --address, as a subprocess from the project root (the code gets shipped)."""
    storage = tmp_path_factory.mktemp("shared") / "ray_results"  # on a real cluster: a shared filesystem
    argv = [str(BIN / "sweep"), "run", EXP, "--smoke", "--seeds", "2", "--set", f"epochs={EPOCHS}",
            "--gpus-per-trial", str(GPU_SHARE),
            "--address", cluster.address, "--storage-path", str(storage), "--tracking-uri", server.uri,
            "--name", NAME]
    log_path = storage.parent / "sweep.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:  # a file, not a pipe: nothing can block on a full pipe
        proc = subprocess.Popen(argv, cwd=ROOT, env={**cluster.env, "PYTHONFAULTHANDLER": "1"}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=SWEEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack into the log
        time.sleep(3)
        pytest.fail(f"sweep did not finish in {SWEEP_TIMEOUT} s; log tail:\n{log_path.read_text()[-6000:]}")
    finally:
        _stop_group(proc, timeout=10)
    out = log_path.read_text(errors="replace")
    return {"code": proc.returncode, "out": out, "storage": storage, "seconds": time.monotonic() - t0}


def _browser(argv: list[str], timeout: float = 120) -> str:
    """Run headless Chromium; its stdout. Its whole process group (renderers, zygotes) is killed after."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = ""
    finally:
        _stop_group(proc, timeout=5)
    return out


def _max_overlap(intervals: list[tuple[int, int]]) -> int:
    """Largest number of [start, end) intervals that hold at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # ends sort first
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_overlap_counter():
    assert _max_overlap([(0, 10), (5, 15), (10, 20)]) == 2
    assert _max_overlap([(0, 1), (1, 2)]) == 1
    assert _max_overlap([(0, 9)] * 5) == 5


@pytest.mark.cluster
@pytest.mark.slow
def test_sweep_on_two_gpu_nodes_succeeds(sweep):
    assert sweep["code"] == 0, sweep["out"][-4000:]
    meta = json.loads((sweep["storage"] / NAME / "sweep.json").read_text())
    assert meta["resources"] == {"cpu": 1.0, "gpu": GPU_SHARE} and meta["n_trials"] == N_TRIALS
    print(f"multi-node sweep of {N_TRIALS} trials: {sweep['seconds']:.1f} s")


@pytest.mark.cluster
@pytest.mark.slow
def test_trials_share_each_gpu_at_most_four_at_once_and_use_both_nodes(sweep, server):
    assert sweep["code"] == 0, sweep["out"][-4000:]
    _, children = mlflow_runs(server.uri, EXP)
    assert len(children) == N_TRIALS
    by_gpu: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for run in children:
        tags = run.data.tags
        # Ray assigned a (logical) GPU, CUDA is absent here, so the trial ran on the CPU.
        assert tags["gpu_ids"] == "0" and tags["device"] == "cpu", tags
        by_gpu[(tags["ray_node_id"], tags["gpu_ids"])].append((run.info.start_time, run.info.end_time))
    assert len(by_gpu) == 2, f"trials ran on {len(by_gpu)} node/GPU pairs, expected both nodes: {dict(by_gpu)}"
    overlap = {key[0][:8]: _max_overlap(iv) for key, iv in by_gpu.items()}
    assert all(n <= int(1 / GPU_SHARE) for n in overlap.values()), overlap
    assert max(overlap.values()) >= 2, overlap  # not vacuous: trials did share a GPU
    print(f"max concurrent trials per node GPU: {overlap}")


@pytest.mark.cluster
@pytest.mark.slow
def test_server_holds_the_parent_and_every_trial_with_complete_histories(sweep, server):
    from mlflow.tracking import MlflowClient

    assert sweep["code"] == 0, sweep["out"][-4000:]
    client = MlflowClient(server.uri)  # over HTTP, as the trials logged
    parents, children = mlflow_runs(server.uri, EXP)
    assert len(parents) == 1 and len(children) == N_TRIALS
    parent = parents[0]
    assert parent.data.tags["sweep"] == NAME and parent.info.status == "FINISHED"
    cells = {(c.data.tags["pairing"], c.data.params["data_per_class"], c.data.tags["seed"]) for c in children}
    assert len(cells) == N_TRIALS
    for run in children:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (key, steps)  # every epoch exactly once
        # Artifacts went through the server's proxy (--serve-artifacts), not a shared disk.
        assert "config.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.cluster
@pytest.mark.slow
def test_shipped_code_is_the_project_without_big_directories(sweep, cluster):
    assert sweep["code"] == 0, sweep["out"][-4000:]
    pkgs = [p for p in Path(cluster.temp_dir).glob("session_*/runtime_resources/working_dir_files/*") if p.is_dir()]
    assert pkgs, "no working_dir package was unpacked on the nodes"
    for pkg in pkgs:
        names = {p.name for p in pkg.iterdir()}
        assert {"trainables", "cluster", "search_spaces", "pyproject.toml"} <= names, names
        assert not names & {".venv", ".git", "mlruns", "mlflow.db", "ray_results", "data"}, names
        size = sum(f.stat().st_size for f in pkg.rglob("*") if f.is_file())
        assert size < 10 * 2**20, f"{pkg} is {size / 2**20:.1f} MiB"


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install -y chromium)")
def test_mlflow_ui_shows_the_experiment_in_a_browser(sweep, server, tmp_path):
    import numpy as np
    from mlflow.tracking import MlflowClient
    from PIL import Image

    exp_id = MlflowClient(server.uri).get_experiment_by_name(EXP).experiment_id
    # The experiment's runs table (its bare page opens MLflow 3's GenAI trace overview).
    url = f"{server.uri}/#/experiments/{exp_id}/runs"
    png = tmp_path / "experiment.png"
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--window-size=1400,900"]
    _browser(argv + [f"--screenshot={png}", url])
    assert png.exists(), "Chromium wrote no screenshot"
    assert png.stat().st_size > 20_000  # a blank 1400x900 PNG is a few KB
    pixels = np.asarray(Image.open(png).convert("L"))
    assert pixels.shape == (900, 1400) and pixels.std() > 5 and len(np.unique(pixels)) > 20
    dom = _browser(argv + ["--dump-dom", url])
    # The sweep's parent run is listed, with its trials (collapsed under it) counted.
    count = re.search(r"(\d+)\s*(?:</strong>)?\s*matching runs", dom)
    assert EXP in dom and NAME in dom and count and int(count.group(1)) == N_TRIALS + 1, dom[-3000:]
