"""Cluster recipes (cluster/recipes/) and README's "Run on a cluster" section agree with the code.

Each recipe is parsed; every command it runs or shows is parsed by the real tool's parser
(recipe_checks); ports, pins, names and images must match across files. The Slurm script
is executed for real against recording stand-ins for srun/ray/sweep.
"""
from __future__ import annotations

import configparser
import json
import os
import shlex
import signal
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ray = pytest.importorskip("ray", reason="checks recipes against Ray's own parsers")
import yaml  # noqa: E402
from recipe_checks import (RECIPES, ROOT, check_command, check_ray, comment_commands, doc_commands,
                           find_key, load_k8s, parse_sweep)

from cluster.infra.server import DEFAULT_PORT

GCS_PORT, CLIENT_PORT = 6379, 10001
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pin(name: str) -> str:
    dep = next(d for d in PYPROJECT["project"]["dependencies"] if d.split("[")[0].split("=")[0] == name)
    return dep.split("==")[1]


def _ray_cmds(commands: list[str]) -> list[list[str]]:
    """`ray ...` argv of each `;`/`&&`-separated part of shell command lines."""
    out = []
    for line in commands:
        for part in line.replace("&&", ";").replace("||", ";").split(";"):
            argv = shlex.split(part)
            if argv[:1] == ["ray"]:
                out.append(argv[1:])
    return out


# ---------------------------------------------------------------- Dockerfile
def test_dockerfile_installs_this_project_with_the_pinned_stack():
    lines = [ln.strip() for ln in (RECIPES / "Dockerfile").read_text().splitlines()]
    instr = [ln for ln in lines if ln and not ln.startswith("#")]
    assert instr[0] == "FROM python:3.11-slim"
    runs = " ".join(ln for ln in instr if ln.startswith("RUN"))
    assert f'"torch=={_pin("torch")}"' in runs and f'"torchvision=={_pin("torchvision")}"' in runs
    assert f'"ray[default]=={_pin("ray")}"' in runs
    assert instr.index("COPY . .") < instr.index(next(i for i in instr if i.startswith("RUN pip install .")))
    assert PYPROJECT["project"]["scripts"]["sweep"] == "cluster.cli:main"
    assert json.loads(next(i for i in instr if i.startswith("ENTRYPOINT")).split(None, 1)[1]) == ["sweep"]
    parse_sweep(json.loads(next(i for i in instr if i.startswith("CMD")).split(None, 1)[1]))
    exposed = {int(p) for i in instr if i.startswith("EXPOSE") for p in i.split()[1:]}
    assert {DEFAULT_PORT, GCS_PORT, CLIENT_PORT} <= exposed
    assert any(i.startswith("USER") and "root" not in i for i in instr), "run as non-root"


def test_dockerignore_keeps_every_package_and_drops_the_venv():
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".venv", ".git", "mlflow.db", "mlartifacts"} <= ignored
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        pkg = pattern.rstrip("*")
        assert (ROOT / pkg / "__init__.py").is_file() and pkg not in ignored


# ---------------------------------------------------------------- Ray cluster launcher
def test_ray_cluster_launcher_config():
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    cfg = yaml.safe_load((RECIPES / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(cfg))  # Ray's own schema and defaults
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert any(v["resources"].get("GPU", 0) >= 1 for v in workers.values())
    for w in workers.values():
        assert 0 <= w["min_workers"] <= w["max_workers"] <= cfg["max_workers"]
    # The synced repository root is what every node installs (editable).
    (dest,) = [d for d, src in cfg["file_mounts"].items() if src == "."]
    assert any("pip install" in c and f"-e {dest}" in c for c in cfg["setup_commands"])
    assert any(f'"ray[default]=={ray.__version__}"' in c for c in cfg["setup_commands"])

    head = {a.split("=")[0]: a.partition("=")[2] for argv in _ray_cmds(cfg["head_start_ray_commands"])
            for a in argv if a.startswith("--")}
    assert head["--port"] == str(GCS_PORT) and head["--ray-client-server-port"] == str(CLIENT_PORT)
    assert head["--dashboard-host"] == "127.0.0.1"
    assert any(f"--address=$RAY_HEAD_IP:{GCS_PORT}" in argv for argv in _ray_cmds(cfg["worker_start_ray_commands"]))
    for argv in _ray_cmds(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]):
        check_ray(argv)

    (server_line,) = [c for c in cfg["head_start_ray_commands"] if "sweep server" in c]
    argv = shlex.split(server_line.split("||")[1].split("<")[0])
    assert argv[0] == "nohup" and parse_sweep(argv[2:]).port == DEFAULT_PORT
    assert any(f":{DEFAULT_PORT}\" >> ~/.bashrc" in c for c in cfg["head_setup_commands"])


