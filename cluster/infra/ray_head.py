"""A local Ray head that outlives one sweep: `sweep up`, `sweep down`, and the state `sweep run` reads.

`sweep up` starts a small keeper process (`python -m cluster.infra.ray_head serve ...`) that runs
`ray.init()` on this machine (loopback only, capped CPUs, no dashboard) and then sleeps; the
Ray cluster lives as long as the keeper. Its address is written to a state file scoped to the
project: `$SWEEP_HOME/ray-head.json`, else `./.sweep/ray-head.json` in the working directory.
`sweep run` without `--address` connects to that head when the state file names a live one
(about 0.2 s instead of a Ray start and stop per sweep), and starts its own Ray as before
otherwise. It never looks for other clusters (no `address="auto"`, no /tmp/ray/ray_current_cluster):
other processes on the machine may run Ray clusters of their own.

`sweep down` stops the keeper (SIGTERM: `ray_setup.stop_ray()` stops the raylet and GCS) and removes
the state file. A state file whose keeper is gone (machine rebooted, keeper killed) is stale: it
is removed with a note and the sweep starts its own Ray.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cluster.infra.argv import PROGRAM_ENV_DEFAULTS
from cluster.infra import warm_server
from cluster.infra.warm_client import SOCKET_NAME
from core.errors import ConfigError

STATE_NAME = "ray-head.json"
LOG_NAME = "ray-head.log"
WARM_LOG_NAME = "warm-driver.log"
UP_LOCK_NAME = "ray-head.lock"  # held by `sweep up` / `sweep down` while they check and start or stop the head
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
# Environment of the keeper and of every driver that joins it: Ray uses 127.0.0.1 as the node
# address (so its servers listen on loopback only) and token authentication with the user's token.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
KEEPER_ENV = {**LOOPBACK_ENV, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class HeadState:
    """What `sweep up` records: the GCS address, the keeper's pid and how the head was started."""

    address: str
    pid: int
    num_cpus: int
    temp_dir: str
    project: str
    started: float
    env_digest: str = ""  # cluster.infra.ray_setup.credential_digest() of the environment its workers inherit

    def describe(self) -> str:
        return f"Ray head at {self.address} ({self.num_cpus} CPUs, keeper pid {self.pid})"


def state_dir() -> Path:
    """$SWEEP_HOME, else ./.sweep in the working directory (never a machine-wide location)."""
    home = os.environ.get("SWEEP_HOME")
    path = Path(home).expanduser().resolve() if home else Path.cwd().resolve() / ".sweep"
    if path.exists() and not path.is_dir():
        where = f"$SWEEP_HOME={home}" if home else str(path)
        raise ConfigError(f"{where} is a file, not a folder: it holds this project's Ray head state "
                          f"(ray-head.json); point $SWEEP_HOME at a folder (created if missing) or unset it")
    return path


def state_file() -> Path:
    return state_dir() / STATE_NAME


def ray_temp_dir(directory: Path) -> str:
    """Ray's session folder for this project's head: short (Unix socket paths are limited to ~107
    characters) and its own, so `ray.init()` elsewhere never finds this head."""
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:10]
    return f"/tmp/sweep-ray-{digest}"


def read_state(path: Path | None = None) -> HeadState | None:
    """The recorded head, or None when there is no (readable) state file."""
    path = path or state_file()
    try:
        data = json.loads(path.read_text())
        return HeadState(**{f.name: data[f.name] for f in dataclasses.fields(HeadState) if f.name in data})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return HeadState(address="", pid=0, num_cpus=0, temp_dir="", project="", started=0.0)  # unreadable: stale


