"""Fabricated sweeps for the analysis tests: as DataFrames, and as a real MLflow sqlite store."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.sweep_data import SampleImages, SweepData

PAIRINGS = ("simple_cnn/edges", "three_layer_mlp/edges")
DATA = (10, 30)
SEEDS = (10, 11, 12)
EPOCHS = 4
LABELS = ["horizontal", "vertical", "none"]
REPORT_PLOTS = ["accuracy_vs_data", "curves", "kernels", "confusion", "params_vs_accuracy", "leaderboard",
                "param_explosion", "samples"]
# What cluster/flow/run.py (declaration) stores as sweep/experiment.json (dataclasses.asdict of the Experiment).
DECLARATION = {
    "description": "fabricated CNN vs MLP sweep", "plots": REPORT_PLOTS, "compare_with": [],
    "hypotheses": [{"text": "CNN > MLP", "better": PAIRINGS[0], "worse": PAIRINGS[1], "metric": "val_acc",
                    "mode": "max", "at": {"data_per_class": 10}, "other_experiment": None}],
    "search": None,
}


def accuracy(pairing: str, dpc: int, seed: int) -> float:
    """Known, seed-dependent final accuracy: the CNN is ~0.3 better than the MLP."""
    base = 0.9 if pairing.startswith("simple_cnn") else 0.6
    return round(base + 0.002 * dpc + 0.01 * (seed - 11), 4)


def trial_rows():
    """(run config, final metrics, history, artifacts) for every fabricated trial."""
    rng = np.random.default_rng(0)
    out = []
    for p in PAIRINGS:
        for dpc in DATA:
            for seed in SEEDS:
                acc = accuracy(p, dpc, seed)
                cnn = p.startswith("simple_cnn")
                params = {"pairing": p, "seed": seed, "data_per_class": dpc, "lr": 0.01 if seed != 12 else 0.05,
                          "epochs": EPOCHS, "kernel_size": 7 if seed != 11 else 3,
                          "hidden_dims": None if cnn else (50, 10)}
                hist = {"train_loss": [1.0 / e for e in range(1, EPOCHS + 1)],
                        "val_loss": [1.1 / e for e in range(1, EPOCHS + 1)],
                        "train_acc": [min(1.0, acc * e / EPOCHS + 0.05) for e in range(1, EPOCHS + 1)],
                        "val_acc": [acc * e / EPOCHS for e in range(1, EPOCHS + 1)]}
                shifts = {"shift_acc": [(s, acc - 0.02 * s * (0.2 if cnn else 1)) for s in (0, 2, 4)],
                          "shift_confidence": [(s, 0.9 - 0.03 * s) for s in (0, 2, 4)]}
                metrics = {"val_acc": acc, "best_val_acc": acc + 0.01, "val_loss": 1.1 / EPOCHS,
                           "n_params": 606 if cnn else 39793, "n_trainable_params": 606 if cnn else 39793,
                           "epochs_completed": EPOCHS, "train_time_s": 1.5,
                           "iou_original": 0.7 if cnn else 0.5, "iou_shifted": 0.65 - 0.01 * seed % 3 if cnn else 0.2}
                diag = 50 * acc
                matrix = np.full((3, 3), (50 - diag) / 2) + np.eye(3) * (diag - (50 - diag) / 2)
                kern = (rng.normal(size=(3, 1, 7, 7)), rng.normal(size=(3, 1, 7, 7))) if cnn else None
                out.append((params, metrics, hist, shifts, matrix, kern))
    return out


def fake_sweep_data() -> SweepData:
    """A SweepData with every kind of information the plots read."""
    runs, history, kernels, confusion = [], [], [], []
    for i, (params, metrics, hist, shifts, matrix, kern) in enumerate(trial_rows()):
        rid = f"run{i:02d}"
        runs.append({"run_id": rid, "status_reason": "completed", **params, **metrics})
        history += [(rid, k, e + 1, v) for k, vs in hist.items() for e, v in enumerate(vs)]
        history += [(rid, k, s, v) for k, vs in shifts.items() for s, v in vs]
        confusion.append((rid, LABELS, matrix))
        if kern is not None:
            kernels.append((rid, *kern))
    runs.append({"run_id": "failed", "status_reason": "failed", "pairing": PAIRINGS[0], "seed": 13,
                 "data_per_class": 10, "val_acc": 0.0})
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(30, 8, 8))
    perm = rng.permutation(64)
    samples = SampleImages(images=images.reshape(30, 64)[:, perm].reshape(30, 8, 8),
                           labels=np.repeat(np.arange(3), 10), class_names=LABELS,
                           unpermuted=images, title="edges")
    return SweepData(
        parent={"run_id": "parent", "name": "fake-sweep", "experiment": "fake-exp", "tags": {},
                "params": {}, "declaration": {"search": {"mode": "max", "grace_period": 1, "reduction_factor": 2}}},
        runs=pd.DataFrame(runs), history=pd.DataFrame(history, columns=["run_id", "key", "step", "value"]),
        swept_keys=["pairing", "data_per_class"],
        metrics=sorted(trial_rows()[0][1]), params=sorted(trial_rows()[0][0]),
        kernels=pd.DataFrame(kernels, columns=["run_id", "initial", "final"]),
        confusion=pd.DataFrame(confusion, columns=["run_id", "labels", "matrix"]), samples=samples)


def fake_store(root: Path, experiment: str = "fake-exp", sweep: str = "fake-sweep",
               swept=("pairing", "data_per_class")) -> tuple[str, str]:
    """Write a parent run and one child per trial into a sqlite MLflow store.

    Returns:
        (tracking URI, parent run id).
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment, artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(exp_id, run_name=sweep, tags={
        "sweep": sweep, "experiment": experiment, "role": "sweep", "swept_keys": json.dumps(list(swept)),
        "git_sha": "0123456", "search": "grid", "smoke": "true"})
    pid = parent.info.run_id
    client.log_batch(pid, params=[Param("epochs", str(EPOCHS))])
    client.log_text(pid, json.dumps(DECLARATION | {"name": experiment}), "sweep/experiment.json")
    client.set_terminated(pid)
    for i, (params, metrics, hist, shifts, matrix, kern) in enumerate(trial_rows()):
        run = client.create_run(exp_id, run_name=f"trial_{i}", tags={
            "mlflow.parentRunId": pid, "role": "trial", "sweep": sweep, "experiment": experiment,
            "pairing": params["pairing"], "model": params["pairing"].split("/")[0], "dataset": "edges",
            "seed": str(params["seed"]), "git_sha": "0123456", "trial_id": f"t{i}", "eval_split": "valid", "n_classes": "3",
            "status_reason": "completed"})
        rid = run.info.run_id
        ps = [Param(k, json.dumps(list(v)) if isinstance(v, tuple) else str(v)) for k, v in params.items()]
        ms = [Metric(k, v, 0, e + 1) for k, vs in hist.items() for e, v in enumerate(vs)]
        ms += [Metric(k, v, 0, s) for k, vs in shifts.items() for s, v in vs]
        ms += [Metric(k, float(v), 0, 0) for k, v in metrics.items() if k not in hist]
        client.log_batch(rid, metrics=ms, params=ps, tags=[RunTag("feature_cache_hit", "false")])
        client.log_dict(rid, {"labels": LABELS, "matrix": matrix.tolist()}, "confusion_matrix.json")
        if kern is not None:
            for name, arr in zip(("conv1_initial", "conv1_final"), kern):
                path = root / f"{name}.npy"
                np.save(path, arr)
                client.log_artifact(rid, str(path), "kernels")
        samples = root / "samples.npz"  # as trainables.artifacts.sample_inputs writes it: 10 per class
        x = np.random.default_rng(2).uniform(size=(30, 1, 8, 8)).astype(np.float32)
        np.savez_compressed(samples, x=x, y=np.repeat(np.arange(3), 10), class_names=np.asarray(LABELS))
        client.log_artifact(rid, str(samples))
        client.set_terminated(rid)
    return uri, pid