@pytest.mark.parametrize("recipe", ["ray-cluster.yaml", "kuberay-rayjob.yaml", "slurm-sweep.sbatch",
                                    "Dockerfile"])
def test_commands_in_recipe_comments_are_accepted(recipe):
    cmds = comment_commands(RECIPES / recipe)
    assert cmds, f"{recipe} shows no usage command"
    tools = [check_command(c) for c in cmds]
    if recipe == "ray-cluster.yaml":
        assert {"ray"} == set(tools) and any(c.startswith("ray job submit") for c in cmds)


# ---------------------------------------------------------------- KubeRay
def test_kuberay_rayjob_agrees_with_the_code():
    k8s = load_k8s()
    job = k8s["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__
    entry = shlex.split(job["spec"]["entrypoint"])
    assert entry[0] == "sweep"
    args = parse_sweep(entry[1:])
    assert args.command == "run" and args.address == "auto" and not args.ship_code  # --no-ship-code

    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {GCS_PORT, CLIENT_PORT} <= {p["containerPort"] for p in head["ports"]}
    groups = spec["workerGroupSpecs"]
    assert groups and all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in groups)
    containers = [head] + [c for g in groups for c in g["template"]["spec"]["containers"]]
    for g in groups:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    # Every pod runs the same image and logs to the tracking server the sweep names.
    deploy = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {c["image"] for c in containers + [deploy]} == {head["image"]}
    for c in containers:
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["MLFLOW_TRACKING_URI"] == args.tracking_uri
        assert "MLFLOW_TRACKING_PASSWORD" in env and env["MLFLOW_TRACKING_PASSWORD"] is None  # from a Secret
    uri = urlsplit(args.tracking_uri)
    assert uri.hostname == k8s["Service"]["metadata"]["name"]
    assert uri.port == DEFAULT_PORT == k8s["Service"]["spec"]["ports"][0]["port"]
    assert deploy["ports"][0]["containerPort"] == DEFAULT_PORT


