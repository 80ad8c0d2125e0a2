"""`sweep up`'s keeper: two `sweep up` at once start one head (the other joins it), and the Ray
processes a killed keeper leaves behind (its process group) are stopped by the next `sweep down` /
`sweep up`, never a process of another group."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from cluster.infra import ray_head as RH


def test_two_sweep_up_at_once_start_one_head(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path))
    started: list[RH.HeadState] = []

    def slow_start(num_cpus, note=print):  # the real one starts Ray (seconds): the window where both saw no head
        time.sleep(0.5)
        state = RH.HeadState(address="127.0.0.1:1", pid=os.getpid(), num_cpus=1, temp_dir="", project="",
                             started=time.time())
        started.append(state)
        return state

    monkeypatch.setattr(RH, "_start", slow_start)
    monkeypatch.setattr(RH.warm_server, "answers", lambda path: True)  # no warm driver for a head that is not one
    monkeypatch.setattr(RH, "live_head", lambda note=print, env_digest=None: started[0] if started else None)
    out: list[tuple[RH.HeadState, bool]] = []
    threads = [threading.Thread(target=lambda: out.append(RH.start_or_join(1, note=lambda *_: None)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(started) == 1, "both calls started a head"
    assert sorted(s for _, s in out) == [False, True] and out[0][0] == out[1][0]


def _group_with_a_child(marker: str) -> tuple[subprocess.Popen, int]:
    """A leader in its own session whose child names `marker` on its command line (as Ray's raylet
    names the head's temp dir); returns (leader, child pid)."""
    code = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; "
            "time.sleep(120)', sys.argv[1]]); print(c.pid, flush=True); time.sleep(120)")
    leader = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    child = int(leader.stdout.readline())
    return leader, child


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_killed_keepers_leftovers_are_stopped(tmp_path):
    marker = str(tmp_path / "sweep-ray-test")
    leader, child = _group_with_a_child(marker)
    other_leader, other_child = _group_with_a_child(str(tmp_path / "someone-else"))
    try:
        leader.kill()
        leader.wait()
        state = RH.HeadState(address="", pid=leader.pid, num_cpus=1, temp_dir=marker, project="", started=0.0)
        assert RH._group_leftovers(state) == [child]
        notes: list[str] = []
        assert RH.reap_leftovers(state, note=notes.append) == 1
        assert not _alive(child) and "killed keeper" in notes[0]
        # another group, and one whose processes do not name the head's temp dir, are left alone
        assert _alive(other_child)
        assert RH._group_leftovers(RH.HeadState("", other_leader.pid, 1, marker, "", 0.0)) == []
    finally:
        for pid in (child, other_child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        other_leader.kill()
        other_leader.wait()


def _orphan(cwd, name: str = "ray::DashboardAgent") -> int:
    """A process named like Ray's agents, re-parented to init (as after its driver's SIGKILL), in `cwd`."""
    out = subprocess.run(["bash", "-c", f"(cd {cwd} && exec -a {name} sleep 120 >/dev/null 2>&1 & echo $!)"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_agents_a_killed_driver_left_in_this_folder_are_stopped(tmp_path):
    here, elsewhere = tmp_path / "project", tmp_path / "other"
    here.mkdir()
    elsewhere.mkdir()
    mine, other, not_ray = _orphan(here), _orphan(elsewhere), _orphan(here, "python-worker")
    try:
        time.sleep(0.2)
        if RH.orphaned_ray_processes(here) != [mine]:
            with open(f"/proc/{mine}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            assert ppid != 1, "a ray:: orphan of this folder was not found"
            import pytest

            pytest.skip(f"orphans are re-parented to a subreaper (pid {ppid}) here, not to init")
        notes: list[str] = []
        assert RH.reap_orphans(note=notes.append, cwd=here) == 1 and "killed sweep" in notes[0]
        assert not _alive(mine) and _alive(other) and _alive(not_ray)
        assert RH.reap_orphans(note=notes.append, cwd=here) == 0 and len(notes) == 1
    finally:
        for pid in (mine, other, not_ray):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
