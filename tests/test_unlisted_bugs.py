"""Behaviours a round of fresh seeded bugs (issue 25) showed the suite did not watch.

Each test names the behaviour it guards; tests/mutation/NOTES.md lists the bug each one was
checked against (the bug applied, the test seen failing, the bug reverted).
"""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from core import store_schema as SS
from core.errors import ConfigError

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"


# ---- adaptive replicates: the design the searcher tested with reaches the record and the reports ---

def test_adaptive_parent_run_records_the_design_it_tested_with():
    from analysis.report import decision_design, decision_rule
    from analysis.sweep_data import SweepData
    from cluster.flow.adaptive import AdaptiveSettings

    s = AdaptiveSettings(first=3, max_seeds=12, alpha=0.05)  # looks at 3, 6, 9, 12 seeds
    tags = s.parent_tags()
    data = SweepData(parent={"name": "s", "tags": tags}, runs=pd.DataFrame())
    alpha, rule = decision_rule(data)
    assert alpha == 0.05 and float(tags[SS.TAG_ALPHA]) == 0.05 and "4 looks" in rule
    design, sequential = decision_design(data)  # what the report rebuilds from the parent run
    assert sequential and design.looks == s.design.looks == (3, 6, 9, 12)
    assert design.levels == pytest.approx(s.design.levels)


def _study_sweep(tags: dict, a: list[float], b: list[float]):
    from analysis.sweep_data import SweepData
    from search_spaces import get_experiment

    rows = [{"run_id": f"{p}-{i}", "pairing": p, "data_per_class": 10, "seed": 10 + i, "val_acc": v,
             "status_reason": "completed"}
            for p, side in ((CNN, a), (MLP, b)) for i, v in enumerate(side)]
    decl = json.loads(json.dumps(dataclasses.asdict(get_experiment("edge-data-per-class")), default=repr))
    return SweepData(parent={"name": "study.dpc", "experiment": "edge-data-per-class", "tags": tags, "params": {},
                             "declaration": decl},
                     runs=pd.DataFrame(rows), swept_keys=["pairing", "data_per_class"], metrics=["val_acc"])


def test_study_report_judges_an_adaptive_sweep_under_its_design():
    """Three seeds a side, clearly apart: one look at 0.05 decides; the first look of a 4-look
    O'Brien-Fleming design (level < 1e-4) does not. The study must judge as the sweep looked."""
    from analysis.study import study_verdicts
    from cluster.flow.adaptive import AdaptiveSettings

    a, b = [0.74, 0.76, 0.80], [0.64, 0.68, 0.70]
    adaptive = AdaptiveSettings(first=3, max_seeds=12).parent_tags()
    fixed = study_verdicts({"edge-data-per-class": _study_sweep({}, a, b)}).verdicts["edge-data-per-class"]
    looked = study_verdicts({"edge-data-per-class": _study_sweep(adaptive, a, b)}).verdicts["edge-data-per-class"]
    at10 = lambda rs: [r for r in rs if "=10" in r.text or "=10" in r.where]  # noqa: E731
    assert at10(fixed) and at10(looked)
    assert at10(fixed)[0].verdict != at10(looked)[0].verdict, (at10(fixed)[0].verdict, at10(looked)[0].verdict)


# ---- reading the store: only completed trials are results ----------------------------------------

def test_child_run_killed_before_it_was_tagged_is_not_a_result(tracking_uri):
    from mlflow.tracking import MlflowClient

    from analysis.load import load_sweep

    client = MlflowClient(tracking_uri)
    for exp_name, tag_done in (("tagged", True), ("untagged", False)):
        exp = client.create_experiment(exp_name)
        parent = client.create_run(exp, run_name="sw", tags={"sweep": "sw", "role": "sweep",
                                                             "swept_keys": json.dumps(["pairing"])}).info.run_id
        client.set_terminated(parent)
        for i, (status, seed) in enumerate((("FINISHED", 1), ("KILLED", 2), ("RUNNING", 3), ("FAILED", 4))):
            tags = {"mlflow.parentRunId": parent, "role": "trial", "sweep": "sw", "pairing": CNN}
            if status == "FINISHED" and tag_done:
                tags["status_reason"] = "completed"
            rid = client.create_run(exp, run_name=f"t{i}", tags=tags).info.run_id
            client.log_param(rid, "seed", seed)
            client.log_metric(rid, "val_acc", 0.9)
            if status != "RUNNING":
                client.set_terminated(rid, status)
        data = load_sweep(tracking_uri, experiment=exp_name)
        reasons = dict(zip(data.runs["seed"], data.runs["status_reason"]))
        assert reasons[1] == "completed", exp_name
        assert all(reasons[s] != "completed" for s in (2, 3, 4)), (exp_name, reasons)
        assert list(data.completed["seed"]) == [1], exp_name


# ---- intervals of accuracies stay inside [0, 1] ---------------------------------------------------

def test_accuracy_interval_lower_bound_is_clipped_to_zero():
    from analysis.aggregate import interval
    from analysis.stats import bootstrap_interval, diff_interval

    mean, low, high = bootstrap_interval([0.0, 0.02])  # t-interval with 2 seeds: mean - half < 0
    assert mean == pytest.approx(0.01) and low == 0.0 and high == pytest.approx(0.01 + 12.706 * 0.01, rel=1e-3)
    mean, low, high = bootstrap_interval([0.0, 0.01, 0.0, 0.02, 0.0])
    assert low >= 0.0 and high <= 1.0
    _, _, lo, hi = interval(pd.Series([0.0, 0.02]), "val_acc")
    assert lo == 0.0 and 0.0 < hi <= 1.0
    d, dlo, dhi = diff_interval([0.0, 1.0], [1.0, 0.0])
    assert d == 0.0 and dlo == -1.0 and dhi == 1.0  # difference of accuracies: within [-1, 1]


