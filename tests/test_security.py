"""Security: no credential reaches MLflow, nothing untrusted is unpickled, services stay on loopback.

The basic-auth tracking server itself is tested in tests/test_server.py.
"""
from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import pytest

from core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("trainables", "cluster", "analysis", "search_spaces", "benchmarks", "tests")
# Deliberate unpickling, each with its reason; anything else fails the scan.
ALLOWED = {
    # CIFAR-10 batches are pickles but are read with trainables.data.safe_pickle's restricted
    # unpickler (no pickle.load anywhere under trainables/data).
    # Tune's scheduler save/restore protocol, in the sweep's own storage folder, where Tune itself
    # keeps its cloudpickled experiment state: `sweep resume` checks that folder first
    # (cluster.folder.tune_state: owner, permissions, hashes).
    ("cluster/tuner/schedulers.py", "pickle.load"): "Tune scheduler state",
    # Proof that the restricted unpickler's test payload really is hostile.
    ("tests/test_hostile_units.py", "pickle.loads"): "test payload",
    # A class reference the test itself pickles, renamed to a pre-split module (resume of old sweeps).
    ("tests/test_sweep_record.py", "pickle.loads"): "test's own class reference",
    # Proof that the decoding-bomb payload really asks for 100,000 images.
    ("tests/test_data_bombs.py", "pickle.loads"): "test payload",
    # A round trip of an object this test itself pickled (Tune pickles callbacks).
    ("tests/test_output.py", "pickle.loads"): "own round trip",
    # This file's proof that the hostile test payload really is hostile.
    ("tests/test_security.py", "torch.load"): "test payload",
}
EDGE = {"pairing": "simple_cnn/edges", "data_per_class": 5, "valid_per_class": 5, "epochs": 2, "seed": 10}


def _python_files():
    for d in SOURCE_DIRS:
        yield from sorted((ROOT / d).rglob("*.py"))


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def test_every_torch_load_uses_weights_only():
    offenders, seen = [], 0
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            call = f"{owner}.{node.func.attr}"
            if (str(path.relative_to(ROOT)), call) in ALLOWED:
                continue
            if call == "torch.load":
                seen += 1
                if not _is_true(_kw(node, "weights_only")):
                    offenders.append(f"{where} torch.load without weights_only=True")
            if owner in ("np", "numpy") and node.func.attr == "load" and _is_true(_kw(node, "allow_pickle")):
                offenders.append(f"{where} np.load(allow_pickle=True)")
            if owner in ("pickle", "cloudpickle", "dill", "joblib") and node.func.attr in ("load", "loads"):
                offenders.append(f"{where} {call}")
    assert seen >= 3, "the scan found no torch.load calls: is it looking in the right place?"
    assert not offenders, "\n".join(offenders)


