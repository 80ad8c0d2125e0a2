"""`sweep up`'s warm driver (cluster.infra.warm_server / warm_client): a command handed to it runs as the
program would (console, directory, umask, environment, exit code, signals), or runs cold after a note."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cluster.infra import warm_client, warm_server
from cluster.infra.argv import PROGRAM_ENV_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
PROBE = '''
import json, os, sys
import numpy as np
mask = os.umask(0)
os.umask(mask)
with open(os.environ["PROBE_OUT"], "a") as f:
    f.write(json.dumps({"cwd": os.getcwd(), "umask": mask, "argv": sys.argv[1:], "pid": os.getpid(),
                        "draw": float(np.random.random()), "home": os.environ["SWEEP_HOME"]}) + "\\n")
if os.path.exists("probe-ends"):  # how the command ends, set by a test: "signal N" or "exit MESSAGE"
    how, _, what = open("probe-ends").read().partition(" ")
    if how == "signal":
        os.kill(os.getpid(), int(what))
    sys.exit(what)
'''


@pytest.fixture(scope="module")
def warm():
    """A warm driver for a stand-in keeper (a process whose command line names the keeper's module)."""
    home = Path(tempfile.mkdtemp(prefix="wd-", dir="/tmp"))  # short: a socket path has at most 107 bytes
    work = home / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    env = {**PROGRAM_ENV_DEFAULTS, **os.environ, "PYTHONPATH": str(ROOT), "SWEEP_HOME": str(home),
           "PROBE_OUT": str(home / "probe.jsonl"), "RAY_DEDUP_LOGS": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    env.pop("SWEEP_WARM", None)
    keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)", "cluster.infra.ray_head"])
    sock = home / warm_client.SOCKET_NAME
    proc = warm_server.start(sock, keeper.pid, home / "warm.log", env)
    try:
        assert warm_server.wait_ready(proc, sock, home / "warm.log", 180, print), (home / "warm.log").read_text()
        yield {"home": home, "work": work, "env": env, "sock": sock, "proc": proc}
    finally:
        keeper.kill()
        keeper.wait()
        try:
            assert proc.wait(timeout=30) == 0  # it ends with its keeper
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not sock.exists()
        shutil.rmtree(home, ignore_errors=True)


def sweep(warm, *args, env=None, umask=None, phases=None, **kw) -> subprocess.CompletedProcess:
    env = {**(env or warm["env"])}
    if phases:
        env["SWEEP_PHASE_LOG"] = str(phases)
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=warm["work"], env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=pre, **kw)


