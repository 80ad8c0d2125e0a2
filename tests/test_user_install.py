"""A user's own study from a fresh install: a new virtual environment with the project installed
from a wheel (not editable), a new folder holding only `my_study.py` (examples/my_study.py),
and `sweep run my_study.py:TINY --smoke` there: refusals as for built-ins, a sweep logged to
MLflow with the module recorded, a report; then the same through a two-node Ray cluster started
with `ray start` on 127.0.0.1, where the module is importable only from its folder (the workers
get it in Ray's runtime environment, `py_modules`).

The venv reuses the dependencies of the test's own interpreter through a .pth file (as
/work/wt/mkwt.sh layers worktree venvs), so nothing is downloaded; the project itself is only
in the venv's site-packages, from the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import mlflow_runs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_study.py"
EXP = "tiny-vs-simple-cnn"
N_SMOKE = 4  # 2 pairings x data_per_class [10] x 2 seeds (--smoke runs 2)


def _run(argv, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """bin/ of a fresh venv: the project from its wheel, dependencies from this interpreter's site dirs."""
    base = tmp_path_factory.mktemp("install")
    wheels, src = base / "wheels", base / "src"  # built from a copy: setuptools writes build/ into the source
    top = {".venv", ".git", "build", "ray_results", "mlartifacts", "reports", "data", ".sweep", "benchmarks"}
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n == "__pycache__" or n.endswith(".egg-info")
                                                        or (Path(d) == ROOT and (n in top or n.startswith("mlflow.db")))])
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                  str(src)], base, dict(os.environ), timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("*.whl")
    env_dir = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], base, dict(os.environ))
    assert made.returncode == 0, made.stderr
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "_deps.pth").write_text("\n".join(deps) + "\n")
    py = env_dir / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                      str(wheel)], base, dict(os.environ), timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    ray = env_dir / "bin" / "ray"
    ray.write_text(f"#!{py}\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n")
    ray.chmod(0o755)
    where = _run([str(py), "-c", "import cluster, trainables; print(cluster.__file__); print(trainables.__file__)"],
                 base, _env())
    assert where.returncode == 0, where.stderr
    assert all(str(site) in line for line in where.stdout.split()), where.stdout  # the wheel, not this checkout
    return env_dir / "bin"


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "RAY_ADDRESS",
                                                           "VIRTUAL_ENV")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", PYTHONUNBUFFERED="1", **extra)
    return env


def _folder(tmp_path: Path, name: str = "study") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLE, folder / "my_study.py")
    return folder


@pytest.mark.slow
def test_fresh_install_runs_my_study_with_the_refusals_of_builtins(venv, tmp_path):
    folder = _folder(tmp_path)
    sweep, env = str(venv / "sweep"), _env()
    listed = _run([sweep, "list", "models", "-m", "my_study.py"], folder, env)
    assert listed.returncode == 0, listed.stderr
    assert any("tiny_cnn" in line and "(from my_study.py)" in line for line in listed.stdout.splitlines())

    for argv, message in [
        (["--set", "hidden_dims=3"], "'hidden_dims' is not used by any pairing of tiny-vs-simple-cnn"),
        (["--set", "num_filtr=3"], "unknown config key 'num_filtr'. Did you mean 'num_filter'?"),
        (["--grid", "kernel_size=3,99"], "kernel_size must be in [1, 28], got 99"),
    ]:
        bad = _run([sweep, "run", "my_study.py:TINY", "--smoke", *argv], folder, env)
        assert bad.returncode == 2 and message in bad.stderr, (argv, bad.stderr)
    bad = _run([sweep, "run", "my_study.py:TINNY"], folder, env)
    assert bad.returncode == 2 and "defines no experiment 'TINNY' at module level; its experiments: TINY" in bad.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["my_study.py"]  # nothing created by a refused sweep

    t0 = time.monotonic()
    done = _run([sweep, "run", "my_study.py:TINY", "--smoke"], folder, env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"smoke sweep from the fresh install: {time.monotonic() - t0:.0f} s")
    uri = f"sqlite:///{folder}/mlflow.db"
    parents, children = mlflow_runs(uri, EXP)
    assert len(parents) == 1 and len(children) == N_SMOKE
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["pairing"] for c in children} == {"tiny_cnn/edges", "simple_cnn/edges"}
    (recorded,) = json.loads(parents[0].data.tags["user_modules"])
    assert recorded["name"] == "my_study" and recorded["path"] == str(folder / "my_study.py")
    import hashlib

    assert recorded["sha256"] == hashlib.sha256((folder / "my_study.py").read_bytes()).hexdigest()
    from mlflow.tracking import MlflowClient

    artifacts = [a.path for a in MlflowClient(uri).list_artifacts(parents[0].info.run_id, "sweep/user_modules")]
    assert artifacts == ["sweep/user_modules/my_study.py"]

    report = _run([sweep, "report", EXP], folder, env)
    assert report.returncode == 0, report.stderr
    assert list(folder.glob("reports/*/accuracy_vs_data.png")) and "note:" not in report.stderr

    # a changed module: the report says so, a resume is refused before Ray starts
    with open(folder / "my_study.py", "a") as f:
        f.write("\n# edited after the sweep\n")
    report = _run([sweep, "report", "my_study.py:TINY"], folder, env)
    assert report.returncode == 0 and "user module my_study.py" in report.stderr and "changed since" in report.stderr
    resumed = _run([sweep, "resume", parents[0].data.tags["sweep"]], folder, env)
    assert resumed.returncode == 2 and "changed since the sweep recorded it" in resumed.stderr, resumed.stderr


