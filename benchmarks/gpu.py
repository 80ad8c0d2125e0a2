"""GPU benchmark that needs only torch and numpy (no Ray, MLflow, pandas or torchvision).

    python -m benchmarks.gpu                       # one GPU, about 5 minutes (hard budget 6)
    python -m benchmarks.gpu --device cpu --quick  # CPU dry run of every code path, < 1 minute

Every figure is a ratio of two measurements taken side by side in this run, warm-up excluded
(the first epoch of every trainer, a warm-up trial in every process), on generated data:

1. packing: K = 1, 8, 32, 64 edge MLP / edge CNN members as one PackedTrainer vs the same K
   members trained one by one (trial-steps/s; target K=32 >= 10x); plus the flat (fused) packed
   optimiser vs the per-parameter one at K=32.
2. sharing a GPU: N = 1, 2, 4, 8 processes each running the real trial code (`run_trial`, logging
   off) at once on one GPU, what `--gpus-per-trial 1/N` gives, for an edge CNN trial and a
   CIFAR-10 LabCNN trial (trials/s vs N=1; target N=4 >= 2.5x).
3. the trial loop (`trainables.loop.Trainer`) vs a plain notebook loop (DataLoader over CPU
   tensors, `.to(device)` and `.item()` per step) on the GPU, MLP and CNN (target >= 3x), and the
   opt-in `cuda_graphs` step vs the eager one.
4. CIFAR-10 LabCNN epoch with the data resident on the GPU: fp32 vs `amp=bf16`, `channels_last`,
   both, and `cuda_graphs`.

Writes benchmarks/out/gpu.json and benchmarks/results-gpu.md (GPU name, torch version). A CPU run
writes the same files marked "CPU DRY RUN": those figures are not GPU figures, never commit them
as such. `packing_rule` turns the packing figures into the recommended `--pack K` per model family.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "benchmarks" / "out" / "gpu.json"
OUT_MD = ROOT / "benchmarks" / "results-gpu.md"
FAMILIES = {"mlp": "three_layer_mlp/edges", "cnn": "simple_cnn/edges"}
LRS = (1e-2, 5e-3, 2e-2, 1e-3)
# The packing rule: among measured K > 1, the smallest K within 10% of the best packed/unpacked
# ratio; a family packs only if that ratio is at least PACK_PAYS.
PACK_NEAR_BEST, PACK_PAYS = 0.9, 1.5


class Plan:
    """Sizes of every measurement: the GPU run and the quick CPU dry run differ only here."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.ks = (1, 2) if quick else (1, 8, 32, 64)
        self.k_fused = 2 if quick else 32
        self.pack_epochs = 1 if quick else 10
        self.data_per_class = 10 if quick else 100  # edge members of 1. and 3.: 30 or 300 images
        self.ns = (1, 2) if quick else (1, 2, 4, 8)
        self.share_trials = 1 if quick else 3
        self.edge_trial = {"data_per_class": 10 if quick else 100, "epochs": 1 if quick else 100}
        self.cifar_trial = {"train_subset": 64 if quick else 10_000, "eval_subset": 32 if quick else 2_000,
                            "epochs": 1 if quick else 2}
        self.loop_epochs = 1 if quick else 30
        self.cifar_train, self.cifar_test = (100, 50) if quick else (50_000, 10_000)
        self.cifar_epochs = 1 if quick else 2


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn) -> float:
    """Wall seconds of fn(), the device drained before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def row(section: str, name: str, value: float, target: float | None = None, unit: str = "x",
        detail: str = "") -> dict[str, Any]:
    passed = None if target is None or not math.isfinite(value) else value >= target
    return {"section": section, "name": name, "value": value, "unit": unit, "target": target, "passed": passed,
            "detail": detail}


# ---------------------------------------------------------------- 1. packing


def member_configs(pairing: str, k: int, epochs: int, device: str, data_per_class: int) -> list[dict]:
    return [{"pairing": pairing, "data_per_class": data_per_class, "seed": 10 + i, "lr": LRS[i % len(LRS)],
             "epochs": epochs + 1, "log_to_mlflow": False, "device": device} for i in range(k)]


def bench_packing(plan: Plan, device: torch.device) -> tuple[list[dict], dict]:
    from trainables.loop import Trainer
    from trainables.packing import PackedTrainer
    from trainables.spec import resolve_config
    from trainables.trainable import load_data, make_model

    rows, raw = [], {}
    epochs = plan.pack_epochs
    for family, pairing in FAMILIES.items():
        rs = [resolve_config(c) for c in member_configs(pairing, max(plan.ks), epochs, device.type, plan.data_per_class)]
        bundles = [load_data(r) for r in rs]
        steps = [math.ceil(b.x_train.shape[0] / r.train.batch_size) * epochs for r, b in zip(rs, bundles)]
        alone_s = []  # each member alone: one warm-up epoch, then `epochs` timed epochs
        for r, b in zip(rs, bundles):
            b = load_data(r).to(device)
            trainer = Trainer(make_model(r).to(device), b, r.train, device)
            trainer.run_epoch(1)
            alone_s.append(timed(device, lambda t=trainer: [t.run_epoch(e) for e in range(2, epochs + 2)]))

        def packed_seconds(k: int, fused: bool | None = None) -> float:
            trainer = PackedTrainer([make_model(r) for r in rs[:k]], bundles[:k],
                                    [r.train for r in rs[:k]], device)
            if fused is not None:
                trainer.opt.fused = fused
            trainer.run_epoch(1)
            return timed(device, lambda: [trainer.run_epoch(e) for e in range(2, epochs + 2)])

        fam = raw[family] = {"k": {}, "alone_s": alone_s, "steps_per_member": steps[0]}
        for k in plan.ks:
            p_s = packed_seconds(k)
            packed_rate, alone_rate = sum(steps[:k]) / p_s, sum(steps[:k]) / sum(alone_s[:k])
            fam["k"][str(k)] = {"packed_s": p_s, "alone_s": sum(alone_s[:k]), "ratio": packed_rate / alone_rate}
            rows.append(row("1 packing", f"{family.upper()} K={k} packed / one by one", packed_rate / alone_rate,
                            10.0 if k == 32 else None,
                            detail=f"{packed_rate:.0f} vs {alone_rate:.0f} trial-steps/s, {epochs} epochs"))
        k = plan.k_fused
        flat, per_param = packed_seconds(k, True), packed_seconds(k, False)
        fam["fused"] = {"k": k, "flat_s": flat, "per_param_s": per_param}
        rows.append(row("1 packing", f"{family.upper()} K={k} flat (fused) packed optimiser / per-parameter",
                        per_param / flat, detail=f"{flat:.3f} s vs {per_param:.3f} s for {epochs} epochs"))
    return rows, raw


def packing_rule(packing: dict) -> dict[str, dict[str, Any]]:
    """The recommended pack size per model family from the packing figures (gpu.json "raw"."packing").

    Among the measured K > 1: the smallest K whose packed/one-by-one ratio is within 10% of the best
    ratio; the family packs (`sweep run --pack K`) only if that ratio is at least 1.5x, else K = 1.
    """
    out = {}
    for family, fam in packing.items():
        ratios = {int(k): v["ratio"] for k, v in fam["k"].items() if int(k) > 1}
        if not ratios:
            continue
        best = max(ratios.values())
        k = min(k for k, r in ratios.items() if r >= PACK_NEAR_BEST * best)
        pays = ratios[k] >= PACK_PAYS
        out[family] = {"pack": pays, "k": k if pays else 1, "ratio": ratios[k], "best_ratio": best}
    return out


# ---------------------------------------------------------------- 2. sharing a GPU


def trial_config(kind: str, plan: Plan, data_root: str, device: str, seed: int) -> dict:
    base = {"log_to_mlflow": False, "device": device, "seed": seed, "threads": 1}
    if kind == "edge_cnn":
        return {"pairing": "simple_cnn/edges", **plan.edge_trial, **base}
    return {"pairing": "lab_cnn/cifar10", "data_root": data_root, **plan.cifar_trial, **base}


def share_worker(rank: int, quick: bool, data_root: str, device: str, inbox, outbox) -> None:
    """One trial process, kept for every N: ("prepare", kind) runs a warm-up trial of `kind` once and
    answers "ready"; ("go", kind) runs the timed trials and answers their start and end times."""
    torch.set_num_threads(1)
    from trainables.trainable import run_trial

    plan, warmed = Plan(quick), set()
    while (msg := inbox.get()) is not None:
        what, kind = msg
        try:
            if what == "prepare":
                if kind not in warmed:
                    run_trial({**trial_config(kind, plan, data_root, device, 999), "epochs": 1})
                    warmed.add(kind)
                outbox.put(("ready", rank, 0.0, 0.0, None))
                continue
            t0 = time.monotonic()
            for i in range(plan.share_trials):
                run_trial(trial_config(kind, plan, data_root, device, 100 * rank + i))
            outbox.put(("done", rank, t0, time.monotonic(), None))
        except BaseException as exc:  # reported to the parent, which fails loudly
            outbox.put(("error", rank, 0.0, 0.0, f"{type(exc).__name__}: {exc}"))


class TrialProcesses:
    """max(N) trial processes started once (spawn); `run(kind, n)` makes the first n run at once."""

    def __init__(self, n: int, plan: Plan, data_root: str, device: torch.device):
        ctx = mp.get_context("spawn")
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(n)]
        env_before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the children: one thread per trial
        try:
            self.procs = [ctx.Process(target=share_worker, args=(i, plan.quick, data_root, device.type, box,
                                                                 self.outbox), daemon=True)
                          for i, box in enumerate(self.inboxes)]
            for proc in self.procs:
                proc.start()
        finally:
            if env_before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = env_before
        self.plan = plan

    def _gather(self, n: int) -> list[tuple]:
        got = [self.outbox.get(timeout=300) for _ in range(n)]
        errors = [m[4] for m in got if m[0] == "error"]
        if errors:
            raise RuntimeError(f"a trial process failed: {errors[0]}")
        return got

    def run(self, kind: str, n: int) -> dict:
        for box in self.inboxes[:n]:
            box.put(("prepare", kind))
        self._gather(n)  # all warmed up and idle: start together
        for box in self.inboxes[:n]:
            box.put(("go", kind))
        got = self._gather(n)
        start, end = min(m[2] for m in got), max(m[3] for m in got)
        trials = n * self.plan.share_trials
        return {"n": n, "trials": trials, "seconds": end - start, "trials_per_s": trials / (end - start)}

    def close(self) -> None:
        for box in self.inboxes:
            box.put(None)
        for proc in self.procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()


def bench_sharing(plan: Plan, device: torch.device, data_root: str) -> tuple[list[dict], dict]:
    rows, raw = [], {}
    procs = TrialProcesses(max(plan.ns), plan, data_root, device)
    try:
        for kind in ("edge_cnn", "cifar_cnn"):
            raw[kind] = {str(n): procs.run(kind, n) for n in plan.ns}
    finally:
        procs.close()
    for kind in ("edge_cnn", "cifar_cnn"):
        runs = raw[kind]
        one = runs["1"]["trials_per_s"]
        for n in plan.ns[1:]:
            r = runs[str(n)]
            rows.append(row("2 sharing a GPU", f"{kind} N={n} processes / N=1, trials/s", r["trials_per_s"] / one,
                            2.5 if n == 4 else None,
                            detail=f"{r['trials']} trials in {r['seconds']:.1f} s vs "
                                   f"{runs['1']['trials']} in {runs['1']['seconds']:.1f} s"))
    return rows, raw


# ---------------------------------------------------------------- 3. trial loop vs notebook loop


def notebook_epochs(model, bundle, tc, device: torch.device, epochs: int) -> None:
    """The plain notebook loop: DataLoader over CPU tensors, batches moved per step, `.item()` per
    step (loss, correct), evaluation after every epoch the same way. torch's SGD/Adam defaults."""
    from torch.utils.data import DataLoader, TensorDataset

    x_tr, y_tr = bundle.x_train.cpu(), bundle.y_train.cpu()
    x_va, y_va = bundle.x_val.cpu(), bundle.y_val.cpu()
    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=tc.batch_size, shuffle=True)
    valid = DataLoader(TensorDataset(x_va, y_va), batch_size=tc.eval_batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum)
    crit = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        running, correct = 0.0, 0
        for x, y in train:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            out = model(bundle.prepare(x))
            loss = crit(out, y)
            loss.backward()
            opt.step()
            running += loss.item()
            correct += (out.argmax(1) == y).sum().item()
        model.eval()
        with torch.no_grad():
            for x, y in valid:
                x, y = x.to(device), y.to(device)
                out = model(bundle.prepare(x))
                running += crit(out, y).item()
                correct += (out.argmax(1) == y).sum().item()


