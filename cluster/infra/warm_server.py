"""The warm driver of `sweep up`: the driver's libraries imported once, one forked child per command.

A `sweep run` spends ~3 s of CPU importing torch, MLflow with its SQLAlchemy store and Ray Tune
before its first trial can start; on 2 cores that is most of a small sweep's fixed cost. `sweep up`
starts this process beside its Ray head (`python -m cluster.infra.warm_server`). It imports those
libraries (`PRELOAD`), never runs any of the project's code itself, never starts or joins Ray, and
listens on `$SWEEP_HOME/warm-driver.sock` (owner only; a peer of another user is refused).

For each command cluster.infra.warm_client sends (arguments, working directory, environment, the
console's three descriptors) it checks that a fork of this process is equivalent to a fresh one
(`warm_client.equivalent`), answers "accepted" or "refused: why", and forks. The child takes the
command's descriptors, directory, environment, sys.argv and sys.path, reseeds numpy's and torch's
global generators (Python's `random` reseeds itself at fork), and runs `cluster.cli.main()` exactly
as the `sweep` program would, ending the way Python ends (threads joined, atexit hooks run). Signals
the client receives (SIGINT, SIGTERM, SIGHUP) come over the socket and are raised in the child; a
client that goes away (killed) is a SIGTERM to its child, so its runs end KILLED, never RUNNING. This
process reaps the child and sends the client its exit status.

It stops when the keeper of its Ray head is gone or on SIGTERM: the socket is removed at once and the
children still running are waited for, so their clients get their exit status.
"""
from __future__ import annotations

import atexit
import importlib
import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from cluster.infra.argv import end_process
from cluster.infra import warm_client
from cluster.infra.warm_client import FORWARDED_SIGNALS, STREAMS, receive_lines

# What a `sweep run` imports before its first trial, heaviest first (torch via the trainables).
PRELOAD = ("trainables.trainable", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store", "ray.tune",
           "cluster.cli", "cluster.flow.run", "cluster.flow.resume", "cluster.flow.study", "cluster.flow.confirm",
           "cluster.flow.finish", "cluster.tuner.assemble", "cluster.planning.preflight", "analysis.results")
POLL_S = 0.2
REQUEST_TIMEOUT_S = 10.0
MAX_REQUEST = 16 << 20


