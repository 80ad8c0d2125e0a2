"""Benchmark 2, trial speed: the trainable's training loop vs the notebook loop, same config and seed.

Both train the same model (same initial weights) on the same images (the notebook's global
NumPy stream, which `data_stream="notebook"` replays) with batch 32 and an evaluation after
every epoch, one thread each; each runs in its own process (peak RSS = one trial). Only the
epochs are timed (data building is excluded on both sides). Shuffling orders differ (DataLoader's
sampler vs the trainable's generator), so final accuracies agree within noise, not exactly.

Run alone: `python -m benchmarks.bench_trial [--full]`.
"""
from __future__ import annotations

import time

from benchmarks.common import benchmark_main, Result, alternate, median, run_isolated

ARCHS = {"mlp": "three_layer_mlp/edges", "cnn": "simple_cnn/edges"}
TARGETS = {"mlp": 5.0, "cnn": 1.5}


def _config(arch: str, epochs: int, data_per_class: int) -> dict:
    return {"pairing": ARCHS[arch], "data_per_class": data_per_class, "epochs": epochs, "seed": 10,
            "data_stream": "notebook", "log_to_mlflow": False, "threads": 1}


def trainable_loop(arch: str, epochs: int, data_per_class: int = 100) -> dict:
    """The framework's Trainer (tensor slicing, device-side metrics) on the trial's bundle."""
    import torch

    from trainables.loop import Trainer
    from trainables.spec import resolve_config
    from trainables.trainable import load_data, make_model, pick_device

    torch.set_num_threads(1)
    r = resolve_config(_config(arch, epochs, data_per_class))
    device = pick_device("auto")
    bundle = load_data(r).to(device)
    model = make_model(r).to(device)
    trainer = Trainer(model, bundle, r.train, device)
    steps_per_epoch = -(-bundle.x_train.shape[0] // r.train.batch_size)
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        trainer.run_epoch(epoch)
    last = trainer.history_rows(epochs, epochs)[0]  # reading the history waits for the device
    return {"seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "steps": epochs * steps_per_epoch, "val_acc": last["val_acc"], "device": device.type}


def notebook_loop(arch: str, epochs: int, data_per_class: int = 100) -> dict:
    """The notebook's loop: PIL dataset + ToTensor + DataLoader, `.item()` per step, same model init."""
    import torch

    from benchmarks import notebook
    from trainables.spec import resolve_config
    from trainables.trainable import make_model, pick_device

    torch.set_num_threads(1)
    r = resolve_config(_config(arch, epochs, data_per_class))
    device = pick_device("auto")
    model = make_model(r).to(device)
    train, valid = notebook.make_loaders(sorted({10, 30, 50, 100, data_per_class}), seed=10)
    t0, c0 = time.perf_counter(), time.process_time()
    val_acc, steps = notebook.train_model(model, epochs, train[data_per_class], valid, device)
    return {"seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "steps": steps,
            "val_acc": val_acc, "device": device.type}


def run(short: bool = True) -> list[Result]:
    """MLP and CNN, trial-steps/s of both loops; short: fewer epochs, one repeat."""
    epochs = {"mlp": 30, "cnn": 10} if short else {"mlp": 150, "cnn": 60}
    repeats = 1 if short else 3
    results = []
    for arch in ("mlp", "cnn"):
        runs: dict[str, list[dict]] = {"trainable": [], "notebook": []}

        def measure(kind):
            out = run_isolated(f"benchmarks.bench_trial:{kind}_loop", arch=arch, epochs=epochs[arch])
            runs[kind].append(out)
            return out["steps"] / out["seconds"]
        rates = alternate({"trainable": lambda: measure("trainable"), "notebook": lambda: measure("notebook")},
                          repeats)
        fast, slow = median(rates["trainable"]), median(rates["notebook"])
        t, n = runs["trainable"][-1], runs["notebook"][-1]
        detail = (f"{epochs[arch]} epochs x {t['steps'] // epochs[arch]} steps on {t['device']}: trainable "
                  f"{fast:.0f} steps/s (val_acc {t['val_acc']:.3f}, peak RSS {t['peak_rss_mb']:.0f} MiB) vs "
                  f"notebook {slow:.0f} steps/s (val_acc {n['val_acc']:.3f}, peak RSS {n['peak_rss_mb']:.0f} MiB)")
        results.append(Result("2 trial speed", f"{arch.upper()} trainable loop / notebook loop", fast / slow,
                              target=TARGETS[arch], detail=detail,
                              extra={"trainable": runs["trainable"], "notebook": runs["notebook"]}))
    return results


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