def bench_loops(plan: Plan, device: torch.device) -> tuple[list[dict], dict]:
    from trainables.loop import Trainer
    from trainables.spec import resolve_config
    from trainables.trainable import load_data, make_model

    rows, raw = [], {}
    e = plan.loop_epochs
    for family, pairing in FAMILIES.items():
        def trainer(**extra):
            r = resolve_config({"pairing": pairing, "data_per_class": plan.data_per_class, "epochs": e + 1, "log_to_mlflow": False,
                                "device": device.type, **extra})
            b = load_data(r).to(device)
            t = Trainer(make_model(r).to(device), b, r.train, device)
            t.run_epoch(1)
            return t, r, b

        t, r, b = trainer()
        steps = math.ceil(b.x_train.shape[0] / r.train.batch_size) * e
        loop_s = timed(device, lambda: [t.run_epoch(i) for i in range(2, e + 2)])
        model = make_model(r).to(device)
        notebook_epochs(model, b, r.train, device, 1)
        nb_s = timed(device, lambda: notebook_epochs(model, b, r.train, device, e))
        fam = raw[family] = {"steps": steps, "loop_s": loop_s, "notebook_s": nb_s}
        rows.append(row("3 trial loop vs notebook", f"{family.upper()} trial loop / notebook loop", nb_s / loop_s, 3.0,
                        detail=f"{steps / loop_s:.0f} vs {steps / nb_s:.0f} steps/s, {e} epochs"))
        if device.type == "cuda":
            try:
                g, _, _ = trainer(cuda_graphs=True)
                graph_s = timed(device, lambda: [g.run_epoch(i) for i in range(2, e + 2)])
            except Exception as exc:  # an opt-in path failing is a finding, not the end of the run
                fam["cuda_graphs_error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row("3 trial loop vs notebook", f"{family.upper()} cuda_graphs", float("nan"),
                                detail=f"failed: {fam['cuda_graphs_error'][:200]}"))
                continue
            fam["cuda_graphs_s"] = graph_s
            rows.append(row("3 trial loop vs notebook", f"{family.upper()} trial loop cuda_graphs / eager trial loop",
                            loop_s / graph_s, detail=f"{steps / graph_s:.0f} vs {steps / loop_s:.0f} steps/s"))
            rows.append(row("3 trial loop vs notebook", f"{family.upper()} trial loop cuda_graphs / notebook loop",
                            nb_s / graph_s, 3.0, detail=f"{steps / graph_s:.0f} vs {steps / nb_s:.0f} steps/s"))
        else:
            fam["cuda_graphs_s"] = None  # CUDA graphs need a GPU: not measured in a CPU dry run
    return rows, raw