# ---- packs: one member finished earlier, restores per member ----------------------------------------

BASE = {"valid_per_class": 10, "epochs": 4, "report_every": 2, "checkpoint_every": 2}


def test_pack_with_one_member_finished_earlier_trains_and_completes_the_others(tracking_uri, monkeypatch):
    """Member 0 completed, then the worker died finishing member 1 (its run left RUNNING): the retry
    trains on and completes member 1; it is not taken as finished with its partial run."""
    from mlflow.tracking import MlflowClient

    from trainables.packed_trainable import run_pack
    from trainables.tracking import TrackingInfo, TrialRun

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("p")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(tracking_uri, exp_id, parent, "s1", "p", "abc", ("data_per_class",))
    configs = [{**BASE, "pairing": MLP, "data_per_class": 10, "seed": s, "log_artifacts": False} for s in (10, 11)]
    states = []
    real_complete = TrialRun.complete
    calls = []

    def die_on_second(self):
        calls.append(self.run_id)
        if len(calls) == 2:
            raise SystemExit("worker lost while finishing member 1")
        real_complete(self)

    monkeypatch.setattr(TrialRun, "complete", die_on_second)
    with pytest.raises(SystemExit):
        run_pack(configs, info, report=lambda m, s: states.append(s), trial_id="tp")
    monkeypatch.setattr(TrialRun, "complete", real_complete)
    runs = {r.data.tags["pack_member"]: r for r in client.search_runs([exp_id], "tags.pack_trial_id = 'tp'")}
    assert runs["0"].info.status == "FINISHED" and runs["1"].info.status == "RUNNING"

    reports = []
    outs = run_pack(configs, info, report=lambda m, s: reports.append(m), restore=states[0], trial_id="tp")
    assert [m["epoch"] for m in reports] == [4]
    for i, out in enumerate(outs):
        run = client.get_run(runs[str(i)].info.run_id)
        assert run.info.status == "FINISHED" and run.data.tags.get("status_reason") == "completed", i
        assert out["epochs_completed"] == 4 and "confusion_matrix" in out
    assert client.get_run(runs["0"].info.run_id).info.end_time == runs["0"].info.end_time  # not rewritten


def test_restored_pack_members_keep_their_own_best_accuracy():
    from trainables.packed_trainable import run_pack

    # Member 0 learns, member 1 barely moves (tiny lr): their bests differ by far.
    # Restored after epoch 4 of 6: member 0's best so far is far above anything member 1 reaches.
    base = {**BASE, "epochs": 6, "report_every": 2, "checkpoint_every": 4, "pairing": MLP, "log_to_mlflow": False,
            "data_per_class": 30, "optimizer": "adam"}
    configs = [{**base, "seed": 10, "lr": 0.01}, {**base, "seed": 11, "lr": 1e-7}]
    states, reports = [], []
    whole = run_pack(configs, report=lambda m, s: (states.append(s), reports.append(m)))
    first = [s for s in states if s is not None][0]
    assert first["epoch"] == 4
    assert max(reports[1]["m0/best_val_acc"], reports[0]["m0/best_val_acc"]) > whole[1]["best_val_acc"] + 0.1
    resumed_reports = []
    resumed = run_pack(configs, report=lambda m, s: resumed_reports.append(m), restore=first)
    for i in range(2):
        assert resumed[i]["best_val_acc"] == pytest.approx(whole[i]["best_val_acc"]), i
        assert resumed_reports[-1][f"m{i}/best_val_acc"] == pytest.approx(reports[-1][f"m{i}/best_val_acc"]), i


# ---- buffered MLflow writes: a flush drains the whole buffer -----------------------------------------

def test_flush_drains_the_buffer_in_batches(tracking_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    from trainables import tracking as T

    monkeypatch.setattr(T, "MAX_BATCH", 7)
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("f")
    parent = client.create_run(exp_id).info.run_id
    run = T.TrialRun(T.TrackingInfo(tracking_uri, exp_id, parent, "s", "f"), "t1", None, "t1", {})
    for epoch in range(1, 11):
        run.add(epoch, {"train_loss": 1.0 / epoch, "val_acc": epoch / 10})  # 20 values: 3 batches of 7
    run.flush()
    assert run.buffer == []
    steps = sorted(m.step for m in client.get_metric_history(run.run_id, "train_loss"))
    assert steps == list(range(1, 11))
    assert len(client.get_metric_history(run.run_id, "val_acc")) == 10
    # A trial stopped by the scheduler flushes once, through finish(): nothing is left behind.
    for epoch in range(11, 21):
        run.add(epoch, {"train_loss": 1.0 / epoch, "val_acc": 0.5})
    run.finish("KILLED")
    assert len(client.get_metric_history(run.run_id, "val_acc")) == 20


# ---- validation: an evaluator's settings only with that evaluator ------------------------------------

def test_evaluator_keys_are_refused_for_trials_without_that_evaluator():
    from trainables.spec import resolve_config

    with pytest.raises(ConfigError, match="shift_max needs evaluators to include 'shift_robustness'"):
        resolve_config({"pairing": MLP, "shift_max": 4})
    spec = resolve_config({"pairing": MLP, "shift_max": 4}, strict=False)
    assert "shift_max" in spec.unused and "shift_max" not in spec.applied_params()
    assert "shift_max" not in spec.config
