"""The MLflow tracking server: the `mlflow server` command line, `sweep server`, and a test server.

Every trial, on any node, logs to one tracking server over HTTP. For one machine the defaults
(SQLite file + local artifact directory, bound to loopback) need nothing else; a team points
`--backend-store-uri` at PostgreSQL and `--artifacts-destination` at an object store.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_BACKEND_STORE_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS_DESTINATION = "./mlartifacts"

# SQLAlchemy dialects MLflow's SQL store supports; "+driver" suffixes (postgresql+psycopg2) allowed.
BACKEND_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# Artifact repositories MLflow registers for these URI schemes (a plain path means local).
ARTIFACT_SCHEMES = ("file", "s3", "gs", "wasbs", "abfss", "r2", "b2", "hdfs", "viewfs",
                    "sftp", "ftp", "dbfs")
APP_NAMES = ("basic-auth",)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _check_host(host: object) -> str:
    ok = isinstance(host, str) and bool(host)
    if ok:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            ok = bool(_HOSTNAME.match(host))
    if not ok:
        raise ConfigError(f"host={host!r} is not a host name or IP address (no scheme, port or "
                          f"path); use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
    return host


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port={port!r} is not a TCP port; allowed: an integer in 1..65535")
    return port


def _check_backend(uri: object) -> str:
    scheme = urlsplit(uri).scheme if isinstance(uri, str) else ""
    dialect = scheme.split("+", 1)[0]
    if dialect not in BACKEND_SCHEMES or "://" not in uri:
        raise ConfigError(
            f"backend_store_uri={uri!r} is not a supported database URI; allowed schemes: "
            f"{', '.join(BACKEND_SCHEMES)} (optionally with +driver), e.g. sqlite:///mlflow.db "
            f"or postgresql://user@db-host:5432/mlflow")
    return uri


def _check_artifacts(dest: object) -> str:
    if not isinstance(dest, str) or not dest.strip():
        raise ConfigError(f"artifacts_destination={dest!r} must be a directory or a URI with one "
                          f"of the schemes {', '.join(ARTIFACT_SCHEMES)}")
    scheme = urlsplit(dest).scheme
    # One-letter "schemes" are Windows drive letters, i.e. local paths.
    if len(scheme) > 1 and scheme not in ARTIFACT_SCHEMES:
        raise ConfigError(f"artifacts_destination={dest!r} has unsupported scheme {scheme!r}; "
                          f"allowed: a local directory or {', '.join(ARTIFACT_SCHEMES)}")
    return dest


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                   backend_store_uri: str = DEFAULT_BACKEND_STORE_URI,
                   artifacts_destination: str = DEFAULT_ARTIFACTS_DESTINATION,
                   app_name: str | None = None, workers: int | None = None,
                   allowed_hosts: str | None = None) -> list[str]:
    """Build the `mlflow server` argv for these settings.

    Artifacts are always proxied (`--serve-artifacts`), so clients on other nodes need only
    the server's URL, never direct access to the artifact store.

    Args:
        host: interface to bind; 127.0.0.1 keeps the server private to this machine.
        port: TCP port (1..65535).
        backend_store_uri: run metadata database (sqlite, postgresql, mysql, mssql).
        artifacts_destination: local directory or object-store URI (s3://, gs://, ...).
        app_name: None for the open server, "basic-auth" for MLflow's username/password app.
        workers: uvicorn worker processes (MLflow's default is 4).
        allowed_hosts: comma-separated Host headers to accept, needed only when clients reach
            the server by a public DNS name (MLflow accepts localhost and private IPs).

    Returns:
        The argv list, starting with this interpreter (`python -m mlflow server ...`).

    Raises:
        ConfigError: a value is out of range or names an unsupported scheme or app.
    """
    argv = [sys.executable, "-m", "mlflow", "server",
            "--host", _check_host(host), "--port", str(_check_port(port)),
            "--backend-store-uri", _check_backend(backend_store_uri),
            "--serve-artifacts", "--artifacts-destination", _check_artifacts(artifacts_destination)]
    if app_name is not None:
        if app_name not in APP_NAMES:
            raise ConfigError(f"app_name={app_name!r} is not an MLflow server app; "
                              f"allowed: {', '.join(APP_NAMES)} (or none)")
        argv += ["--app-name", app_name]
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers={workers!r} must be an integer >= 1")
        argv += ["--workers", str(workers)]
    if allowed_hosts is not None:
        if not isinstance(allowed_hosts, str) or not allowed_hosts.strip():
            raise ConfigError(f"allowed_hosts={allowed_hosts!r} must be a comma-separated list "
                              f"of host names, e.g. mlflow.example.com,10.0.0.5:5000")
        argv += ["--allowed-hosts", allowed_hosts]
    return argv


def check_basic_auth_ready(env: dict[str, str] | None = None) -> None:
    """Fail early, with the fix, when the basic-auth app cannot start.

    Raises:
        ConfigError: Flask-WTF is missing or MLFLOW_FLASK_SERVER_SECRET_KEY is unset.
    """
    env = os.environ if env is None else env
    if importlib.util.find_spec("flask_wtf") is None:
        raise ConfigError("app_name='basic-auth' needs Flask-WTF: pip install 'mlflow[auth]'")
    if not env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        raise ConfigError("app_name='basic-auth' needs MLFLOW_FLASK_SERVER_SECRET_KEY set to a "
                          "random string (the same on every server instance), e.g. "
                          "export MLFLOW_FLASK_SERVER_SECRET_KEY=$(python -c "
                          "'import secrets; print(secrets.token_hex(32))')")


def client_uri(host: str, port: int) -> str:
    """The URL clients pass as --tracking-uri for a server bound to `host`:`port`."""
    if host in ("0.0.0.0", "::"):  # bound everywhere: other nodes reach it by this machine's name
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          backend_store_uri: str = DEFAULT_BACKEND_STORE_URI,
          artifacts_destination: str = DEFAULT_ARTIFACTS_DESTINATION,
          app_name: str | None = None, workers: int | None = None,
          allowed_hosts: str | None = None) -> int:
    """Run `mlflow server` in the foreground until it exits or Ctrl-C (what `sweep server` does).

    Args: as for `server_command`.

    Returns:
        The server's exit status (0 after Ctrl-C).

    Raises:
        ConfigError: a bad setting, or basic-auth requested without its prerequisites.
    """
    argv = server_command(host, port, backend_store_uri, artifacts_destination,
                          app_name, workers, allowed_hosts)
    if app_name == "basic-auth":
        check_basic_auth_ready()
    url = client_uri(host, port)
    print(f"MLflow tracking server: {url}  (UI and REST API)")
    print(f"  runs  -> {backend_store_uri}\n  files -> {artifacts_destination}")
    print(f"Pass it to sweeps:  sweep run EXPERIMENT --tracking-uri {url}")
    if not is_loopback(host):
        print(f"WARNING: bound to {host}: anyone who can reach port {port} can "
              + ("log in with a valid user." if app_name else
                 "read and write runs. Use --app-name basic-auth or a firewall."), file=sys.stderr)
    proc = subprocess.Popen(argv)
    # `kill PID` (batch scripts, process managers) must not orphan the server: pass it on.
    previous = signal.signal(signal.SIGTERM, lambda signum, _: proc.send_signal(signum))
    try:
        code = proc.wait()
        return 0 if code == -signal.SIGTERM else code
    except KeyboardInterrupt:
        # The terminal already sent SIGINT to the whole foreground group; just let it finish.
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TrackingServer:
    """A real `mlflow server` on 127.0.0.1 in a temp dir, for tests and benchmarks.

    Use as a context manager: the server (and every process it spawned) is stopped on exit,
    even when the body raises. `restart()` brings it back on the same port and store, for
    outage tests.

    Args:
        root: directory for the database, artifacts and log; a fresh temp dir (removed on
            exit) when None.
        port: port to bind; a free one when None.
        app_name: "basic-auth" to require credentials (admin user/password below).
        admin_username, admin_password: the basic-auth admin created on first start (random
            password when None; read it from `.admin_password`).
        startup_timeout: seconds to wait for GET /health before giving up.
        env: extra environment for the server (e.g. MLFLOW_SERVER_ALLOWED_HOSTS).
    """

    def __init__(self, root: str | Path | None = None, port: int | None = None,
                 app_name: str | None = None, admin_username: str = "admin",
                 admin_password: str | None = None, startup_timeout: float = 90.0,
                 env: dict[str, str] | None = None):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="mlflow-server-") if root is None else root)
        self.host = DEFAULT_HOST
        self.port = free_port() if port is None else _check_port(port)
        self.app_name = app_name
        self.admin_username = admin_username
        self.admin_password = admin_password or secrets.token_urlsafe(16)
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        """The tracking URI clients use (http://127.0.0.1:PORT)."""
        return f"http://{self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        # The job runner serves GenAI scorers; sweeps never use it and it costs a process.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        env.update(self.extra_env)
        if self.app_name == "basic-auth":
            ini = self.root / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{self.root / 'basic_auth.db'}\n"
                f"admin_username = {self.admin_username}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
            # The password travels in the environment only, never in a file.
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini),
                       MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,
                       MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32))
        return env

    def start(self) -> TrackingServer:
        """Start the server and wait until GET /health answers.

        Raises:
            ConfigError: basic-auth asked for without Flask-WTF installed.
            RuntimeError: the server exited or did not answer in time (message has its log).
        """
        if self.proc is not None and self.proc.poll() is None:
            return self
        argv = server_command(self.host, self.port, f"sqlite:///{self.root / 'mlflow.db'}",
                              str(self.root / "mlartifacts"), self.app_name, workers=1)
        env = self._env()
        if self.app_name == "basic-auth":
            check_basic_auth_ready(env)
        with open(self.log_path, "ab") as log:
            # Own session: stop() signals the whole group, uvicorn workers included.
            self.proc = subprocess.Popen(argv, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode} before "
                                   f"answering /health; log tail:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server on {self.uri} did not answer /health within "
                           f"{self.startup_timeout:.0f} s; log tail:\n{self.log_tail()}")

    def healthy(self, timeout: float = 1.0) -> bool:
        """Whether GET /health answers 200 now."""
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and all its processes: SIGTERM, then SIGKILL after `timeout` s."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if self._group_gone(pgid, wait):
                break
        self.proc.wait()

    def _group_gone(self, pgid: int, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.proc.poll()  # reap our child, or its zombie keeps the group alive
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    def restart(self) -> TrackingServer:
        """Stop, then start again on the same port with the same store."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> TrackingServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and remove its temp dir (only if this object created it)."""
        try:
            self.stop()
        finally:
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)
