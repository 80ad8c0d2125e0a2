"""trainables.tracking_relay: trials on the driver's machine make their MLflow calls through the
driver. The store ends up as a trial logging by itself leaves it; the trial process never
imports MLflow; errors come back as errors (retried, or refused when the call is bad); only a
client with the key is served; a closed relay writes nothing."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="the relay serves MLflow calls")

from mlflow.tracking import MlflowClient  # noqa: E402

from core import store_schema as S  # noqa: E402
from core.errors import ConfigError  # noqa: E402
from trainables import tracking as T  # noqa: E402
from trainables.tracking_relay import Relay, RelayError, RelayOps, relay_ops  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not hasattr(__import__("socket"), "AF_UNIX"), reason="no Unix sockets")


@pytest.fixture
def store(tracking_uri):
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("relay")
    parent = client.create_run(exp_id).info.run_id
    return client, exp_id, parent


def _log_a_trial(info: T.TrackingInfo, trial_id: str) -> str:
    """What the lifecycle does with a trial's run, start to end; returns the run id."""
    run = T.TrialRun(info, trial_id, None, "p seed=3", {"pairing": "p", "seed": 3})
    run.log_params({"lr": 0.1, "hidden_dims": (50, 10), "api_token": "hunter2"})
    for epoch in (1, 2, 3):
        run.add(epoch, {"train_loss": 1.0 / epoch, "val_acc": epoch / 4})
    run.flush()
    run.add_history("shift_acc", [(0, 0.5), (2, 0.25)])
    run.add_final({"n_params": 606.0})
    run.log_artifact_bytes("kernels/final.npy", b"\x93NUMPY-bytes")
    run.log_artifact_bytes("history.json", json.dumps({"a": 1}))
    run.complete()
    return run.run_id


def _stored(client, run_id: str) -> dict:
    run = client.get_run(run_id)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") and k != S.TAG_TRIAL_ID}
    history = {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in run.data.metrics}
    files = sorted(a.path for a in client.list_artifacts(run_id)) + sorted(
        a.path for a in client.list_artifacts(run_id, "kernels"))
    return {"status": run.info.status, "params": run.data.params, "tags": tags, "history": history,
            "files": files, "name": run.info.run_name,
            "text": Path(client.download_artifacts(run_id, "history.json")).read_text(),
            "npy": Path(client.download_artifacts(run_id, "kernels/final.npy")).read_bytes()}


def test_a_trial_through_the_relay_leaves_the_store_as_a_trial_logging_itself(store, tracking_uri):
    client, exp_id, parent = store
    direct = _log_a_trial(T.TrackingInfo(tracking_uri, exp_id, parent, "s", "relay"), "t1")
    with Relay(tracking_uri) as relay:
        info = T.TrackingInfo(tracking_uri, exp_id, parent, "s", "relay", relay=relay.endpoint)
        assert isinstance(T.trial_ops(info), RelayOps)
        relayed = _log_a_trial(info, "t2")
    assert _stored(client, relayed) == _stored(client, direct)
    assert client.get_run(relayed).data.params["api_token"] == "***"


def test_a_restarted_trial_finds_its_run_and_what_the_first_attempt_left(store, tracking_uri):
    client, exp_id, parent = store
    with Relay(tracking_uri) as relay:
        info = T.TrackingInfo(tracking_uri, exp_id, parent, "s", "relay", relay=relay.endpoint)
        first = _log_a_trial(info, "t1")
        end = client.get_run(first).info.end_time
        again = T.TrialRun(info, "t1", None, "p seed=3", {})
        assert again.run_id == first and again.resumed and again.finished_earlier
        assert again.previous == T.PreviousRun("FINISHED", end, {"train_loss": 1 / 3, "val_acc": 0.75,
                                                                  "shift_acc": 0.25, "n_params": 606.0})
        assert again.logged_step == 3
        assert client.get_run(first).info.status == "RUNNING"  # opened again for this attempt
        again.restore_finished()
    assert (client.get_run(first).info.status, client.get_run(first).info.end_time) == ("FINISHED", end)