def serve(path: Path, keeper_pid: int) -> int:
    """Preload, listen, fork a child per accepted command; returns when the keeper is gone or on SIGTERM."""
    from cluster.infra.ray_head import _pid_is_keeper

    if not _pid_is_keeper(keeper_pid):
        print(f"warm driver: process {keeper_pid} is not a Ray head's keeper; nothing to serve", flush=True)
        return 1
    reference_env = dict(os.environ)
    mine = warm_client.fingerprint()  # taken before the imports: a file edited meanwhile is refused, never served stale
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"  # as a quiet `sweep run` imports MLflow
    for name in PRELOAD:
        importlib.import_module(name)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # a forked child could not use CUDA
        print("warm driver: CUDA was initialized while importing; nothing to serve", flush=True)
        return 1
    stop = {"now": False}
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.update(now=True))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the pipe
    listener = _listen(path)
    children: dict[int, socket.socket] = {}
    print(f"warm driver pid {os.getpid()}: serving {path}", flush=True)
    try:
        while not stop["now"] and _pid_is_keeper(keeper_pid):
            ready, _, _ = select.select([listener, wake_r], [], [], POLL_S)
            _drain(wake_r)
            _reap(children)
            if listener in ready:
                _accept(listener, mine, reference_env, children, (listener.fileno(), wake_r, wake_w))
    finally:
        listener.close()
        path.unlink(missing_ok=True)
    while children:  # nothing new is accepted; the running commands still get their exit status
        select.select([wake_r], [], [], POLL_S)
        _drain(wake_r)
        _reap(children)
    return 0


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()  # left by a warm driver that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is the owner's only (0600)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(16)
    return listener


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(json.dumps({"exit": code if code >= 0 else 128 - code}).encode() + b"\n")
        except OSError:
            pass  # the client is gone
        conn.close()


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 4096, 3)
    if not data and not fds:
        raise EOFError  # a client that only checked the socket answers (`sweep up`)
    try:
        if len(data) < 4 or len(fds) != 3:
            raise ValueError("a request carries its length and the console's three descriptors")
        size = int.from_bytes(data[:4], "big")
        if size > MAX_REQUEST:
            raise ValueError(f"a request of {size} bytes")
        body = data[4:]
        while len(body) < size:
            chunk = conn.recv(min(1 << 16, size - len(body)))
            if not chunk:
                raise ValueError("the request ended early")
            body += chunk
        message = json.loads(body)
        if not isinstance(message, dict):
            raise ValueError("a request is a JSON object")
        return message, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _accept(listener: socket.socket, mine: dict, reference_env: dict, children: dict, inherited: tuple) -> None:
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        if _peer_uid(conn) != os.getuid():
            conn.close()
            return
        conn.settimeout(REQUEST_TIMEOUT_S)
        message, fds = _read_request(conn)
        why = warm_client.equivalent(mine, message.get("fingerprint") or {}, reference_env, message.get("env") or {})
        conn.settimeout(None)
        if why:
            conn.sendall(json.dumps({"refused": why}).encode() + b"\n")
            conn.close()
            return
        conn.sendall(b'{"accepted": true}\n')
        pid = os.fork()
        if pid == 0:
            _child(message, fds, conn, inherited)  # never returns
        children[pid] = conn
    except EOFError:
        conn.close()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"warm driver: a request was not served ({type(exc).__name__}: {exc})", flush=True)
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def _child(message: dict, fds: list[int], conn: socket.socket, inherited: tuple) -> None:
    """Become the command: its console, directory, environment, argv and path; run `sweep`; exit as Python would."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in inherited:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        fds.clear()
        os.chdir(message["cwd"])
        os.umask(int(message["umask"]))
        os.environ.clear()
        os.environ.update(message["env"])
        sys.argv = [message["argv0"], *message["args"]]
        sys.path[:] = message["sys_path"]
        _streams(message["streams"])
        _reseed()
        warm_client.IN_CHILD["on"] = True
        threading.Thread(target=_watch, args=(conn,), name="warm-driver-signals", daemon=True).start()
        from core import phases

        phases.mark("warm_driver")
        from cluster.cli import main

        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - as Python prints an exception that escapes the program
        traceback.print_exc()
        code = 1
    _exit(code)


def _streams(spec: dict) -> None:
    """sys.stdin/stdout/stderr over descriptors 0-2 with the command's encoding and buffering."""
    for fd, name in enumerate(STREAMS):
        o = spec[name]
        raw = open(fd, "rb" if name == "stdin" else "wb", closefd=False)
        stream = io.TextIOWrapper(raw, encoding=o["encoding"], errors=o["errors"], line_buffering=o["line_buffering"],
                                  write_through=o["write_through"])
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _reseed() -> None:
    """Global generators a fresh process would seed from the OS (the fork copied the server's state)."""
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def _watch(conn: socket.socket) -> None:
    """Raise the signals the client forwards; a client gone (killed) is a SIGTERM."""
    allowed = {int(s) for s in FORWARDED_SIGNALS}
    for message in receive_lines(conn):
        signum = message.get("signal") if isinstance(message, dict) else None
        if signum in allowed:
            os.kill(os.getpid(), signum)
    os.kill(os.getpid(), signal.SIGTERM)


def _exit(code) -> None:
    """End as the interpreter ends a program: non-daemon threads joined, atexit hooks (the CLI's last
    hook ends the process with its code), streams flushed."""
    try:
        for t in threading.enumerate():
            if t is not threading.current_thread() and not t.daemon:
                t.join()
        atexit._run_exitfuncs()
    finally:
        end_process(code)


def answers(path: Path) -> bool:
    """A warm driver listens on `path` (a socket file left by a killed one does not answer)."""
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
        return True
    except OSError:
        return False


def start(path: Path, keeper_pid: int, log_path: Path, env: dict) -> subprocess.Popen:
    """Start a warm driver for the Ray head whose keeper is `keeper_pid` (`sweep up`), in `env`."""
    path.unlink(missing_ok=True)  # left by a warm driver that was killed
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "cluster.infra.warm_server", "--socket", str(path),
                                 "--keeper-pid", str(keeper_pid)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, start_new_session=True, cwd=Path.cwd())


def wait_ready(proc: subprocess.Popen, path: Path, log_path: Path, timeout_s: float, note) -> bool:
    """Wait until the warm driver listens; False (with a note) if it could not start: commands then run cold."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    else:
        proc.terminate()
    note(f"note: the warm driver did not start (see {log_path}); each sweep imports its own libraries")
    return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m cluster.infra.warm_server", description=__doc__.split("\n")[0])
    p.add_argument("--socket", required=True, help="where to listen ($SWEEP_HOME/warm-driver.sock)")
    p.add_argument("--keeper-pid", type=int, required=True, help="the Ray head's keeper: this process ends with it")
    args = p.parse_args(argv)
    return serve(Path(args.socket), args.keeper_pid)


if __name__ == "__main__":
    sys.exit(main())