def _pid_is_keeper(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process reusing the pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True  # no /proc (macOS): the pid exists, trust it
    return b"cluster.infra.ray_head" in cmdline


def _port_open(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def is_alive(state: HeadState) -> bool:
    """The keeper process runs and the GCS answers on its port."""
    return bool(state.address) and _pid_is_keeper(state.pid) and _port_open(state.address)


def _group_leftovers(state: HeadState) -> list[int]:
    """Processes a dead keeper left behind: the keeper leads its own process group (started with
    start_new_session), and Ray's daemons and agents stay in it. Only processes of that group that are
    Ray's (their command line names the head's temp dir, or Ray renamed them `ray::...`) are counted,
    so a reused group id is never someone else's."""
    if state.pid <= 0 or _pid_is_keeper(state.pid):
        return []
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) != state.pid:
                continue
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if (state.temp_dir and state.temp_dir.encode() in cmdline) or cmdline.startswith(b"ray::"):
            found.append(int(proc.name))
    return found


def _stop(pids: list[int], wait_s: float) -> None:
    """SIGTERM, then SIGKILL what is still there after `wait_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if not pids:
            return


def reap_leftovers(state: HeadState, note=print, wait_s: float = 5.0) -> int:
    """Stop what a killed keeper left running (Ray's agents, raylet, GCS); the number stopped."""
    pids = _group_leftovers(state)
    if not pids:
        return 0
    _stop(pids, wait_s)
    note(f"note: stopped the Ray processes the killed keeper (pid {state.pid}) had left running")
    return 1


def orphaned_ray_processes(cwd: Path | None = None) -> list[int]:
    """Ray processes of this user left by a killed driver started in `cwd` (default: this folder).

    A driver killed with SIGKILL takes its raylet and GCS with it (Ray ties them to the driver), but
    Ray's dashboard and runtime-env agents outlive them (ray-project/ray#52385): they are re-parented
    to init (ppid 1) and keep running. Those are found as: our uid, ppid 1, a `ray::` process name
    and the driver's working directory; a running sweep's agents have their raylet as parent."""
    cwd = (cwd or Path.cwd()).resolve()
    uid, found = os.getuid(), []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid != uid:
                continue
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != 1 or not (proc / "cmdline").read_bytes().startswith(b"ray::"):
                continue
            if Path(os.readlink(proc / "cwd")).resolve() == cwd:
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def reap_orphans(note=print, cwd: Path | None = None, wait_s: float = 5.0) -> int:
    """Stop the Ray agents a killed driver of this folder left running; how many were stopped."""
    pids = orphaned_ray_processes(cwd)
    if not pids:
        return 0
    _stop(pids, wait_s)
    note(f"note: stopped {len(pids)} Ray agent process(es) a killed sweep in this folder had left running")
    return len(pids)


def live_head(note=print, env_digest: str | None = None) -> HeadState | None:
    """The head recorded in the state file if it is alive; a stale state file is removed, with a note.

    With `env_digest`, a head whose workers inherited other credentials / data root is not used
    (noted): they would not reach its workers without a runtime env, which would log them.
    """
    path = state_file()
    state = read_state(path)
    if state is None:
        return None
    if is_alive(state):
        if env_digest is not None and state.env_digest != env_digest:
            note("note: the Ray head of `sweep up` was started with other MLflow credentials or data root "
                 "($MLFLOW_TRACKING_*, $SWEEP_DATA_ROOT); starting Ray for this sweep. `sweep down` and "
                 "`sweep up` again in this environment to reuse a head.")
            return None
        return state
    note(f"note: ignoring a stale Ray head state file {path} (its keeper is gone); starting Ray for this "
         "sweep. `sweep up` starts a head that later sweeps reuse.")
    reap_leftovers(state, note=note)
    path.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def _exclusive(directory: Path):
    """One `sweep up`/`sweep down` at a time per project: two at once would both start a keeper (the
    later state file wins and the earlier keeper stops) and both say "up"."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(directory / UP_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open {directory / UP_LOCK_NAME} ({exc.strerror}); it must be a plain file "
                          f"of yours") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the other `sweep up` holds it while its head starts (<= START_TIMEOUT_S)
        yield
    finally:
        os.close(fd)


def up(num_cpus: int | None = None, note=print) -> HeadState:
    """Start the project's Ray head, or return the live one. Raises ConfigError if it cannot start."""
    return start_or_join(num_cpus, note)[0]


def start_or_join(num_cpus: int | None = None, note=print) -> tuple[HeadState, bool]:
    """(the head, whether this call started it): decided under the project's lock, so of two `sweep up`
    at once exactly one starts the head and the other finds it."""
    with _exclusive(state_dir()):
        existing = live_head(note=note)
        if existing is not None:
            if num_cpus is not None and num_cpus != existing.num_cpus:
                raise ConfigError(f"a {existing.describe()} is already up; `sweep down` first to change --num-cpus")
            if not warm_server.answers(warm_socket()):  # its warm driver was stopped or killed: start one again
                _wait_warm(_start_warm(existing.pid), note)
            return existing, False
        return _start(num_cpus, note), True


def warm_socket() -> Path:
    return state_dir() / SOCKET_NAME


def _start_warm(keeper_pid: int) -> subprocess.Popen:
    env = {**PROGRAM_ENV_DEFAULTS, **os.environ, "PYTHONPATH": _python_path()}  # as a `sweep` command's
    return warm_server.start(warm_socket(), keeper_pid, state_dir() / WARM_LOG_NAME, env)


def _wait_warm(proc: subprocess.Popen, note) -> bool:
    return warm_server.wait_ready(proc, warm_socket(), state_dir() / WARM_LOG_NAME, START_TIMEOUT_S, note)


def _python_path() -> str:
    project = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH", "")) if p)


def _start(num_cpus: int | None, note=print) -> HeadState:
    cpus = num_cpus or os.cpu_count() or 1
    if cpus < 1:
        raise ConfigError(f"--num-cpus must be >= 1, got {cpus}")
    reap_orphans()
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_NAME
    log = open(directory / LOG_NAME, "ab")
    cmd = [sys.executable, "-m", "cluster.infra.ray_head", "serve", "--state-file", str(path), "--num-cpus", str(cpus),
           "--temp-dir", ray_temp_dir(directory)]
    env = {**os.environ, **KEEPER_ENV, "PYTHONPATH": _python_path()}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                            start_new_session=True, cwd=Path.cwd())
    log.close()
    warm = _start_warm(proc.pid)  # imports while Ray starts
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state(path)
        if state is not None and state.pid == proc.pid and is_alive(state):
            _wait_warm(warm, note)
            return state
        if proc.poll() is not None:
            raise ConfigError(f"the Ray head did not start (exit {proc.returncode}); see {directory / LOG_NAME}")
        time.sleep(0.2)
    proc.terminate()
    raise ConfigError(f"the Ray head did not start within {START_TIMEOUT_S:.0f} s; see {directory / LOG_NAME}")


def down(note=print) -> bool:
    """Stop the project's head; True if one was running. The state file is removed either way."""
    if not state_dir().is_dir():
        return False
    with _exclusive(state_dir()):
        return _down(note)


def _down(note) -> bool:
    path = state_file()
    state = read_state(path)
    if state is None:
        return False
    running = _pid_is_keeper(state.pid)
    if running:
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _pid_is_keeper(state.pid):
            time.sleep(0.2)
        if _pid_is_keeper(state.pid):
            note(f"note: the keeper (pid {state.pid}) did not stop within {STOP_TIMEOUT_S:.0f} s; killing it")
            os.kill(state.pid, signal.SIGKILL)
            time.sleep(0.2)
    reap_leftovers(state, note=note)
    path.unlink(missing_ok=True)
    deadline = time.monotonic() + 5.0  # the warm driver sees its keeper gone within 0.2 s and removes its socket
    while warm_socket().exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def serve(state_path: Path, num_cpus: int, temp_dir: str) -> None:
    """The keeper: start Ray here, record it, sleep until SIGTERM (or the state file is removed)."""
    os.environ.update(KEEPER_ENV)
    import ray

    from cluster.infra.ray_setup import LOCAL_RAY_SYSTEM_CONFIG, credential_digest, stop_ray

    ctx = ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1", _temp_dir=temp_dir,
                   logging_level="WARNING", _system_config=LOCAL_RAY_SYSTEM_CONFIG)
    state = HeadState(address=ctx.address_info["gcs_address"], pid=os.getpid(), num_cpus=num_cpus,
                      temp_dir=temp_dir, project=str(Path.cwd()), started=time.time(),
                      env_digest=credential_digest())
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2))
    tmp.replace(state_path)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    while not stop["now"]:
        current = read_state(state_path)
        if current is None or current.pid != os.getpid():  # state removed or replaced: nobody can find us
            break
        time.sleep(1.0)
    stop_ray()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m cluster.infra.ray_head")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="(internal) the keeper process that `sweep up` starts")
    s.add_argument("--state-file", required=True)
    s.add_argument("--num-cpus", type=int, required=True)
    s.add_argument("--temp-dir", required=True)
    args = p.parse_args(argv)
    serve(Path(args.state_file), args.num_cpus, args.temp_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
