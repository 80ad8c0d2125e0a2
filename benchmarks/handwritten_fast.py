"""The careful hand-written baseline of issue 22: the same trials as `sweep run edge-data-per-class
--seeds 1`, run the way an expert would without a framework.

Two forked worker processes (forked before torch is imported; each imports torch and the trial
code once, in parallel), tensor data, the project's own trial code (`trainables.trainable.run_trial`,
so the arithmetic is the sweep's), MLflow imported and the parent run created in a thread while
the workers train, then one `log_batch` per trial (params, per-report metrics) and every child run
FINISHED. No Ray, no checkpoints, no retries. Phases are marked with core.phases like a sweep's.

Run alone: `python -m benchmarks.handwritten_fast --epochs 1 --sizes 10 --work /tmp/hw`.
"""
from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from pathlib import Path

from core import phases

EXPERIMENT = "edge-data-per-class-handwritten"
MODELS = {"simple_cnn/edges": {"kernel_size": 7}, "three_layer_mlp/edges": {"hidden_dims": (50, 10)}}


def configs(epochs: int, sizes: list[int], seed: int = 10) -> list[dict]:
    """The sweep's trial configs (cluster.planning.plan for edge-data-per-class, 1 seed), written out."""
    return [{"lr": 0.01, "epochs": epochs, "data_per_class": n, "pairing": pairing, "seed": seed, "threads": 1,
             "log_to_mlflow": False, **extra}
            for n in sizes for pairing, extra in MODELS.items()]


def _warm() -> None:
    import torch  # noqa: F401

    import trainables.trainable  # noqa: F401


def _trial(config: dict) -> tuple[dict, list[dict], float, float]:
    from trainables.trainable import run_trial

    history: list[dict] = []
    start = time.time()
    run_trial(config, tracking=None, report=lambda metrics, state: history.append(dict(metrics)))
    return config, history, start, time.time()


def _mlflow(uri: str, out: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT)
    parent = client.create_run(exp_id, run_name=f"handwritten-{time.strftime('%H%M%S')}").info.run_id
    out.update(client=client, exp_id=exp_id, parent=parent)
    phases.mark("mlflow_ready")


def _log(client, exp_id: str, parent: str, config: dict, history: list[dict], start: float, end: float) -> None:
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, start_time=int(start * 1000), run_name=f"{config['pairing']}-{config['data_per_class']}",
                            tags={"mlflow.parentRunId": parent})
    params = [Param(k, str(v)) for k, v in sorted(config.items())]
    metrics = [Metric(k, float(v), int(end * 1000), int(row.get("epoch", i)))
               for i, row in enumerate(history) for k, v in row.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    client.log_batch(run.info.run_id, metrics=metrics, params=params)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=int(end * 1000))


def run(epochs: int, sizes: list[int], work: str, workers: int = 2) -> dict:
    phases.mark("cli_imported")
    work_path = Path(work).resolve()
    work_path.mkdir(parents=True, exist_ok=True)
    trials = configs(epochs, sizes)
    phases.mark("planned")
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(min(workers, len(trials)), initializer=_warm)
    tracking: dict = {}
    setup = threading.Thread(target=_mlflow, args=(f"sqlite:///{work_path}/mlflow.db", tracking))
    setup.start()
    phases.mark("fit_start")
    done = []
    for result in pool.imap_unordered(_trial, trials):
        phases.mark("first_result", once=True)
        done.append(result)
    phases.mark("last_result")
    pool.close()
    setup.join()
    client = tracking["client"]
    for config, history, start, end in done:
        _log(client, tracking["exp_id"], tracking["parent"], config, history, start, end)
    client.set_terminated(tracking["parent"], "FINISHED")
    phases.mark("logged")
    for config, history, _, _ in sorted(done, key=lambda d: (d[0]["pairing"], d[0]["data_per_class"])):
        last = history[-1] if history else {}
        print(f"{config['pairing']:<24} {config['data_per_class']:>4}  val_acc {last.get('val_acc', float('nan')):.3f}")
    phases.mark("results_table")
    pool.join()
    return {"trials": len(done)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--sizes", default="10,30,50,100", help="data_per_class values (the sweep's grid)")
    p.add_argument("--work", required=True)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    if phases.enabled():
        import atexit

        atexit.register(phases.mark, "exit")
    run(args.epochs, [int(s) for s in args.sizes.split(",")], args.work, args.workers)


if __name__ == "__main__":
    main()
