"""The driver's MLflow relay: trials on the driver's machine log through the driver.

Importing MLflow and its SQLAlchemy store costs a trial process about 1.3 s of CPU, more than a
tiny trial's whole training, and it is paid again by every trial process of every sweep. The
driver has MLflow imported anyway. So the driver serves `MlflowOps` (trainables.tracking) on a
Unix socket, and a trial on the same machine makes the very same calls through it:

- the same calls in the same order, each one answered before the trial goes on (a flush returns
  once the driver's `log_batch` has returned), so buffering, checkpoints, retries, restarts and
  failures keep their rules (trainables.tracking.TrialRun);
- the trial never imports MLflow; the driver's writes go to the store from one process (sqlite
  writers of one sweep no longer lock each other);
- only plain values cross (strings, numbers, tuples, PreviousRun); an MLflow error comes back as
  `RelayError` (retried like any failed call), a bad call (ConfigError, TypeError) as ConfigError
  (not retried);
- the socket lies in a fresh private directory (mode 0700) and every connection is authenticated
  with a random key (multiprocessing.connection's HMAC challenge) before anything is unpickled;
  the key travels with the TrackingInfo through Ray's object store, never in a log;
- a trial on another machine (its socket path does not exist there), or a platform without Unix
  sockets, imports MLflow and makes the calls itself, as before.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from typing import Any

from core.errors import ConfigError

OPS = ("find_run", "create_run", "reopen_run", "last_step", "log_batch", "set_terminated", "log_artifact_bytes")
AVAILABLE = hasattr(socket, "AF_UNIX")


class RelayError(RuntimeError):
    """The driver's MLflow call failed (an outage, a locked store): the trial retries it."""


class RelayOps:
    """The trial's side: MlflowOps' methods, made by the driver. One connection per process,
    opened on first use and again after a failure."""

    _lock = threading.Lock()
    _connections: dict[str, Any] = {}

    def __init__(self, address: str, key: bytes):
        self.address, self.key = address, key

    def _call(self, op: str, *args, **kwargs):
        from multiprocessing.connection import Client

        with self._lock:
            conn = self._connections.get(self.address)
            try:
                if conn is None:
                    conn = self._connections[self.address] = Client(self.address, family="AF_UNIX", authkey=self.key)
                conn.send((op, args, kwargs))
                kind, value = conn.recv()
            except (OSError, EOFError) as exc:  # the driver is gone or stopping: TrialRun retries, then fails
                self._connections.pop(self.address, None)
                if conn is not None:
                    conn.close()
                raise RelayError(f"the sweep's driver does not answer on its MLflow relay ({exc})") from exc
        if kind == "ok":
            return value
        if kind == "bad":
            raise ConfigError(value)
        raise RelayError(value)


def _forwarded(op: str):
    """RelayOps' method for one call of OPS: its arguments go to the driver's MlflowOps method of that name."""

    def call(self, *args, **kwargs):
        return self._call(op, *args, **kwargs)

    call.__name__, call.__qualname__ = op, f"RelayOps.{op}"
    call.__doc__ = f"`MlflowOps.{op}`, made by the driver."
    return call


for _op in OPS:  # one list: what the relay serves is what its client offers
    setattr(RelayOps, _op, _forwarded(_op))


def relay_ops(address: str, key: bytes) -> RelayOps | None:
    """The relay's calls when its socket is on this machine; None elsewhere (log directly)."""
    if not AVAILABLE or not os.path.exists(address):
        return None
    return RelayOps(address, key)


class Relay:
    """The driver's side: serves MlflowOps(tracking_uri) to the trials until closed.

    Use as a context manager; `endpoint` is what TrackingInfo.relay carries. Calls are made one
    at a time (one writer), each in the thread of the trial process's connection.
    """

    def __init__(self, tracking_uri: str):
        from multiprocessing.connection import Listener

        from trainables.tracking import MlflowOps

        self.ops = MlflowOps(tracking_uri)
        self.folder = tempfile.mkdtemp(prefix="sweep-mlflow-relay-")  # mode 0700: only this user
        self.key = os.urandom(32)
        self.address = os.path.join(self.folder, "socket")
        self.listener = Listener(self.address, family="AF_UNIX", authkey=self.key)
        self.closed = False
        self._write = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="sweep-mlflow-relay", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> tuple[str, bytes]:
        return self.address, self.key

    def _accept(self) -> None:
        from multiprocessing import AuthenticationError

        while not self.closed:
            try:
                conn = self.listener.accept()
            except AuthenticationError:
                continue  # a client without the key gets nothing
            except OSError:
                return  # closed
            if self.closed:
                conn.close()
                return
            threading.Thread(target=self._serve, args=(conn,), name="sweep-mlflow-relay-conn", daemon=True).start()

    def _serve(self, conn) -> None:
        while True:
            try:
                op, args, kwargs = conn.recv()
            except Exception:  # noqa: BLE001 - the trial went away (EOF, OSError) or sent no call: unpicklable, not a triple
                conn.close()
                return
            reply = self._call(op, args, kwargs)
            try:
                conn.send(reply)
            except Exception:  # noqa: BLE001 - the trial hung up before its answer (or the answer would not pickle)
                conn.close()
                return

    def _call(self, op: str, args: tuple, kwargs: dict) -> tuple[str, Any]:
        if op not in OPS:
            return "bad", f"the MLflow relay has no call {op!r}"
        with self._write:
            if self.closed:  # the sweep ended or was stopped: nothing is written after that
                return "error", "the sweep's driver has closed its MLflow relay"
            try:
                return "ok", getattr(self.ops, op)(*args, **kwargs)
            except (ConfigError, TypeError) as exc:
                return "bad", f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - every store error goes back to the trial, which retries
                return "error", f"MLflow call {op} failed in the driver: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Stop serving: no call is made after this returns (a trial still connected gets an error,
        and retries until its retry time runs out); each connection's thread ends when its trial
        process closes it."""
        with self._write:
            if self.closed:
                return
            self.closed = True
        from multiprocessing.connection import Client

        try:  # wake the accept() blocked in the serving thread
            Client(self.address, family="AF_UNIX", authkey=self.key).close()
        except OSError:
            pass
        try:
            self.listener.close()  # unlinks the socket file
        except FileNotFoundError:
            pass  # a /tmp cleaner removed the folder: nothing left to unlink
        self._thread.join(5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