@pytest.mark.slow
def test_fresh_install_resumes_an_interrupted_sweep_of_my_model(venv, tmp_path):
    """`sweep resume` later, in a new driver: fresh workers load the recorded module again."""
    folder = _folder(tmp_path)
    sweep, uri = str(venv / "sweep"), f"sqlite:///{folder}/mlflow.db"
    failing = _run([sweep, "run", "my_study.py:TINY", "--smoke", "--seeds", "1", "--name", "tiny-fails",
                    "--set", "epochs=6", "--set", "checkpoint_every=1", "--set", "fail_at_epoch=4",
                    "--max-failures", "0"], folder, _env(SWEEP_ALLOW_FAULT_INJECTION="1"), timeout=900)
    assert failing.returncode == 1, failing.stdout[-3000:] + failing.stderr[-3000:]
    resumed = _run([sweep, "resume", "tiny-fails"], folder, _env(SWEEP_ALLOW_FAULT_INJECTION="1"), timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    runs = [c for c in mlflow_runs(uri, EXP)[1] if c.data.tags.get("sweep") == "tiny-fails"]
    assert len(runs) == 2 and {c.info.status for c in runs} == {"FINISHED"}
    assert {c.data.metrics["epochs_completed"] for c in runs} == {6.0}


@pytest.mark.slow
@pytest.mark.cluster
def test_my_study_on_a_two_node_ray_cluster_gets_the_module_through_py_modules(venv, tmp_path):
    """The driver runs in a folder where my_study.py is not importable by name (it sits in
    studies/), so Ray's workers can only get it from the runtime environment's py_modules."""
    import test_multinode as mn

    outer = tmp_path / "outer"
    folder = _folder(outer, "studies")
    old_bin = mn.BIN
    mn.BIN = venv  # `ray start` from the fresh install
    cluster = mn.RayCluster(n_nodes=2)
    try:
        cluster.start()
        env = {**_env(), **{k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}}
        uri = f"sqlite:///{outer}/mlflow.db"
        argv = [str(venv / "sweep"), "run", "studies/my_study.py:TINY", "--smoke", "--address", cluster.address,
                "--storage-path", str(outer / "ray_results"), "--tracking-uri", uri, "--name", "tiny-cluster"]
        done = _run(argv, outer, env, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "2 nodes" not in done.stderr
        parents, children = mlflow_runs(uri, EXP)
        assert len(children) == N_SMOKE and {c.info.status for c in children} == {"FINISHED"}
        assert all(c.data.tags.get("ray_node_id") for c in children)  # trained by the cluster's workers
        assert json.loads(parents[0].data.tags["user_modules"])[0]["path"] == str(folder / "my_study.py")
    finally:
        cluster.close()
        mn.BIN = old_bin
