"""Packed training (trainables.packing) equals unpacked training, member by member."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.config import TrainConfig
from trainables.packed_trainable import run_pack
from trainables.packing import PackedTrainer, pack_key, packing_pays, why_not_packable
from trainables.spec import resolve_config
from trainables.tracking import TrackingInfo
from trainables.trainable import load_data, make_model, run_trial

BASE = {"valid_per_class": 10, "epochs": 4, "log_to_mlflow": False, "report_every": 2, "checkpoint_every": 2}
MLP, CNN = "three_layer_mlp/edges", "simple_cnn/edges"
# Members differ in seed, lr and training-set size; batch 7 leaves a different short last batch
# per member, and 10 vs 30 per class gives 5 vs 13 batches per epoch (masked steps).
MEMBERS = [dict(data_per_class=10, seed=10, lr=1e-2), dict(data_per_class=30, seed=11, lr=5e-2),
           dict(data_per_class=10, seed=12, lr=2e-3)]


def final_state(config: dict) -> tuple[dict, dict]:
    """(final metrics, final model state dict) of an unpacked run_trial."""
    states = []
    out = run_trial(config, report=lambda m, s: states.append(s) if s else None)
    return out, states[-1]["trainer"]["model"]


def packed(configs: list[dict]) -> PackedTrainer:
    rs = [resolve_config(c) for c in configs]
    bundles = [load_data(r) for r in rs]
    models = [make_model(r) for r in rs]
    trainer = PackedTrainer(models, bundles, [r.train for r in rs], torch.device("cpu"))
    for epoch in range(1, rs[0].train.epochs + 1):
        trainer.run_epoch(epoch)
    return trainer


def assert_member_equals_unpacked(trainer: PackedTrainer, i: int, config: dict, atol: float) -> None:
    out, weights = final_state(config)
    mine = trainer.member_state_dict(i)
    assert set(mine) == set(weights)
    for name, ref in weights.items():
        torch.testing.assert_close(mine[name], ref, atol=atol, rtol=1e-4, msg=f"member {i} {name}")
    row = trainer.history_rows(i, config["epochs"], config["epochs"])[0]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_loss_mean", "val_loss_mean", "lr"):
        assert row[key] == pytest.approx(out[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("pairing,extra", [
    (MLP, {}),
    (CNN, {}),
    (MLP, {"optimizer": "adam", "weight_decay": 1e-3}),
    (MLP, {"weight_decay": 1e-2, "shuffle": False}),
    (CNN, {"init": "edge_detector", "freeze_conv": True}),  # frozen conv: only fc trains
])
def test_members_equal_unpacked_trials(pairing, extra):
    configs = [{**BASE, "pairing": pairing, "batch_size": 7, **m, **extra} for m in MEMBERS]
    trainer = packed(configs)
    for i, cfg in enumerate(configs):
        assert_member_equals_unpacked(trainer, i, cfg, atol=1e-5)


def test_member_whose_epoch_ended_is_not_stepped():
    """10/class (1 batch of 32) next to 100/class (10 batches): the small member's weights after one
    epoch equal one unpacked step, i.e. the nine masked steps changed nothing (momentum included)."""
    configs = [{**BASE, "pairing": MLP, "epochs": 1, "data_per_class": n} for n in (10, 100)]
    trainer = packed(configs)
    assert_member_equals_unpacked(trainer, 0, configs[0], atol=1e-6)


def test_confusion_matrices_per_member():
    configs = [{**BASE, "pairing": MLP, **m} for m in MEMBERS[:2]]
    trainer = packed(configs)
    _, _, correct, cm = trainer.evaluate(confusion=True)
    assert cm.shape == (2, 3, 3)
    assert cm.sum(dim=(1, 2)).tolist() == [30, 30]
    assert torch.equal(cm.diagonal(dim1=1, dim2=2).sum(1), correct.long())


def test_state_dict_round_trip_resumes_identically():
    configs = [{**BASE, "pairing": MLP, "epochs": 4, **m} for m in MEMBERS]
    full = packed(configs)
    rs = [resolve_config(c) for c in configs]
    bundles = [load_data(r) for r in rs]

    def fresh():
        return PackedTrainer([make_model(r) for r in rs], bundles, [r.train for r in rs],
                             torch.device("cpu"))
    first = fresh()
    for epoch in (1, 2):
        first.run_epoch(epoch)
    second = fresh()
    second.load_state_dict(first.state_dict())
    for epoch in (3, 4):
        second.run_epoch(epoch)
    for i in range(3):
        for name, value in full.member_state_dict(i).items():
            torch.testing.assert_close(second.member_state_dict(i)[name], value, atol=0, rtol=0)


def test_members_must_share_settings():
    configs = [{**BASE, "pairing": MLP, "batch_size": 8}, {**BASE, "pairing": MLP, "batch_size": 16}]
    with pytest.raises(ValueError, match="batch_size"):
        packed(configs)


def test_rules_name_what_cannot_be_packed():
    tc = TrainConfig(pairing=MLP)
    assert why_not_packable(tc, nn.Linear(2, 2)) is None
    assert "BatchNorm" in why_not_packable(tc, nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    assert "Dropout" in why_not_packable(tc, nn.Sequential(nn.Dropout(0.1)))
    assert "scheduler" in why_not_packable(TrainConfig(pairing=MLP, scheduler="cosine"), nn.Linear(2, 2))
    assert packing_pays(nn.Linear(2, 2), "cpu") and packing_pays(nn.Conv2d(1, 1, 3), "cuda")
    assert not packing_pays(nn.Sequential(nn.Conv2d(1, 1, 3)), "cpu")
    a = resolve_config({"pairing": MLP, "seed": 1, "lr": 0.1, "data_per_class": 10}).config
    b = resolve_config({"pairing": MLP, "seed": 2, "lr": 0.2, "data_per_class": 30, "threads": 1}).config
    c = resolve_config({"pairing": MLP, "batch_size": 8}).config
    assert pack_key(a) == pack_key(b) != pack_key(c)


def test_run_pack_logs_one_child_run_per_member(tracking_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("t")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s1", "t", "abc", ("data_per_class",))
    configs = [{**BASE, "pairing": CNN, "log_to_mlflow": True, **m} for m in MEMBERS[:2]]
    states = []

    def fail_after_first_checkpoint(metrics, state):
        states.append(state)
        raise RuntimeError("worker lost")
    with pytest.raises(RuntimeError, match="worker lost"):
        run_pack(configs, info, report=fail_after_first_checkpoint, trial_id="trial_7")
    failed = client.search_runs([exp_id], "tags.pack_trial_id = 'trial_7'")
    assert len(failed) == 2 and {r.info.status for r in failed} == {"FAILED"}
    # The retry resumes from the epoch-2 checkpoint into the same runs; no step is written twice.
    reports = []
    outs = run_pack(configs, info, report=lambda m, s: reports.append((m, s)), restore=states[0], trial_id="trial_7")
    assert [m["epoch"] for m, _ in reports] == [4] and reports[-1][1] is not None
    last = reports[-1][0]
    assert last["pack_size"] == 2 and last["epochs_completed"] == 4
    assert {o["mlflow_run_id"] for o in outs} == {r.info.run_id for r in failed}
    for i, (cfg, out) in enumerate(zip(configs, outs)):
        ref = run_trial({**cfg, "log_to_mlflow": False})
        assert out["val_acc"] == pytest.approx(ref["val_acc"]) and last[f"m{i}/val_acc"] == out["val_acc"]
        assert out["confusion_matrix"] == ref["confusion_matrix"]
        run = client.get_run(out["mlflow_run_id"])
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED" and tags["trial_id"] == f"trial_7-m{i}"
        assert tags["mlflow.parentRunId"] == parent and tags["pack_size"] == "2" and tags["seed"] == str(cfg["seed"])
        assert params["data_per_class"] == str(cfg["data_per_class"]) and params["lr"] == str(cfg["lr"])
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss"))
        assert steps == [1, 2, 3, 4] and run.data.metrics["n_params"] == 606
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "history.json", "confusion_matrix.json", "samples.npz", "kernels"} <= files
    # Restarted once more after the runs finished (driver lost before Tune recorded it): nothing retrains.
    again = run_pack(configs, info, restore=states[0], trial_id="trial_7")
    for out, first in zip(again, outs):
        assert out["mlflow_run_id"] == first["mlflow_run_id"] and out["val_acc"] == pytest.approx(first["val_acc"])
        steps = [m.step for m in client.get_metric_history(out["mlflow_run_id"], "train_loss")]
        assert sorted(steps) == [1, 2, 3, 4] and client.get_run(out["mlflow_run_id"]).info.status == "FINISHED"
    # Restored from the final checkpoint without MLflow: the final metrics come from the history.
    done = run_pack([{**c, "log_to_mlflow": False} for c in configs], restore=reports[-1][1])
    for out, first in zip(done, outs):
        assert out["val_acc"] == first["val_acc"] and out["confusion_matrix"] == first["confusion_matrix"]


def test_run_pack_rejects_members_of_different_architectures():
    from core.errors import ConfigError

    configs = [{**BASE, "pairing": CNN, "kernel_size": k} for k in (3, 7)]
    with pytest.raises(ConfigError, match="kernel_size"):
        run_pack(configs)


def test_pack_of_one_is_an_unpacked_trial():
    cfg = {**BASE, "pairing": CNN, "data_per_class": 10}
    reports = []
    (out,) = run_pack([cfg], report=lambda m, s: reports.append((m, s)), trial_id="t")
    assert out["val_acc"] == pytest.approx(run_trial(cfg)["val_acc"])
    metrics, state = reports[-1]
    assert metrics["pack_size"] == 1 and metrics["m0/val_acc"] == out["val_acc"] and state["run_ids"] == [None]


def test_make_packs_groups_equal_sizes_and_keeps_cnn_unpacked_on_cpu():
    from cluster.tuner.packing import make_packs

    cells = [{"pairing": MLP, "data_per_class": n, "seed": s, "epochs": 3} for n in (10, 30) for s in range(6)]
    cells += [{"pairing": CNN, "data_per_class": n, "seed": s, "epochs": 3} for n in (10, 30) for s in range(2)]

    def sizes(plan, pairing):
        return sorted(sorted(c["data_per_class"] for c in p) for p in plan.packs if p[0]["pairing"] == pairing)
    for k, gpu in ((8, False), (4, False), (4, True), (1, False)):
        plan = make_packs(cells, k, gpu)
        flat = [c for pack in plan.packs for c in pack]
        assert sorted(map(repr, flat)) == sorted(map(repr, cells))  # every cell exactly once
    cpu8 = make_packs(cells, 8)
    assert sizes(cpu8, MLP) == [[10] * 6, [30] * 6]  # one pack per size, sizes never mixed on CPU
    assert sizes(cpu8, CNN) == [[10], [10], [30], [30]] and "convolutions" in cpu8.unpacked[CNN]
    assert all(len(p) == 1 for p in make_packs(cells, 4).packs)  # 6 = 3 + 3: packs under 5 do not pay on CPU
    gpu4 = make_packs(cells, 4, gpu=True)
    assert sizes(gpu4, MLP) == [[10] * 4, [10, 10, 30, 30], [30] * 4] and sizes(gpu4, CNN) == [[10, 10, 30, 30]]
    assert all(len(p) == 1 for p in make_packs(cells, 1).packs)


def test_make_packs_separates_what_must_not_share_a_pack():
    from cluster.tuner.packing import make_packs

    cells = [{"pairing": MLP, "batch_size": b, "seed": s} for b in (8, 16) for s in range(5)]
    cells += [{"pairing": MLP, "scheduler": "cosine", "seed": s} for s in range(5)]
    plan = make_packs(cells, 8)
    assert sorted(len(p) for p in plan.packs) == [1] * 5 + [5, 5]
    assert {p[0]["batch_size"] for p in plan.packs if len(p) == 5} == {8, 16}
    assert "scheduler" in plan.unpacked[MLP]


def test_pack_summary_lists_the_sizes_of_real_packs_and_why_cells_stay_unpacked():
    """The line `sweep run --pack K` prints: pack sizes are of packs (2+ members), a plain trial is none."""
    from cluster.tuner.packing import make_packs

    cells = [{"pairing": MLP, "seed": s} for s in range(5)] + [{"pairing": MLP, "scheduler": "cosine", "seed": s}
                                                               for s in range(2)]
    text = make_packs(cells, 8).summary(8)
    assert text.startswith(f"--pack 8: 7 trials in 3 Tune trials (pack sizes 5); {MLP} unpacked: "), text
    assert "scheduler" in text
    assert make_packs(cells, 1).summary(1) == f"--pack 1: 7 trials in 7 Tune trials; {MLP} unpacked: --pack 1"


def test_packed_space_rejects_searches_and_schedulers():
    from cluster.tuner.packing import packed_space
    from cluster.planning.plan import make_plan
    from search_spaces import get_experiment
    from core.errors import ConfigError

    plan = make_plan(get_experiment("edge-data-per-class"), seeds=1, smoke=True)
    space, packs = packed_space(plan, 4)
    assert len(space["members"]["grid_search"]) == len(packs.packs) == 4  # 1 seed: nothing pays on CPU
    space, packs = packed_space(plan, 4, gpu=True)
    assert sorted(len(p) for p in packs.packs) == [2, 2]
    with pytest.raises(ConfigError, match="scheduler"):
        packed_space(plan, 4, scheduler="asha")
    with pytest.raises(ConfigError, match="num-samples"):
        packed_space(make_plan(get_experiment("edge-data-per-class"), seeds=1, smoke=True, num_samples=2), 4)


@pytest.mark.slow
@pytest.mark.cluster
def test_packed_sweep_end_to_end(tmp_path, ray_shutdown, monkeypatch):
    """`sweep run --pack 8`: every member is its own finished MLflow child run, same cells as unpacked."""
    from cluster.cli import main
    from conftest import mlflow_runs

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main(["run", "edge-data-per-class", "--smoke", "--seeds", "5", "--pack", "8", "--name", "p1",
                 "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray_results"), "--set", "epochs=2",
                 "--set", "data_per_class=10"])
    assert code == 0
    parents, children = mlflow_runs(uri, "edge-data-per-class")
    assert len(parents) == 1 and len(children) == 10
    assert all(r.info.status == "FINISHED" for r in children)
    cells = sorted((r.data.params["pairing"], r.data.params["seed"]) for r in children)
    assert cells == sorted((p, str(s)) for p in (CNN, MLP) for s in range(10, 15))
    packed_mlp = [r for r in children if r.data.params["pairing"] == MLP]
    assert {r.data.tags["pack_size"] for r in packed_mlp} == {"5"}  # the 5 MLP seeds in one pack
    assert len({r.data.tags["pack_trial_id"] for r in packed_mlp}) == 1
    assert {r.data.tags["pack_size"] for r in children if r.data.params["pairing"] == CNN} == {"1"}
