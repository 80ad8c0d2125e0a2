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

    from trainables.spec import resolve_config
    from trainables.trainable import load_data, make_model, pick_device

    torch.set_num_threads(1)
    device = pick_device("auto")
    rs = [resolve_config(c) for c in configs]
    bundles = [load_data(r) for r in rs]
    models = [make_model(r) for r in rs]
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


def idle(arch: str, k: int, epochs: int, sizes: list[int]) -> dict:
    """What a trial process holds before training: imports, the members' data and models, no step."""
    _build(_configs(arch, k, epochs, sizes))
    return {}


def auto(arch: str, k: int, epochs: int, sizes: list[int]) -> dict:
    """What `sweep run --pack K` trains: the cells grouped by cluster.tuner.packing.make_packs (the automatic
    rule), packs of 2+ as one PackedTrainer, the cells it leaves unpacked with the plain Trainer."""
    from cluster.tuner.packing import make_packs
    from trainables.loop import Trainer
    from trainables.packing import PackedTrainer

    configs = _configs(arch, k, epochs, sizes)
    packs = make_packs(configs, k, gpu=device_name() == "cuda").packs
    seconds, steps, accs, device = 0.0, 0, [], None
    for pack in packs:
        rs, bundles, models, device, n = _build(pack)
        steps += n
        if len(pack) > 1:
            trainer = PackedTrainer(models, bundles, [r.train for r in rs], device)
            _sync(device)
            t0 = time.perf_counter()
            for epoch in range(1, epochs + 1):
                trainer.run_epoch(epoch)
            accs += [trainer.history_rows(i, epochs, epochs)[0]["val_acc"] for i in range(len(pack))]
        else:
            trainer = Trainer(models[0].to(device), bundles[0].to(device), rs[0].train, device)
            _sync(device)
            t0 = time.perf_counter()
            for epoch in range(1, epochs + 1):
                trainer.run_epoch(epoch)
            accs.append(trainer.history_rows(epochs, epochs)[0]["val_acc"])
        seconds += time.perf_counter() - t0
    return {"seconds": seconds, "steps": steps, "val_acc": accs, "device": device.type,
            "packed_cells": sum(len(p) for p in packs if len(p) > 1)}


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
    # Peak RSS, like with like. Every figure is one process's peak (ru_maxrss), mostly the interpreter
    # with torch, Ray's and the framework's imports. (a) what the pack's process needs against what the
    # same K trials need unpacked, one after another in one process; (b) the memory the pack adds above
    # an idle process (imports + the members' data and models) against what K single-trial processes
    # add above theirs, i.e. without counting K interpreters on one side only.
    single = run_isolated("benchmarks.bench_packing:unpacked", arch="mlp", k=1, epochs=epochs, sizes=[100])
    idle_k = run_isolated("benchmarks.bench_packing:idle", arch="mlp", k=k, epochs=epochs, sizes=[100])
    idle_1 = run_isolated("benchmarks.bench_packing:idle", arch="mlp", k=1, epochs=epochs, sizes=[100])
    results.append(Result("3 packing", f"peak RSS, one process: K={k} MLP pack / the {k} trials unpacked in turn",
                          p["peak_rss_mb"] / u["peak_rss_mb"], target=1.0, higher_is_better=False,
                          detail=f"pack {p['peak_rss_mb']:.0f} MiB, unpacked {u['peak_rss_mb']:.0f} MiB "
                                 f"(same imports, data and models in both processes)"))
    added_pack = max(p["peak_rss_mb"] - idle_k["peak_rss_mb"], 0.0)
    added_single = max(single["peak_rss_mb"] - idle_1["peak_rss_mb"], 0.0)
    results.append(Result("3 packing", f"training memory above an idle process: K={k} pack / {k} single trials",
                          added_pack / max(k * added_single, 1e-9), higher_is_better=False,
                          detail=f"pack {p['peak_rss_mb']:.0f} - idle {idle_k['peak_rss_mb']:.0f} = {added_pack:.1f} MiB; "
                                 f"{k} x (one trial {single['peak_rss_mb']:.0f} - idle {idle_1['peak_rss_mb']:.0f}) = "
                                 f"{k * added_single:.1f} MiB. Running the {k} trials as {k} processes also costs "
                                 f"{k} interpreters ({k} x {idle_1['peak_rss_mb']:.0f} MiB)"))
    ratio, p, u = compare("mlp", k, epochs, [10, 30, 50, 100], repeats)
    results.append(Result("3 packing", f"MLP packed K={k} / unpacked (mixed sizes, masked steps)", ratio,
                          detail=_detail(k, epochs, [10, 30, 50, 100], p, u)))
    kc, ec = (8, 6) if short else (8, 20)
    ratio, p, u = compare("cnn", kc, ec, [100], repeats)
    results.append(Result("3 packing", f"CNN packed K={kc} / unpacked (measured)", ratio,
                          detail=_detail(kc, ec, [100], p, u)))
    # `sweep run --pack` groups cells with cluster.tuner.packing.make_packs, which keeps conv models unpacked
    # on CPU (trainables.packing.packing_pays): measured here by training what the rule chose. The
    # target allows 5% for timing noise between two runs of the same unpacked work.
    auto_runs, unpacked_runs = [], []
    for _ in range(repeats):  # interleaved, like alternate()
        auto_runs.append(run_isolated("benchmarks.bench_packing:auto", arch="cnn", k=kc, epochs=ec, sizes=[100]))
        unpacked_runs.append(run_isolated("benchmarks.bench_packing:unpacked", arch="cnn", k=kc, epochs=ec,
                                          sizes=[100]))
    a_rate = median([r["steps"] / r["seconds"] for r in auto_runs])
    u_rate = median([r["steps"] / r["seconds"] for r in unpacked_runs])
    packed_cells = auto_runs[-1]["packed_cells"]
    results.append(Result("3 packing", f"CNN with the automatic rule (sweep --pack {kc}) / unpacked", a_rate / u_rate,
                          target=0.95, detail=f"the rule packed {packed_cells} of {kc} cells on {p['device']}: "
                                              f"{a_rate:.0f} vs {u_rate:.0f} trial-steps/s unpacked (packing them "
                                              f"all measured {ratio:.2f}x above)"))
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
