"""Benchmark 3, packing: K trials of one architecture trained as one vmapped model vs one at a time.

Members differ in seed and lr (and, in the mixed case, data per class). Unpacked = K `Trainer`s
run one after another in one process; packed = one `PackedTrainer`. Both time the epochs only,
each in its own process (so the peak RSS of a pack can be compared with K single trials).
Trial-steps/s counts every member's real optimiser steps.

Run alone: `python -m benchmarks.bench_packing [--full]`.
"""
from __future__ import annotations

import time

from benchmarks.common import benchmark_main, Result, alternate, device_name, median, run_isolated

ARCHS = {"mlp": "three_layer_mlp/edges", "cnn": "simple_cnn/edges"}
LRS = (1e-2, 5e-3, 2e-2, 1e-3)


def _configs(arch: str, k: int, epochs: int, sizes: list[int]) -> list[dict]:
    return [{"pairing": ARCHS[arch], "data_per_class": sizes[i % len(sizes)], "seed": 10 + i,
             "lr": LRS[i % len(LRS)], "epochs": epochs, "log_to_mlflow": False, "threads": 1} for i in range(k)]


def _build(configs):
    import torch

    from trainables.resolve import resolve_config
    from trainables.trainable import load_data, make_model, pick_device

    torch.set_num_threads(1)
    device = pick_device("auto")
    rs = [resolve_config(c) for c in configs]
    bundles = [load_data(r) for r in rs]
    models = [make_model(r, b) for r, b in zip(rs, bundles)]
    steps = sum(-(-b.x_train.shape[0] // r.train.batch_size) * r.train.epochs for r, b in zip(rs, bundles))
    return rs, bundles, models, device, steps


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def packed(arch: str, k: int, epochs: int, sizes: list[int]) -> dict:
    """Train the K members as one PackedTrainer."""
    from trainables.packing import PackedTrainer

    rs, bundles, models, device, steps = _build(_configs(arch, k, epochs, sizes))
    trainer = PackedTrainer(models, bundles, [r.train for r in rs], device)
    _sync(device)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        trainer.run_epoch(epoch)
    accs = [trainer.history_rows(i, epochs, epochs)[0]["val_acc"] for i in range(k)]
    return {"seconds": time.perf_counter() - t0, "steps": steps, "val_acc": accs, "device": device.type}


def unpacked(arch: str, k: int, epochs: int, sizes: list[int]) -> dict:
    """Train the K members one after another, each with the framework's Trainer."""
    from trainables.loop import Trainer

    rs, bundles, models, device, steps = _build(_configs(arch, k, epochs, sizes))
    accs, seconds = [], 0.0
    for r, b, m in zip(rs, bundles, models):
        trainer = Trainer(m.to(device), b.to(device), r.train, device)
        _sync(device)
        t0 = time.perf_counter()
        for epoch in range(1, epochs + 1):
            trainer.run_epoch(epoch)
        accs.append(trainer.history_rows(epochs, epochs)[0]["val_acc"])  # waits for the device
        seconds += time.perf_counter() - t0
    return {"seconds": seconds, "steps": steps, "val_acc": accs, "device": device.type}


def compare(arch: str, k: int, epochs: int, sizes: list[int], repeats: int) -> tuple[float, dict, dict]:
    """(packed / unpacked trial-steps/s, last packed run, last unpacked run)."""
    last: dict[str, dict] = {}

    def measure(kind):
        last[kind] = run_isolated(f"benchmarks.bench_packing:{kind}", arch=arch, k=k, epochs=epochs, sizes=sizes)
        return last[kind]["steps"] / last[kind]["seconds"]
    rates = alternate({"packed": lambda: measure("packed"), "unpacked": lambda: measure("unpacked")}, repeats)
    return median(rates["packed"]) / median(rates["unpacked"]), last["packed"], last["unpacked"]


def _detail(k, epochs, sizes, p, u) -> str:
    return (f"K={k}, {epochs} epochs, data_per_class {sizes}: packed {p['steps'] / p['seconds']:.0f} vs unpacked "
            f"{u['steps'] / u['seconds']:.0f} trial-steps/s on {p['device']}")


def run(short: bool = True) -> list[Result]:
    repeats = 1 if short else 3
    gpu = device_name() == "cuda"
    results = []
    k, epochs = 8, (40 if short else 60)
    ratio, p, u = compare("mlp", k, epochs, [100], repeats)
    results.append(Result("3 packing", f"MLP packed K={k} / unpacked (equal sizes)", ratio,
                          target=None if gpu else 1.7, detail=_detail(k, epochs, [100], p, u)))
    single = run_isolated("benchmarks.bench_packing:unpacked", arch="mlp", k=1, epochs=epochs, sizes=[100])
    results.append(Result("3 packing", f"peak RSS of a K={k} MLP pack / sum of {k} single trials",
                          p["peak_rss_mb"] / (k * single["peak_rss_mb"]), target=1.0, higher_is_better=False,
                          detail=f"pack {p['peak_rss_mb']:.0f} MiB, one trial {single['peak_rss_mb']:.0f} MiB"))
    ratio, p, u = compare("mlp", k, epochs, [10, 30, 50, 100], repeats)
    results.append(Result("3 packing", f"MLP packed K={k} / unpacked (mixed sizes, masked steps)", ratio,
                          detail=_detail(k, epochs, [10, 30, 50, 100], p, u)))
    kc, ec = (8, 6) if short else (8, 20)
    ratio, p, u = compare("cnn", kc, ec, [100], repeats)
    results.append(Result("3 packing", f"CNN packed K={kc} / unpacked (measured)", ratio,
                          detail=_detail(kc, ec, [100], p, u)))
    # `sweep run --pack` keeps conv models unpacked on CPU (trainables.packing.packing_pays), so what a
    # sweep gets is max(packed, unpacked): never slower.
    effective = ratio if gpu else 1.0
    results.append(Result("3 packing", "CNN with the automatic rule (sweep --pack)", effective, target=1.0,
                          detail="packed on GPU" if gpu else
                          f"CPU: falls back to unpacked (packed would be {ratio:.2f}x)"))
    if gpu:
        kg, eg = 32, (10 if short else 40)
        for arch in ("mlp", "cnn"):
            ratio, p, u = compare(arch, kg, eg, [100], 1)
            results.append(Result("3 packing", f"GPU {arch.upper()} packed K={kg} / one trial at a time", ratio,
                                  target=10.0, detail=_detail(kg, eg, [100], p, u)))
    return results


def main() -> None:
    benchmark_main(run, __doc__)


if __name__ == "__main__":
    main()