def test_errors_come_back_retried_or_refused_and_a_closed_relay_writes_nothing(store, tracking_uri):
    client, exp_id, parent = store
    relay = Relay(tracking_uri)
    ops = RelayOps(*relay.endpoint)
    with pytest.raises(RelayError, match="MLflow call set_terminated failed in the driver"):
        ops.set_terminated("no-such-run", "FINISHED")  # a store error: TrialRun retries these
    with pytest.raises(ConfigError, match="TypeError"):
        ops.log_batch()  # a bad call: never retried
    with pytest.raises(ConfigError, match="no call 'delete_experiment'"):
        ops._call("delete_experiment", exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    run_id = ops.create_run(exp_id, {"k": "v"}, "r")  # the connection still serves after errors
    assert client.get_run(run_id).data.tags["k"] == "v"
    folder = Path(relay.address).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    relay.close()
    assert not folder.exists()
    with pytest.raises(RelayError, match="closed its MLflow relay"):
        ops.log_batch(run_id, tags=(("after", "close"),))
    assert "after" not in client.get_run(run_id).data.tags
    assert relay_ops(*relay.endpoint) is None  # the socket is gone: a trial would log by itself


def test_only_a_client_with_the_key_is_served(store, tracking_uri):
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client

    client, exp_id, _ = store
    with Relay(tracking_uri) as relay:
        with pytest.raises((AuthenticationError, EOFError, OSError)):
            conn = Client(relay.address, family="AF_UNIX", authkey=b"x" * 32)
            conn.send(("create_run", (exp_id, {}, "intruder"), {}))
            conn.recv()
        assert RelayOps(*relay.endpoint).create_run(exp_id, {}, "trial")
    names = [r.info.run_name for r in client.search_runs([exp_id])]
    assert "intruder" not in names and "trial" in names


def test_the_relay_key_never_shows_in_the_tracking_info():
    info = T.TrackingInfo("sqlite:///x.db", "1", "p", "s", "e", relay=("/tmp/sock", b"secret-key-bytes"))
    assert "secret-key-bytes" not in repr(info) and "relay" not in repr(info)


def test_a_trial_process_on_the_drivers_machine_never_imports_mlflow(store, tracking_uri, tmp_path):
    """A trial process (run_trial with checkpoints and artifacts) logs through the relay of this
    process; its MLflow child run is FINISHED with every epoch, and `mlflow` is not in its modules."""
    client, exp_id, parent = store
    with Relay(tracking_uri) as relay:
        address, key = relay.endpoint
        code = (
            "import sys\n"
            "from trainables.tracking import TrackingInfo\n"
            "from trainables.trainable import run_trial\n"
            f"info = TrackingInfo({tracking_uri!r}, {exp_id!r}, {parent!r}, 's', 'relay', relay=({address!r}, {key!r}))\n"
            "cfg = {'pairing': 'simple_cnn/edges', 'epochs': 4, 'data_per_class': 5, 'seed': 3, 'report_every': 1}\n"
            "run_trial(cfg, info, report=lambda metrics, state: None, trial_id='probe')\n"
            "print(sorted(m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.') or m == 'sqlalchemy'))\n")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    (run,) = client.search_runs([exp_id], S.trial_filter(parent, "probe"))
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3, 4]


@pytest.mark.parametrize("message", ["hang-up", "hang-up-before-the-answer", b"\x80\x04garbage", "one-two", 7])
def test_a_client_that_hangs_up_or_sends_no_call_is_dropped_quietly(store, tracking_uri, monkeypatch, message):
    """A connection that ends, or brings bytes that are not a pickled (op, args, kwargs) triple,
    is closed without a traceback in the driver's console; the relay goes on serving."""
    import threading
    from multiprocessing.connection import Client

    _, exp_id, _ = store
    raised, earlier = [], set(threading.enumerate())
    monkeypatch.setattr(threading, "excepthook", raised.append)
    with Relay(tracking_uri) as relay:
        conn = Client(relay.address, family="AF_UNIX", authkey=relay.endpoint[1])
        if message == "hang-up":
            conn.close()
        elif message == "hang-up-before-the-answer":
            with relay._write:  # the call waits for the writer while its trial goes away
                conn.send(("find_run", (exp_id, "attributes.run_name = 'x'"), {}))
                conn.close()
        else:
            conn.send_bytes(message) if isinstance(message, bytes) else conn.send(message)
            assert conn.poll(10), "the relay neither answered nor closed the connection"
            with pytest.raises((EOFError, OSError)):
                conn.recv()  # the relay closed this connection
            conn.close()
        ops = RelayOps(*relay.endpoint)
        assert ops.create_run(exp_id, {}, "after")
        RelayOps._connections.pop(relay.address).close()
    for thread in set(threading.enumerate()) - earlier:  # a connection's thread ends when its client has gone
        if thread.name == "sweep-mlflow-relay-conn":
            thread.join(timeout=10)
            assert not thread.is_alive()
    assert raised == []


def test_a_relay_whose_folder_was_removed_still_closes(tracking_uri):
    """A /tmp cleaner may remove the socket's folder during a long sweep: the sweep still ends."""
    import shutil

    relay = Relay(tracking_uri)
    shutil.rmtree(relay.folder)
    relay.close()
    assert relay.closed and relay_ops(*relay.endpoint) is None


def test_the_relay_serves_every_mlflow_call_a_trial_makes_and_its_client_offers_each():
    """OPS, MlflowOps' calls and RelayOps' methods are one list: a call added to MlflowOps and not
    to the relay would fail only on the driver's machine."""
    from trainables.tracking_relay import OPS

    public = {name for name in vars(T.MlflowOps) if not name.startswith("_")}
    assert set(OPS) == public
    assert all(callable(getattr(RelayOps, op)) and getattr(RelayOps, op).__name__ == op for op in OPS)