# ---------------------------------------------------------------- 4. CIFAR-10 precision and layout


CIFAR_VARIANTS = {"fp32": {}, "bf16": {"amp": "bf16"}, "channels_last": {"channels_last": True},
                  "bf16+channels_last": {"amp": "bf16", "channels_last": True}, "cuda_graphs": {"cuda_graphs": True}}


def bench_cifar(plan: Plan, device: torch.device, data_root: str) -> tuple[list[dict], dict]:
    from trainables.loop import Trainer
    from trainables.spec import resolve_config
    from trainables.trainable import load_data, make_model

    rows, raw = [], {}
    e = plan.cifar_epochs
    for name, extra in CIFAR_VARIANTS.items():
        if extra.get("cuda_graphs") and device.type != "cuda":
            raw[name] = None
            continue
        r = resolve_config({"pairing": "lab_cnn/cifar10", "data_root": data_root, "epochs": e + 1,
                            "log_to_mlflow": False, "device": device.type, **extra})
        b = load_data(r).to(device)  # the whole training set resident on the device
        try:
            t = Trainer(make_model(r).to(device), b, r.train, device)
            t.run_epoch(1)
            seconds = timed(device, lambda: [t.run_epoch(i) for i in range(2, e + 2)]) / e
        except Exception as exc:  # an opt-in setting failing is a finding, not the end of the run
            if name == "fp32":
                raise
            raw[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        raw[name] = {"epoch_s": seconds, "val_acc": t.history_rows(e + 1, e + 1)[0]["val_acc"],
                     "n_train": int(b.x_train.shape[0])}
    base = raw["fp32"]["epoch_s"]
    for name, r in raw.items():
        if r is not None and "error" in r:
            rows.append(row("4 CIFAR-10 LabCNN epoch", f"{name} / fp32 epoch speed", float("nan"),
                            detail=f"failed: {r['error'][:200]}"))
        elif name != "fp32" and r is not None:
            rows.append(row("4 CIFAR-10 LabCNN epoch", f"{name} / fp32 epoch speed", base / r["epoch_s"],
                            detail=f"{r['epoch_s']:.3f} s vs {base:.3f} s per epoch of {r['n_train']} images"))
    return rows, raw


# ---------------------------------------------------------------- driver and outputs


def machine(device: torch.device, quick: bool) -> dict[str, Any]:
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
            "torch": torch.__version__, "device": device.type, "quick": quick, "cpu_cores": os.cpu_count(),
            "mode": "gpu" if device.type == "cuda" else "CPU DRY RUN (not GPU figures)",
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def write_markdown(path: Path, doc: dict) -> None:
    m = doc["machine"]
    lines = ["# GPU benchmark results", ""]
    if m["device"] != "cuda":
        lines += ["**CPU DRY RUN: these are not GPU figures.** They only show that every code path of",
                  "`python -m benchmarks.gpu` runs (the cuda_graphs rows need a GPU and are absent); run it",
                  "on a GPU machine for the real table.", ""]
    lines += [f"`python -m benchmarks.gpu{' --quick' if m['quick'] else ''}` on {m.get('gpu', 'CPU')}, "
              f"torch {m['torch']}, {m['date']} ({doc['elapsed_s']:.0f} s). Every figure is a ratio of two "
              "measurements taken side by side in this run, warm-up excluded.", "",
              "| section | what | ratio | target | verdict | detail |", "|---|---|---|---|---|---|"]
    for r in doc["results"]:
        verdict = {None: "recorded", True: "PASS", False: "FAIL"}[r["passed"]]
        target = "-" if r["target"] is None else f">= {r['target']:g}x"
        lines.append(f"| {r['section']} | {r['name']} | {r['value']:.2f}{r['unit']} | {target} | {verdict} | "
                     f"{r['detail']} |")
    for name, reason in doc["skipped"].items():
        lines.append(f"| {name} | not measured | - | - | - | {reason} |")
    lines += ["", "Packing rule from these figures (`benchmarks.gpu.packing_rule`):", ""]
    for family, rule in doc["packing_rule"].items():
        lines.append(f"- {family}: " + (f"pack, `--pack {rule['k']}` ({rule['ratio']:.1f}x at K={rule['k']}, "
                                        f"best {rule['best_ratio']:.1f}x)" if rule["pack"] else
                                        f"do not pack (best {rule['best_ratio']:.1f}x < {PACK_PAYS}x)"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of every code path")
    p.add_argument("--budget-s", type=float, default=300.0, help="sections not started by then are skipped")
    p.add_argument("--json", type=Path, default=OUT_JSON)
    p.add_argument("--md", type=Path, default=OUT_MD)
    args = p.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        p.error("no CUDA device is visible; `--device cpu --quick` dry-runs every code path on the CPU")
    device = torch.device("cpu" if args.device == "cpu" else "cuda")
    torch.set_num_threads(1 if device.type == "cuda" else max(1, min(4, os.cpu_count() or 1)))
    plan, t_start = Plan(args.quick), time.perf_counter()
    doc: dict[str, Any] = {"machine": machine(device, args.quick), "results": [], "raw": {}, "skipped": {}}
    print(f"benchmarks.gpu on {doc['machine'].get('gpu', 'CPU')} ({doc['machine']['mode']})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        from benchmarks import gpu_data

        gpu_data.write_cifar10(Path(tmp), n_train=plan.cifar_train, n_test=plan.cifar_test)
        sections = [("packing", lambda: bench_packing(plan, device)),
                    ("sharing", lambda: bench_sharing(plan, device, tmp)),
                    ("loops", lambda: bench_loops(plan, device)),
                    ("cifar", lambda: bench_cifar(plan, device, tmp))]
        for key, run in sections:
            elapsed = time.perf_counter() - t_start
            if elapsed > args.budget_s:
                doc["skipped"][key] = f"time budget of {args.budget_s:.0f} s spent ({elapsed:.0f} s)"
                print(f"  {key}: skipped ({doc['skipped'][key]})", flush=True)
                continue
            t0 = time.perf_counter()
            try:
                rows, raw = run()
            except Exception as exc:  # keep the other sections' figures; the JSON says what failed
                doc["skipped"][key] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
                traceback.print_exc()
                continue
            doc["results"] += rows
            doc["raw"][key] = raw
            print(f"  {key} ({time.perf_counter() - t0:.0f} s)", flush=True)
            for r in rows:
                verdict = {None: "recorded", True: "PASS", False: "FAIL"}[r["passed"]]
                print(f"    [{verdict:>8}] {r['name']}: {r['value']:.2f}{r['unit']} -- {r['detail']}", flush=True)
    doc["packing_rule"] = packing_rule(doc["raw"].get("packing", {}))
    doc["elapsed_s"] = time.perf_counter() - t_start
    for family, rule in doc["packing_rule"].items():
        print(f"  recommended for {family}: " + (f"--pack {rule['k']}" if rule["pack"] else "no packing"), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2))
    write_markdown(args.md, doc)
    print(f"wrote {args.json} and {args.md} in {doc['elapsed_s']:.0f} s", flush=True)
    return doc


if __name__ == "__main__":
    from benchmarks.gpu import main as _main  # the importable module, so spawned workers find share_worker

    _main()