def test_kuberay_tracking_server_settings():
    k8s = load_k8s()
    deploy = k8s["Deployment"]["spec"]["template"]["spec"]
    srv = parse_sweep(deploy["containers"][0]["args"])
    assert srv.command == "server" and srv.host == "0.0.0.0" and srv.app_name == "basic-auth"
    mounts = {m["name"]: m["mountPath"] for m in deploy["containers"][0]["volumeMounts"]}
    assert srv.backend_store_uri == f"sqlite:///{mounts['store']}/mlflow.db"
    env = {e["name"]: e for e in deploy["containers"][0]["env"]}
    assert {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= set(env)
    ini = configparser.ConfigParser()
    ini.read_string(k8s["ConfigMap"]["data"]["basic_auth.ini"])
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == f"{mounts['auth-config']}/basic_auth.ini"
    assert ini["mlflow"]["database_uri"].startswith(f"sqlite:///{mounts['store']}/")
    assert "admin_password" not in ini["mlflow"]  # the password lives in the Secret only
    assert len(find_key(k8s, "secretKeyRef")) == 4


@pytest.mark.cluster
@pytest.mark.slow
def test_kuberay_allowed_hosts_accept_the_service_name_only():
    from cluster.infra.server import TrackingServer

    env = {e["name"]: e.get("value") for e in
           load_k8s()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]

    def status(server, path, host):
        req = urllib.request.Request(server.uri + path, headers={"Host": host})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    with TrackingServer(env={"MLFLOW_SERVER_ALLOWED_HOSTS": allowed}) as s:
        api = "/api/2.0/mlflow/experiments/search?max_results=1"
        assert status(s, api, f"mlflow:{DEFAULT_PORT}") == 200
        assert status(s, api, f"localhost:{s.port}") == 200  # kubectl port-forward
        assert status(s, api, "evil.example.com") == 403
        assert status(s, "/health", "10.1.2.3:5000") == 200  # kubelet probes by pod IP


# ---------------------------------------------------------------- Slurm
SHIM = r'''#!{python}
import json, os, signal, sys, time
name, argv = os.path.basename(sys.argv[0]), sys.argv[1:]
log = os.environ["SHIM_LOG"]
def record(**kw):
    with open(log, "a") as f:
        f.write(json.dumps(dict(tool=name, argv=argv, pid=os.getpid(), **kw)) + "\n")
def block():
    signal.signal(signal.SIGTERM, lambda *_: (record(event="stopped"), sys.exit(0)))
    for _ in range(600):  # never outlive a broken test by more than a minute
        time.sleep(0.1)
record(event="call")
if name == "scontrol":
    print("node1\nnode2")
elif name == "hostname":
    print("10.0.0.1")
elif name == "srun":
    i = 0
    while argv[i].startswith("-"):
        i += 1 if "=" in argv[i] or argv[i] in ("--overlap",) else 2
    os.execvp(argv[i], argv[i:])
elif name == "ray" and argv[0] == "start" and "--block" in argv:
    block()
elif name == "python":  # the script's "how many Ray nodes are alive" probe
    events = [json.loads(l) for l in open(log)]
    started = {e["pid"] for e in events if e["tool"] == "ray" and e["event"] == "call"}
    stopped = {e["pid"] for e in events if e["event"] == "stopped"}
    print(len(started - stopped))
elif name == "sweep" and argv[0] == "server":
    block()
elif name == "sweep":
    sys.exit(int(os.environ.get("SWEEP_EXIT", "0")))
'''


def _run_sbatch(tmp_path: Path, sweep_exit: int, *extra: str):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{venv}/bin:$PATH"\n')
    for tool in ("scontrol", "srun", "ray", "sweep", "python", "curl", "hostname"):
        shim = venv / "bin" / tool
        shim.write_text(SHIM.replace("{python}", sys.executable))
        shim.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLFLOW_"))}
    env.update(SHIM_LOG=str(log), VENV=str(venv), SHARED_DIR=str(tmp_path / "shared"),
               SLURM_JOB_NODELIST="node[1-2]", SLURM_JOB_ID="42", SLURM_CPUS_PER_TASK="8",
               SLURM_GPUS_PER_TASK="1", SWEEP_EXIT=str(sweep_exit))
    out = tmp_path / "sbatch.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(["bash", str(RECIPES / "slurm-sweep.sbatch"), *extra], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=60)
    finally:  # whatever the script left running (it should leave nothing) goes with its group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    proc.stderr = out.read_text()
    return proc, [json.loads(line) for line in log.read_text().splitlines()]


def test_sbatch_header_and_syntax():
    text = (RECIPES / "slurm-sweep.sbatch").read_text()
    subprocess.run(["bash", "-n", str(RECIPES / "slurm-sweep.sbatch")], check=True)
    opts = dict(ln.split()[1].lstrip("-").split("=", 1) for ln in text.splitlines() if ln.startswith("#SBATCH"))
    assert int(opts["nodes"]) >= 2 and int(opts["gpus-per-task"]) >= 1 and int(opts["ntasks-per-node"]) == 1
    assert "trap cleanup EXIT" in text


@pytest.mark.parametrize("sweep_exit", [0, 3])
def test_sbatch_starts_ray_runs_the_sweep_and_always_stops(tmp_path, sweep_exit):
    proc, calls = _run_sbatch(tmp_path, sweep_exit, "--smoke")
    assert proc.returncode == sweep_exit, proc.stderr
    ray_starts = [c for c in calls if c["tool"] == "ray" and c["event"] == "call"]
    srun_nodes = [c["argv"][c["argv"].index("-w") + 1] for c in calls if c["tool"] == "srun"]
    assert srun_nodes == ["node1", "node2"] and len(ray_starts) == 2
    head, worker = (c["argv"] for c in ray_starts)
    for argv in (head, worker):
        check_ray(argv)  # every flag is one `ray start` accepts
        assert "--num-gpus=1" in argv and "--num-cpus=8" in argv
    assert {"--head", f"--port={GCS_PORT}", f"--ray-client-server-port={CLIENT_PORT}",
            "--dashboard-host=127.0.0.1", "--node-ip-address=10.0.0.1"} <= set(head)
    assert f"--address=10.0.0.1:{GCS_PORT}" in worker

    sweeps = {c["argv"][0]: c for c in calls if c["tool"] == "sweep" and c["event"] == "call"}
    server = parse_sweep(sweeps["server"]["argv"])
    assert server.port == DEFAULT_PORT and server.backend_store_uri.startswith(f"sqlite:///{tmp_path}")
    run = parse_sweep(sweeps["run"]["argv"])
    assert run.address == "auto" and run.smoke and run.gpus_per_trial == 0.25
    assert run.tracking_uri == f"http://10.0.0.1:{DEFAULT_PORT}"
    assert run.storage_path.startswith(str(tmp_path / "shared"))
    # The trap stopped both Ray nodes and the tracking server, whatever the sweep returned.
    stopped = {c["pid"] for c in calls if c.get("event") == "stopped"}
    assert {c["pid"] for c in ray_starts} | {sweeps["server"]["pid"]} == stopped


# ---------------------------------------------------------------- docs
def test_every_command_in_the_cluster_docs_is_accepted():
    cmds = doc_commands(ROOT / "README.md", section="Run on a cluster")
    tools = {check_command(c) for c in cmds}
    assert {"sweep", "ray", "kubectl", "sbatch", "docker"} <= tools
    runs = [c for c in cmds if c.startswith("sweep run") or "-- sh -c 'sweep run" in c]
    assert any("--address auto" in c for c in runs) and any("ray://" in c for c in runs)