class _Payload:
    """Unpickling this runs os.mkdir(marker): what a hostile 'checkpoint' would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_hostile_weights_file_is_refused_without_running_it(tmp_path):
    import torch

    from trainables.models.probes import build_backbone

    marker = tmp_path / "pwned"
    path = tmp_path / "resnet18.pth"
    torch.save({"fc.weight": _Payload(str(marker))}, path)
    with pytest.raises(ConfigError, match="not a readable PyTorch checkpoint"):
        build_backbone("resnet18", str(path))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # proof the file is hostile: a plain unpickle runs it
    assert marker.is_dir()


@pytest.mark.parametrize("which", ["train", "train_pack"])
def test_hostile_trial_checkpoint_is_refused(which, tmp_path, monkeypatch, capsys):
    """The Tune trainables (single and packed) restore through their own path (tune.get_checkpoint ->
    tune_session -> trainables.checkpoint): a planted checkpoint runs no code; it is reported as
    corrupt and the trial starts over (its MLflow run decides whether anything is retrained)."""
    import torch
    from ray import tune

    from trainables import packed_trainable, trainable

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "checkpoint_000000"
    ckpt.mkdir()
    torch.save({"epoch": 1, "trainer": _Payload(str(marker))}, ckpt / trainable.CHECKPOINT_FILE)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(ckpt)))
    monkeypatch.setattr(tune, "get_context", lambda: type("Ctx", (), {"get_trial_id": lambda self: "t0"})())
    restored = []
    cfg = {**EDGE, "log_to_mlflow": False}
    if which == "train":
        monkeypatch.setattr(trainable, "run_trial", lambda c, t, rep, restore, trial_id: restored.append(restore))
        trainable.train(cfg)
    else:
        monkeypatch.setattr(packed_trainable, "run_pack", lambda c, t, rep, restore, trial_id: restored.append(restore))
        packed_trainable.train_pack({"members": [cfg, {**cfg, "seed": 11}]})
    assert restored == [None]
    assert not marker.exists()
    assert "corrupt checkpoint" in capsys.readouterr().err
    with pytest.raises(pickle.UnpicklingError):  # what a plain weights_only load says about this file
        torch.load(ckpt / trainable.CHECKPOINT_FILE, weights_only=True)


def test_trial_params_and_config_artifact_redact_credentials(tracking_uri, monkeypatch, tmp_path):
    """A credential-like config key (were one ever added) reaches MLflow only as '***'."""
    from mlflow.tracking import MlflowClient

    import dataclasses

    from trainables import data as data_registry
    from trainables.data.edges import EdgeDataConfig
    from trainables.tracking import TrackingInfo
    from trainables.trainable import run_trial

    # Strict keys: a trial takes only keys its pairing uses, so the edge dataset gets two such keys.
    @dataclasses.dataclass(frozen=True)
    class WithSecrets(EdgeDataConfig):
        mlflow_password: str | None = None
        hub_token: str | None = None

    monkeypatch.setitem(data_registry.DATASETS, "edges",
                        dataclasses.replace(data_registry.DATASETS["edges"], config=WithSecrets))
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("sec")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s", "sec")
    out = run_trial({**EDGE, "mlflow_password": "hunter2-cfg", "hub_token": "tok-cfg"}, tracking=info, trial_id="t0")
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.params["mlflow_password"] == "***" and run.data.params["hub_token"] == "***"
    config = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))).read_text())
    assert config["mlflow_password"] == "***" and config["lr"] == 0.01
    _assert_absent(client, [run.info.run_id], ["hunter2-cfg", "tok-cfg"])


def test_parent_run_redacts_credentials(tracking_uri):
    from mlflow.tracking import MlflowClient

    from cluster.infra import tracking

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("sec")
    rid = tracking.create_parent_run(client, exp_id, "s", "sec", {"role_hint": "x"},
                                     {"lr": 0.1, "db_password": "pw-param"},
                                     {"description": "d", "fixed": {"lr": 0.1, "api_key": "key-decl"}})
    assert client.get_run(rid).data.params["db_password"] == "***"
    _assert_absent(client, [rid], ["pw-param", "key-decl"])


def _assert_absent(client, run_ids, secrets) -> None:
    """No secret in any param, tag, metric key or artifact (recursively) of the runs."""
    import tempfile

    for rid in run_ids:
        run = client.get_run(rid)
        text = json.dumps([run.data.params, run.data.tags, sorted(run.data.metrics)])
        with tempfile.TemporaryDirectory() as d:
            local = Path(client.download_artifacts(rid, "", d))
            for f in local.rglob("*"):
                if f.is_file():
                    text += f.read_bytes().decode("latin-1")
        for s in secrets:
            assert s not in text, f"secret {s!r} found in MLflow run {rid}"


@pytest.mark.slow
def test_sweep_never_logs_environment_credentials(tmp_path, monkeypatch, ray_shutdown):
    """A real sweep with MLflow credentials in the environment: none lands in MLflow or the sweep folder."""
    from mlflow.tracking import MlflowClient

    from cluster.cli import main
    from conftest import mlflow_runs

    secrets = {"MLFLOW_TRACKING_USERNAME": "user-4b1d", "MLFLOW_TRACKING_PASSWORD": "pw-9f3e",
               "MLFLOW_TRACKING_TOKEN": "tok-77aa"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main(["run", "edge-overfit-small", "--smoke", "--seeds", "1", "--name", "sec", "--tracking-uri", uri,
                 "--storage-path", str(tmp_path / "rr")])
    assert code == 0
    parents, children = mlflow_runs(uri, "edge-overfit-small")
    assert len(parents) == 1 and len(children) == 2
    _assert_absent(MlflowClient(uri), [r.info.run_id for r in parents + children], list(secrets.values()))
    for f in (tmp_path / "rr").rglob("*"):
        if f.is_file() and f.stat().st_size < 5_000_000:
            data = f.read_bytes()
            for s in secrets.values():
                assert s.encode() not in data, f"secret found in {f}"


def test_local_ray_keeps_dashboard_off_and_on_loopback(monkeypatch):
    import ray

    from cluster.infra import ray_setup

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: calls.append(kw))
    ray_setup.init_ray(None)
    assert calls and calls[0].get("include_dashboard") is False
    assert calls[0].get("dashboard_host") == "127.0.0.1"
    assert "address" not in calls[0] or calls[0]["address"] is None


def test_sweep_server_binds_loopback_unless_host_given():
    from cluster.cli import build_parser

    assert build_parser().parse_args(["server"]).host == "127.0.0.1"
    assert build_parser().parse_args(["server", "--host", "0.0.0.0"]).host == "0.0.0.0"

