"""Hand a `sweep run/study/resume/confirm` to the warm driver of `sweep up` (cluster.infra.warm_server).

The warm driver is a process that `sweep up` starts beside its Ray head with the driver's libraries
already imported (torch, MLflow and its SQLAlchemy store, Ray Tune, this project's driver). For each
command it forks a child that runs exactly what `sweep ...` would run here: the same arguments,
working directory, environment and console (stdin, stdout and stderr are passed over the socket), so
output, exit codes and the record are those of a cold command. The command only skips ~3 s of imports.

The child is used only when it is equivalent to a fresh process (`equivalent`): the same Python, the
same project files (path, size and modification time of every .py file), the same installed packages
(site-packages unchanged), and the same environment except keys nothing reads at import (`FREE_KEYS`).
Otherwise the command runs here, cold, after a one-line note naming what differs (never a value).

This module is imported by every `sweep` command, so it uses the standard library only.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

WARM_COMMANDS = frozenset({"run", "study", "resume", "confirm"})
SOCKET_NAME = "warm-driver.sock"
ENV_OFF = "SWEEP_WARM"  # "0": never hand a command to the warm driver
# Environment keys that differ between shells and that no module reads when it is imported: a command
# whose environment differs from the warm driver's only in these is still served by it. PYTHONPATH is
# compared as the resolved import path instead (`fingerprint`).
FREE_KEYS = frozenset({"SWEEP_PHASE_LOG", "SWEEP_WARM", "PWD", "OLDPWD", "SHLVL", "_", "TERM", "COLUMNS", "LINES", "PYTHONPATH",
                       "PS1", "PS2", "PROMPT_COMMAND", "TMUX_PANE", "WINDOWID", "SSH_TTY", "HISTFILE", "TERM_PROGRAM",
                       "TERM_PROGRAM_VERSION", "COLORTERM", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"})
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STREAMS = ("stdin", "stdout", "stderr")
ROOT = Path(__file__).resolve().parents[2]
IN_CHILD = {"on": False}  # set in the warm driver's child: its own `main` runs the command, never hands it on


def project_packages(root: Path = ROOT) -> list[Path]:
    """The checkout's own top-level packages (folders with __init__.py), tests and benchmarks excepted."""
    return sorted(p for p in root.iterdir() if (p / "__init__.py").is_file() and not p.name.startswith(".")
                  and p.name not in ("tests", "benchmarks"))


def code_digest(root: Path = ROOT) -> str:
    """Path, size and modification time of every .py file of the project's packages."""
    h = hashlib.sha256()
    for package in project_packages(root):
        for folder, dirs, files in os.walk(package):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(folder, name))
                    h.update(f"{os.path.relpath(os.path.join(folder, name), root)}\0{st.st_size}\0{st.st_mtime_ns}\n"
                             .encode())
    return h.hexdigest()


def import_path(root: Path = ROOT) -> list[str]:
    """sys.path without its first entry (the script's folder or the working directory) and the project."""
    return [p for p in sys.path[1:] if p and os.path.abspath(p) != str(root)]


def site_digest() -> str:
    """Modification times of the site-packages folders on the path: installing or removing a package changes them."""
    h = hashlib.sha256()
    for p in import_path():
        if p.rstrip(os.sep).endswith(("site-packages", "dist-packages")):
            try:
                h.update(f"{p}\0{os.stat(p).st_mtime_ns}\n".encode())
            except OSError:
                continue
    return h.hexdigest()


def process_limits() -> dict:
    """What a child inherits from its parent's process rather than from the command: ulimits, CPUs, Python flags."""
    import resource

    limits = {name: list(resource.getrlimit(getattr(resource, name))) for name in dir(resource)
              if name.startswith("RLIMIT_")}
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {"rlimits": limits, "cpus": affinity, "flags": list(sys.flags), "warnoptions": list(sys.warnoptions),
            "xoptions": {k: str(v) for k, v in sys._xoptions.items()}}


def fingerprint(root: Path = ROOT) -> dict:
    """What a forked warm driver shares with a fresh process of this command: must be equal."""
    return {"python": sys.executable, "prefix": sys.prefix, "version": sys.version, "root": str(root),
            "path": import_path(root), "process": process_limits(), "code": code_digest(root), "site": site_digest()}


