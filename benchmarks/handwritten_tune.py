"""The baseline sweep of benchmark 1: the notebook's code ported to Ray Tune by hand.

What a first port looks like: the notebook's PIL dataset and DataLoader inside a function
trainable, one `tune.report` per epoch, MLflow through Ray's own `MLflowLoggerCallback` (one
`log_metric` per value from the driver), Tune defaults otherwise (no actor reuse). Same 8 trials as
`sweep run edge-data-per-class --seeds 1`.

Run alone: `python -m benchmarks.handwritten_tune --epochs 200 --work /tmp/hw`.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

SIZES = [10, 30, 50, 100]


def trainable(config: dict) -> None:
    """One trial, notebook style: build the loaders, the model, train and report every epoch."""
    import torch
    from ray import tune

    from benchmarks import notebook

    train, valid = notebook.make_loaders((config["data_per_class"],), seed=10)
    cnn, mlp = notebook.make_models(10)
    model = cnn if config["model"] == "simple_cnn" else mlp
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    for epoch in range(1, config["epochs"] + 1):
        train_loss, train_acc = notebook.train_epoch(model, opt, train[config["data_per_class"]], device)
        val_loss, val_acc, _ = notebook.evaluate(model, valid, device)
        tune.report({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                     "val_acc": val_acc})


def run_sweep(epochs: int, work: str, cpus: int | None = None) -> dict:
    """Run the 8 trials; returns wall time (Ray start to results) and the trials' own training time."""
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    t0 = time.perf_counter()
    work_path = Path(work).resolve()
    work_path.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"model": tune.grid_search(["simple_cnn", "three_layer_mlp"]),
                         "data_per_class": tune.grid_search(SIZES), "lr": 1e-2, "epochs": epochs},
            run_config=tune.RunConfig(
                name="handwritten", storage_path=str(work_path / "ray_results"), verbose=0,
                callbacks=[MLflowLoggerCallback(tracking_uri=f"sqlite:///{work_path}/mlflow.db",
                                                experiment_name="handwritten", save_artifact=False)]))
        results = tuner.fit()
        trial_s = sum(r.metrics.get("time_total_s", 0.0) for r in results)
        errors = sum(r.error is not None for r in results)
    finally:
        ray.shutdown()
    if errors:
        raise RuntimeError(f"{errors} hand-written trials failed")
    return {"seconds": time.perf_counter() - t0, "trial_seconds": trial_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--work", required=True)
    args = p.parse_args()
    out = run_sweep(args.epochs, args.work)
    print(f"hand-written Tune sweep: {out['seconds']:.1f} s wall, trials trained {out['trial_seconds']:.1f} s")


if __name__ == "__main__":
    main()