def marks(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def probes(warm) -> list[dict]:
    path = Path(warm["env"]["PROBE_OUT"])
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return found


def test_a_command_runs_in_the_warm_driver_as_the_program_would(warm, tmp_path):
    """Exit code and messages on the command's own console; its directory, umask, argv and a fresh numpy seed."""
    runs = []
    for i, mask in enumerate((0o027, 0o002)):
        log = tmp_path / f"phases{i}.jsonl"
        out = sweep(warm, "run", "probe.py:NO_SUCH", "--name", f"p{i}", umask=mask, phases=log)
        assert out.returncode == 2, out.stderr
        assert "NO_SUCH" in out.stderr and "sweep run: error:" in out.stderr and out.stdout == ""
        assert "note:" not in out.stderr
        served = [m for m in marks(log) if m["phase"] == "warm_driver"]
        assert len(served) == 1  # the warm driver's child ran it (a cold command never marks this)
        assert marks(log)[-1]["phase"] == "exit"  # it ended as Python ends a program: atexit hooks ran
        (probe,) = probes(warm)
        assert probe["pid"] == served[0]["pid"]
        assert probe["cwd"] == str(warm["work"]) and probe["umask"] == mask and probe["home"] == str(warm["home"])
        assert probe["argv"] == ["run", "probe.py:NO_SUCH", "--name", f"p{i}"]
        runs.append(probe)
    assert runs[0]["draw"] != runs[1]["draw"]  # numpy's global generator reseeded per command, as in a new process


def test_argparse_errors_and_help_keep_their_exit_codes(warm):
    out = sweep(warm, "run", "edge-data-per-class", "--no-such-flag")
    assert out.returncode == 2 and "unrecognized arguments: --no-such-flag" in out.stderr


@pytest.mark.parametrize("change", ["env", "code"])
def test_a_command_that_differs_runs_cold_after_a_note_naming_what_never_a_value(warm, tmp_path, change):
    env = {**warm["env"], "SECRET_TOKEN": "hunter2"} if change == "env" else warm["env"]
    fp = None
    if change == "code":  # as if a project file had been edited since `sweep up`
        fp = {**_client_fingerprint(warm), "code": "0" * 64}
    log = tmp_path / "phases.jsonl"
    if fp is None:
        out = sweep(warm, "run", "probe.py:NO_SUCH", env=env, phases=log)
        assert out.returncode == 2 and "NO_SUCH" in out.stderr
        assert "note: not using the warm driver of `sweep up`: the environment differs" in out.stderr
        assert "SECRET_TOKEN" in out.stderr and "hunter2" not in out.stderr
        assert not [m for m in marks(log) if m["phase"] == "warm_driver"]
        probes(warm)
    else:
        reply = _ask(warm["sock"], warm_client.request(["run", "x"], fp=fp, env=env))
        assert reply == {"refused": "the project's code changed since `sweep up`"}


def _client_fingerprint(warm) -> dict:
    """The fingerprint a `sweep` command sends (this test process has pytest's import path)."""
    code = "import json; from cluster.infra import warm_client; print(json.dumps(warm_client.fingerprint()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=warm["work"], env=warm["env"], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def _ask(sock_path: Path, message: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock_path))
        r, w = os.pipe()
        try:
            warm_client.send(s, message, [r, w, w])
        finally:
            os.close(r)
            os.close(w)
        return next(warm_client.receive_lines(s))


def test_a_malformed_request_is_dropped_and_the_next_is_served(warm):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # no descriptors, not JSON
        s.connect(str(warm["sock"]))
        s.sendall(b"\x00\x00\x00\x05hello")
        assert s.recv(100) == b""  # closed without an answer
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # only connects (as `sweep up` checks it)
        s.connect(str(warm["sock"]))
    out = sweep(warm, "run", "edge-data-per-class", "--set", "lr=0")
    assert out.returncode == 2 and "lr must be > 0" in out.stderr
    assert warm["proc"].poll() is None


def test_the_socket_is_the_owners_only(warm):
    assert warm["sock"].stat().st_mode & 0o777 == 0o600


def test_equivalent_compares_everything_but_the_free_keys():
    fp = warm_client.fingerprint()
    env = {"PATH": "/bin", "HOME": "/root"}
    assert warm_client.equivalent(fp, dict(fp), env, {**env, "SWEEP_PHASE_LOG": "/tmp/x", "PWD": "/x"}) is None
    assert "PATH" in warm_client.equivalent(fp, fp, env, {**env, "PATH": "/usr/bin"})
    assert "HOME" in warm_client.equivalent(fp, fp, env, {"PATH": "/bin"})  # a key unset counts
    assert "site" not in (warm_client.equivalent(fp, {**fp, "site": "x"}, env, env) or "site")
    assert "installed packages" in warm_client.equivalent(fp, {**fp, "site": "x"}, env, env)
    limits = {**fp["process"], "rlimits": {**fp["process"]["rlimits"], "RLIMIT_NOFILE": [1, 1]}}
    assert "ulimit" in warm_client.equivalent(fp, {**fp, "process": limits}, env, env)


def test_code_digest_follows_every_project_file(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "m.py").write_text("x = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    before = warm_client.code_digest(tmp_path)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "m.py").write_text("")  # not source
    (tmp_path / "tests" / "t.py").write_text("")  # tests are not the driver's code
    assert warm_client.code_digest(tmp_path) == before
    os.utime(pkg / "sub" / "m.py", ns=(1, 1))
    assert warm_client.code_digest(tmp_path) != before


def _start(warm, name: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "cluster.cli", "run", "edge-data-per-class", "--smoke", "--seeds", "1",
            "--set", "epochs=3000", "--set", "report_every=50", "--max-concurrent", "1", "--name", name,
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage-path", str(tmp_path / "rr")]
    proc = subprocess.Popen(argv, cwd=warm["work"], env=warm["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline, out = time.time() + 120, ""
    while time.time() < deadline:  # the first line names the sweep once the parent run exists
        line = proc.stdout.readline()
        out += line
        if line.startswith(f"sweep {name}:") or not line:
            break
    assert f"sweep {name}:" in out, out
    time.sleep(3)  # trials are running
    return proc, out


def _statuses(tmp_path: Path, name: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        parent = db.execute("select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid where "
                            "t.key = 'mlflow.runName' and t.value = ?", (name,)).fetchone()[0]
        children = db.execute("select r.status from runs r join tags t on t.run_uuid = r.run_uuid where "
                              "t.key = 'mlflow.parentRunId' and t.value = ?", (parent,)).fetchall()
        return [db.execute("select status from runs where run_uuid = ?", (parent,)).fetchone()[0]] + \
            [c[0] for c in children]


def test_signals_reach_the_sweep_and_a_vanished_client_stops_it(warm, tmp_path):
    """Ctrl-C on the command: forwarded, exit 130, no run RUNNING. The command killed outright: its sweep
    is stopped as by SIGTERM (runs KILLED), not left running in the warm driver."""
    proc, out = _start(warm, "intr", tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
        assert proc.returncode == 130, (out + rest)[-3000:]
        assert "interrupted by SIGINT" in rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    statuses = _statuses(tmp_path, "intr")
    assert "RUNNING" not in statuses and "KILLED" in statuses

    proc, _ = _start(warm, "gone", tmp_path)
    proc.kill()  # SIGKILL: the client cannot forward anything
    proc.wait()
    deadline = time.time() + 90
    while time.time() < deadline and "RUNNING" in _statuses(tmp_path, "gone"):
        time.sleep(0.5)
    statuses = _statuses(tmp_path, "gone")
    assert "RUNNING" not in statuses and statuses[0] == "KILLED", statuses


@pytest.mark.parametrize("how", ["--verbose", "SWEEP_WARM=0"])
def test_verbose_and_sweep_warm_0_run_cold_without_a_note(warm, tmp_path, how):
    env = {**warm["env"], "SWEEP_WARM": "0"} if how == "SWEEP_WARM=0" else warm["env"]
    flags = ["--verbose"] if how == "--verbose" else []
    log = tmp_path / "phases.jsonl"
    out = sweep(warm, "run", "probe.py:NO_SUCH", *flags, env=env, phases=log)
    assert out.returncode == 2 and "NO_SUCH" in out.stderr and "note:" not in out.stderr
    assert [m["phase"] for m in marks(log)][:1] == ["cli_imported"]  # no warm_driver mark: ran here
    (probe,) = probes(warm)
    assert probe["pid"] == marks(log)[0]["pid"]


def test_an_oversized_request_is_closed_at_once(warm):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(warm["sock"]))
        s.settimeout(5)  # the server waits 10 s for a request's bytes; an oversized one is not waited for
        r, w = os.pipe()
        try:
            socket.send_fds(s, [(warm_server.MAX_REQUEST + 1).to_bytes(4, "big") + b"{}"], [r, w, w])
        finally:
            os.close(r)
            os.close(w)
        assert s.recv(100) == b""


def test_a_process_that_is_not_a_keeper_is_not_served(tmp_path, capsys):
    sock = tmp_path / "w.sock"
    assert warm_server.main(["--socket", str(sock), "--keeper-pid", str(os.getpid())]) == 1
    assert "is not a Ray head's keeper" in capsys.readouterr().out and not sock.exists()


def test_the_socket_is_where_sweep_up_keeps_its_state(tmp_path, monkeypatch):
    from cluster.infra import ray_head

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEP_HOME", raising=False)
    assert warm_client.socket_path() == ray_head.warm_socket() == tmp_path.resolve() / ".sweep" / "warm-driver.sock"
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path / "h"))
    assert warm_client.socket_path() == ray_head.warm_socket() == tmp_path.resolve() / "h" / "warm-driver.sock"


def test_the_fingerprint_holds_cpu_affinity_and_a_refusal_counts_the_keys_it_does_not_name():
    assert warm_client.process_limits()["cpus"] == sorted(os.sched_getaffinity(0))
    mine, theirs = {f"K{i}": "a" for i in range(7)}, {f"K{i}": "b" for i in range(7)}
    fp = warm_client.fingerprint()
    assert warm_client.equivalent(fp, fp, mine, theirs).endswith("K0, K1, K2, K3, K4 and 2 more")
    assert warm_client.equivalent(fp, fp, mine, {**mine, "K0": "b"}).endswith("in K0")


def test_a_warm_driver_whose_imports_initialised_cuda_serves_nothing(tmp_path, monkeypatch, capsys):
    """A forked child cannot use a CUDA context made before the fork: such a warm driver never listens."""
    import torch

    from cluster.infra import ray_head

    monkeypatch.setattr(ray_head, "_pid_is_keeper", lambda pid: True)
    monkeypatch.setattr(warm_server, "PRELOAD", ())
    monkeypatch.setenv("MLFLOW_CONFIGURE_LOGGING", "true")  # serve() sets it; restored after the test
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    sock = tmp_path / "warm.sock"
    assert warm_server.serve(sock, os.getpid()) == 1
    assert "CUDA was initialized while importing; nothing to serve" in capsys.readouterr().out
    assert not sock.exists()


@pytest.mark.parametrize("ends", ["signal 9", "exit the probe says goodbye"])
def test_a_command_killed_by_a_signal_or_exiting_with_a_message_ends_as_a_cold_one_would(warm, ends):
    """Killed by SIGKILL: exit 137 (128 + 9, as a shell reports it); sys.exit("text"): the text on stderr, exit 1."""
    flag = warm["work"] / "probe-ends"
    flag.write_text(ends)
    try:
        out = sweep(warm, "run", "probe.py:NO_SUCH")
    finally:
        flag.unlink()
    probes(warm)
    if ends.startswith("signal"):
        assert out.returncode == 128 + 9, out.stderr
    else:
        assert out.returncode == 1 and out.stderr.strip().endswith("the probe says goodbye"), out.stderr
        assert "None" not in out.stderr


def test_wait_ready_gives_up_after_its_timeout_and_stops_the_process(tmp_path):
    notes: list[str] = []
    never = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"])
    start = time.monotonic()
    try:
        assert not warm_server.wait_ready(never, tmp_path / "none.sock", tmp_path / "w.log", 1.5, notes.append)
        assert 1.4 < time.monotonic() - start < 5 and never.wait(timeout=5) is not None  # terminated
        assert notes and "did not start" in notes[0]
    finally:
        never.kill()
        never.wait()
    late = subprocess.Popen([sys.executable, "-c", f"import time, pathlib; time.sleep(0.3); "
                             f"pathlib.Path({str(tmp_path / 'late.sock')!r}).touch(); time.sleep(20)"])
    try:
        assert warm_server.wait_ready(late, tmp_path / "late.sock", tmp_path / "w.log", 0.9, notes.append)
    finally:
        late.kill()
        late.wait()


def test_sigterm_ends_a_warm_driver_whose_keeper_lives(tmp_path):
    """`kill PID` of the warm driver alone: it stops listening and removes its socket; the head is untouched."""
    keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "cluster.infra.ray_head"])
    sock = tmp_path / "w.sock"
    code = ("import sys; import cluster.infra.warm_server as w; w.PRELOAD = (); "
            f"sys.exit(w.serve(__import__('pathlib').Path({str(sock)!r}), {keeper.pid}))")
    server = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), server.communicate(timeout=5)[0]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert not sock.exists() and keeper.poll() is None
    finally:
        for p in (server, keeper):
            p.kill()
            p.wait()


@pytest.mark.parametrize("code, expected", [("None", 0), ("3", 3), ("True", 1), ("False", 0), ("'text'", 1),
                                            ("''", 1), ("0.0", 1)])
def test_end_process_maps_a_code_as_sys_exit_does(code, expected):
    """The last step of a `sweep` command, cold or warm: sys.exit's rule (an empty string exits 1 too)."""
    from_python = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({code})"], capture_output=True)
    ours = subprocess.run([sys.executable, "-c", f"from cluster.infra.argv import end_process; end_process({code})"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert ours.returncode == from_python.returncode == expected, ours.stderr
