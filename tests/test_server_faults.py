"""A tracking server that answers slowly or stops half-way (issue 24, case 3): loopback servers
that trickle bytes, accept and stay silent, or answer MLflow's first probes and then hang. Each
`sweep results` ends within a bounded time, exit 2 (probe) or 1 (a request that timed out after
its retries), one line, no traceback."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from cluster.cli import main


class Loopback:
    """A TCP server on 127.0.0.1 handling each connection with `handler(conn)` in a thread."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.handler = handler
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            self.handler(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.stop.set()
        self.sock.close()
        self.thread.join(2)


def _request_line(conn) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def trickle(conn, stop):
    _request_line(conn)
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000:
        if stop.wait(0.5):
            return
        conn.sendall(bytes([byte]))


def silent(conn, stop):
    _request_line(conn)
    stop.wait(60)


def imitator(conn, stop):
    """Answers /health and get-by-name like MLflow, then hangs on every other request."""
    line = _request_line(conn)
    if "/health" in line:
        body = b"OK"
    elif "get-by-name" in line:
        body = json.dumps({"experiment": {"experiment_id": "0", "name": "Default"}}).encode()
    else:
        stop.wait(60)
        return
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


@pytest.mark.parametrize("handler, code, needle", [
    (trickle, 2, "did not answer within 2 s"),
    (silent, 2, "did not answer within 2 s"),
    (imitator, 1, "stopped:"),
], ids=["trickle", "silent", "imitator"])
def test_slow_or_stalled_server_ends_in_bounded_time(handler, code, needle, monkeypatch, capsys):
    from cluster.infra import tracking

    monkeypatch.setattr(tracking, "PROBE_DEADLINE", 2.0)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = Loopback(handler)
    try:
        t = time.monotonic()
        assert main(["results", "--sweep", "x", "--tracking-uri", server.uri]) == code
        elapsed = time.monotonic() - t
    finally:
        server.close()
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert elapsed < 40, elapsed


def test_driver_defaults_bound_mlflow_requests(monkeypatch):
    import os

    from cluster import cli

    seen = {}
    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setitem(cli.COMMANDS, "list", lambda args: seen.update(os.environ) or 0)
    assert main(["list"]) == 0
    assert seen["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "20" and seen["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # the caller's environment is left as it was
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    assert main(["list"]) == 0 and seen["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


@pytest.mark.parametrize("path", ["a?mode=ro/mlflow.db", "a#b/mlflow.db", "a%3Fb/mlflow.db"])
def test_sqlite_path_characters_the_uri_cannot_carry(tmp_path, path, capsys):
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    assert main(["results", "--sweep", "x", "--tracking-uri", f"sqlite:///{tmp_path / path}"]) == 2
    err = capsys.readouterr().err
    assert "cannot carry" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.db"))
