"""The MLflow tracking server: argv checks, then a real `mlflow server` on 127.0.0.1.

Each real server starts in ~5 s on an idle machine; every one is stopped by a context manager,
even when a test fails.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from cluster.infra import server as srv
from cluster.infra.server import TrackingServer, server_command
from core.errors import ConfigError


def _opts(argv: list[str]) -> dict[str, str | bool]:
    """`--flag value` pairs of an `mlflow server` argv (flags without a value map to True)."""
    args = argv[argv.index("server") + 1:]
    out: dict[str, str | bool] = {}
    for i, a in enumerate(args):
        if a.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            out[a] = nxt if nxt is not None and not nxt.startswith("--") else True
    return out


def test_default_command_binds_loopback_and_proxies_artifacts():
    argv = server_command()
    assert argv[:4] == [sys.executable, "-m", "mlflow", "server"]
    opts = _opts(argv)
    assert opts["--host"] == "127.0.0.1" and opts["--port"] == "5000"
    assert opts["--backend-store-uri"] == "sqlite:///mlflow.db"
    assert opts["--serve-artifacts"] is True and opts["--artifacts-destination"] == "./mlartifacts"
    assert "--app-name" not in opts


def test_team_settings_reach_the_command():
    argv = server_command("0.0.0.0", 8080, "postgresql+psycopg2://mlflow@db:5432/mlflow",
                          "s3://bucket/mlartifacts", app_name="basic-auth", workers=2,
                          allowed_hosts="mlflow.example.com")
    opts = _opts(argv)
    assert opts["--host"] == "0.0.0.0" and opts["--port"] == "8080"
    assert opts["--backend-store-uri"].startswith("postgresql+psycopg2://")
    assert opts["--artifacts-destination"] == "s3://bucket/mlartifacts"
    assert opts["--app-name"] == "basic-auth" and opts["--workers"] == "2"
    assert opts["--allowed-hosts"] == "mlflow.example.com"


@pytest.mark.parametrize("kwargs", [
    {}, dict(host="0.0.0.0", port=1, app_name="basic-auth", workers=3),
    dict(backend_store_uri="mysql://u@h/db", artifacts_destination="gs://b/a", allowed_hosts="a.b"),
])
def test_installed_mlflow_accepts_every_flag(kwargs):
    # Parse with MLflow's own click command: a flag renamed in a new MLflow fails here.
    from mlflow.cli import server as mlflow_server

    argv = server_command(**kwargs)
    ctx = mlflow_server.make_context("server", argv[4:])
    assert ctx.params["serve_artifacts"] is True
    assert ctx.params["port"] == kwargs.get("port", 5000)


@pytest.mark.parametrize("kwargs, named", [
    (dict(port=0), "port=0"), (dict(port=70000), "port=70000"), (dict(port="5000"), "'5000'"),
    (dict(port=True), "port=True"), (dict(host=""), "host=''"),
    (dict(host="http://0.0.0.0"), "http://0.0.0.0"), (dict(host="my host"), "'my host'"),
    (dict(backend_store_uri="file:///tmp/mlruns"), "file:///tmp/mlruns"),
    (dict(backend_store_uri="mlflow.db"), "'mlflow.db'"),
    (dict(backend_store_uri="mongodb://h/db"), "mongodb"),
    (dict(artifacts_destination="ftps://h/x"), "ftps"), (dict(artifacts_destination=" "), "' '"),
    (dict(app_name="oauth"), "oauth"), (dict(workers=0), "workers=0"),
    (dict(allowed_hosts=""), "allowed_hosts=''"),
])
def test_bad_settings_are_refused_naming_the_value(kwargs, named):
    with pytest.raises(ConfigError, match="allowed|must be|expected|use 127") as err:
        server_command(**kwargs)
    assert named in str(err.value)


def test_client_uri_and_loopback():
    assert srv.client_uri("127.0.0.1", 5000) == "http://127.0.0.1:5000"
    assert srv.client_uri("::1", 5000) == "http://[::1]:5000"
    assert srv.client_uri("0.0.0.0", 5000) == f"http://{socket.getfqdn()}:5000"
    assert srv.is_loopback("127.0.0.1") and srv.is_loopback("localhost") and srv.is_loopback("::1")
    assert not srv.is_loopback("0.0.0.0") and not srv.is_loopback("10.0.0.5")


def test_basic_auth_needs_a_secret_key():
    with pytest.raises(ConfigError, match="MLFLOW_FLASK_SERVER_SECRET_KEY"):
        srv.check_basic_auth_ready({})
    srv.check_basic_auth_ready({"MLFLOW_FLASK_SERVER_SECRET_KEY": "x" * 32})


# ---------------------------------------------------------------- real servers
def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        import base64
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def server():
    with TrackingServer() as s:
        yield s


@pytest.mark.cluster
def test_run_logged_over_http_survives_restart(server, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(server.uri)
    exp = client.create_experiment("server-test")
    run = client.create_run(exp, tags={"kind": "child"})
    rid = run.info.run_id
    client.log_param(rid, "lr", 0.01)
    for step in range(5):
        client.log_metric(rid, "val_acc", step / 10, step=step)
    art = tmp_path / "note.txt"
    art.write_text("proxied")
    client.log_artifact(rid, str(art))
    # Artifacts go through the server (mlflow-artifacts:/) into its destination directory.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = list((server.root / "mlartifacts").rglob("note.txt"))
    assert len(stored) == 1 and stored[0].read_text() == "proxied"

    server.stop()
    assert not server.healthy()
    with socket.socket() as s:  # nothing left listening on the port (no orphaned worker)
        assert s.connect_ex(("127.0.0.1", server.port)) != 0
    server.restart()
    assert server.healthy() and server.uri.endswith(f":{server.port}")
    client.log_metric(rid, "val_acc", 0.5, step=5)
    client.set_terminated(rid)
    got = client.get_run(rid)
    assert got.data.params == {"lr": "0.01"} and got.info.status == "FINISHED"
    hist = client.get_metric_history(rid, "val_acc")
    assert [(m.step, m.value) for m in hist] == [(i, i / 10) for i in range(6)]


@pytest.mark.cluster
@pytest.mark.slow
def test_start_failure_reports_the_log_and_leaves_nothing_running(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ts = TrackingServer(root=tmp_path, port=port, startup_timeout=60)
        with pytest.raises(RuntimeError, match="log tail") as err:
            ts.start()
    assert "address already in use" in str(err.value).lower() or "errno 98" in str(err.value).lower()
    assert ts.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(ts.proc.pid, 0)


@pytest.mark.cluster
def test_basic_auth_refuses_anonymous_and_accepts_env_credentials(monkeypatch):
    import mlflow

    with TrackingServer(app_name="basic-auth", admin_password="s3cret-Pass-123") as s:
        api = f"{s.uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(api) == 401
        assert _get(api, ("admin", "wrong-password")) == 401
        assert _get(api, ("admin", "s3cret-Pass-123")) == 200
        # The password reaches the server through its environment, never a file on disk.
        assert "s3cret" not in (s.root / "basic_auth.ini").read_text()

        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        anon = mlflow.MlflowClient(s.uri)
        with pytest.raises(mlflow.exceptions.MlflowException):
            anon.create_experiment("anonymous")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-Pass-123")
        client = mlflow.MlflowClient(s.uri)
        exp = client.create_experiment("authed")
        rid = client.create_run(exp).info.run_id
        client.log_metric(rid, "val_acc", 0.9)
        assert client.get_run(rid).data.metrics == {"val_acc": 0.9}


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_serve_runs_in_foreground_until_stopped(tmp_path, how):
    port = srv.free_port()
    code = textwrap.dedent(f"""
        from cluster.infra.server import serve
        raise SystemExit(serve(port={port}, backend_store_uri="sqlite:///{tmp_path}/mlflow.db",
                               artifacts_destination="{tmp_path}/mlartifacts", workers=1))
    """)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while _get_ok(f"http://127.0.0.1:{port}/health") is False:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.25)
        if how == "ctrl-c":  # the terminal signals the whole foreground group
            os.killpg(proc.pid, signal.SIGINT)
        else:  # `kill PID` (the Slurm recipe's cleanup): serve() must pass it on
            os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert f"--tracking-uri http://127.0.0.1:{port}" in out and "WARNING" not in out
        assert (tmp_path / "mlflow.db").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with pytest.raises(ProcessLookupError):  # uvicorn went down with it
        os.killpg(proc.pid, 0)


def _get_ok(url: str) -> bool:
    try:
        return _get(url) == 200
    except OSError:
        return False