def equivalent(mine: dict, theirs: dict, env_mine: dict, env_theirs: dict) -> str | None:
    """None when a command with (theirs, env_theirs) may run in a fork of (mine, env_mine); else why not."""
    reasons = {"code": "the project's code changed since `sweep up`",
               "site": "installed packages changed since `sweep up`",
               "process": "this command's resource limits (ulimit), CPU affinity or Python flags differ from `sweep up`'s",
               "path": "this command's import path (sys.path: PYTHONPATH, .pth files) differs from `sweep up`'s"}
    for key in ("python", "prefix", "version", "root", "path", "process", "site", "code"):
        if mine.get(key) != theirs.get(key):
            return reasons.get(key, f"this command's Python differs from `sweep up`'s ({key})")
    differ = sorted(k for k in set(env_mine) | set(env_theirs)
                    if k not in FREE_KEYS and env_mine.get(k) != env_theirs.get(k))
    if differ:
        shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        return f"the environment differs from `sweep up`'s in {shown}"
    return None


def socket_path() -> Path | None:
    """Where `sweep up` keeps the warm driver's socket (cluster.infra.ray_head.warm_socket); None when that
    place cannot be resolved (the command then runs here and reports it)."""
    from cluster.infra.ray_head import warm_socket
    from core.errors import ConfigError

    try:
        return warm_socket()
    except (ConfigError, OSError):
        return None


def _stream(name: str) -> dict:
    s = getattr(sys, name)
    return {"encoding": getattr(s, "encoding", None) or "utf-8", "errors": getattr(s, "errors", None) or "strict",
            "line_buffering": bool(getattr(s, "line_buffering", False)),
            "write_through": bool(getattr(s, "write_through", False))}


def request(args: list[str], fp: dict | None = None, env: dict | None = None) -> dict:
    """The message a command sends (tests change `fp` or `env` to check refusals)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return {"args": list(args), "argv0": sys.argv[0], "cwd": os.getcwd(), "umask": umask,
            "env": dict(os.environ if env is None else env),
            "sys_path": list(sys.path), "fingerprint": fingerprint() if fp is None else fp,
            "streams": {n: _stream(n) for n in STREAMS}}


def send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    frame = len(data).to_bytes(4, "big") + data
    if fds:
        frame = frame[socket.send_fds(sock, [frame[:4096]], fds):]
    if frame:
        sock.sendall(frame)


def receive_lines(sock: socket.socket):
    """Newline-delimited JSON messages until the peer closes."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                yield json.loads(line)
            except ValueError:
                return


def run_warm(args: list[str], note=None) -> int | None:
    """The command's exit code when the warm driver ran it; None when it must run here (no warm driver,
    not a warm command, --verbose, or refused: then after a note saying why)."""
    if IN_CHILD["on"] or not args or args[0] not in WARM_COMMANDS or os.environ.get(ENV_OFF) == "0":
        return None
    if any(a in ("--verbose", "-h", "--help") for a in args):  # --verbose: MLflow configures its loggers at import
        return None
    path = socket_path()
    if path is None or not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        send(sock, request(args), [0, 1, 2])
        messages = receive_lines(sock)
        first = next(messages, None)
    except OSError:
        sock.close()
        return None
    if not first or "refused" in first:
        sock.close()
        if first:
            (note or _note)(f"note: not using the warm driver of `sweep up`: {first['refused']}; this command imports "
                            f"its own libraries (`sweep down` and `sweep up` again, from here, refresh it)")
        return None
    return _wait(sock, messages)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _wait(sock: socket.socket, messages) -> int:
    """Forward SIGINT/SIGTERM/SIGHUP to the child until it ends; its exit code."""
    def forward(signum, frame):
        try:
            sock.sendall(json.dumps({"signal": signum}).encode() + b"\n")
        except OSError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        for message in messages:
            if "exit" in message:
                return int(message["exit"])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    print("sweep: the warm driver of `sweep up` ended before the command did (no exit status); see its "
          "driver.log", file=sys.stderr, flush=True)
    return 1
