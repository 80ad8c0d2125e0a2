"""Issue 22, start-up phase by phase: where a sweep's fixed cost goes, before and after, next to a
careful hand-written script running the same trials. One command, about 5-6 minutes when quiet:

    .venv/bin/python -m benchmarks.bench_phases --before 47a8f2d

1. Waits until the 1-minute load average is below --max-load (1.5), printing it. The benchmark's
   own runs keep the 1-minute average near 1-2 on 2 cores, so before each later run it waits only
   while the load is above --run-max-load (3.0: someone else is busy); every run's load average at
   launch is printed with its figures.
2. A 2-trial 1-epoch sweep (`sweep run edge-data-per-class --seeds 1 --set epochs=1 --set
   data_per_class=10`, trials logged to MLflow sqlite), interleaved --repeats times after one
   untimed warm-up each: `before` (the tree of git ref --before, cold), `after cold` (this tree,
   Ray started per sweep), `after up` (this tree joining a `sweep up` head) and `hand-written`
   (benchmarks/handwritten_fast.py, same trials). Every variant runs with $SWEEP_PHASE_LOG set:
   the driver writes a timestamp at each phase (core.phases), the benchmark adds the launch and
   the process exit; the table shows each milestone in seconds since launch (median over the
   repeats) and the phases as differences of milestones. A tree without phase marks (`before`)
   shows the milestones read back from its MLflow store instead (parent run created, first child
   run started, first metric, last child run ended), which every variant also gets.
3. `sweep list` and `sweep results edge-data-per-class` (3 runs each, median), before and after.
4. 8 edge trials x --epochs (200) epochs, once each: `sweep run` (with the `sweep up` head),
   the hand-written script and the notebook loop (benchmarks/notebook.py).
5. Record check: the metric histories of every trial of `before` and `after` sweeps with the same
   seeds are compared value by value, and every child run must be FINISHED.

Targets (issue 22): 2-trial sweep <= 8 s cold, <= 4 s after `sweep up`; 8x200 sweep within 1.3x of
the hand-written script and >= 1.4x faster than the notebook loop; `sweep list`/`sweep results`
under 1.5 s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import PYTHON, ROOT, _env

SMOKE = ["--seeds", "1", "--set", "epochs=1", "--set", "data_per_class=10"]
PHASE_ENV = "SWEEP_PHASE_LOG"
# Milestones a driver marks (core.phases), in display order, with the phase that ends at each.
MILESTONES = [
    ("warm_driver", "handed to `sweep up`'s warm driver (forked)"),
    ("run_imported", "CLI import (interpreter, cli, runner)"),
    ("planned", "planning and preflight"),
    ("ray_ready", "Ray start or join"),
    ("mlflow_ready", "MLflow set-up (store, experiment; in a thread)"),
    ("parent_run", "parent run created"),
    ("fit_start", "Tuner built, fit starts"),
    ("first_actor_ready", "first trial actor ready"),
    ("first_result", "first result"),
    ("last_result", "last result"),
    ("fit_end", "fit returned"),
    ("results_table", "results table printed"),
    ("exit", "Ray/MLflow shut-down (last atexit hook)"),
    ("done", "process exited"),
]
STORE_MILESTONES = [
    ("store_parent_start", "store: parent run start_time"),
    ("store_first_child_start", "store: first child run start_time"),
    ("store_first_metric", "store: first metric timestamp"),
    ("store_last_child_end", "store: last child run end_time"),
    ("store_parent_end", "store: parent run end_time"),
]


def load1() -> float:
    return os.getloadavg()[0]


def wait_quiet(max_load: float, max_wait: float, label: str) -> float:
    """Block until the 1-minute load average is below max_load (printing it); give up after max_wait s."""
    t0 = time.monotonic()
    last_print = -1e9
    while True:
        load = load1()
        if load < max_load:
            return load
        if time.monotonic() - t0 > max_wait:
            print(f"  !! load {load:.2f} still >= {max_load} after {max_wait:.0f} s; measuring {label} anyway "
                  "(figures not trustworthy)", flush=True)
            return load
        if time.monotonic() - last_print > 15:
            print(f"  waiting for load < {max_load} before {label}: load average now {load:.2f}", flush=True)
            last_print = time.monotonic()
        time.sleep(2)


def export_tree(ref: str, dest: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


class Runner:
    """Runs the variants; each has its own work folder (MLflow store, Tune storage)."""

    def __init__(self, tmp: Path, before: Path | None, max_load: float, max_wait: float):
        self.tmp, self.before, self.max_load, self.max_wait = tmp, before, max_load, max_wait
        self.head_home: str | None = None
        self.n = 0

    def work(self, variant: str) -> Path:
        w = self.tmp / variant.replace(" ", "-")
        w.mkdir(exist_ok=True)
        return w

    def _launch(self, argv: list[str], cwd: Path, env: dict, label: str, timeout: float = 900) -> tuple[dict, float]:
        load = wait_quiet(self.max_load, self.max_wait, label)
        self.n += 1
        log = self.tmp / f"phases-{self.n}.jsonl"
        env = {**env, PHASE_ENV: str(log)}
        t0 = time.time()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        t1 = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"{label}: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-3000:]}")
        marks: dict[str, float] = {}
        if log.exists():
            for line in log.read_text().splitlines():
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if m["phase"] == "trial_complete":
                    marks["last_result"] = m["t"] - t0  # the last completion wins
                elif m["phase"] == "trial_start":
                    marks.setdefault("first_trial_start", m["t"] - t0)
                else:
                    marks.setdefault(m["phase"], m["t"] - t0)
        marks["done"] = t1 - t0
        return {"marks": marks, "load": load}, t0

    def env(self, variant: str) -> dict:
        env = _env()
        if variant == "before":
            env["PYTHONPATH"] = str(self.before)
        env.pop("SWEEP_HOME", None)
        if variant == "after up":
            env["SWEEP_HOME"] = self.head_home
        return env

    def sweep(self, variant: str, name: str, extra: list[str]) -> dict:
        work = self.work(variant)
        if variant == "hand-written":
            epochs = next((a.split("=")[1] for a in extra if a.startswith("epochs=")), "1")
            sizes = next((a.split("=")[1] for a in extra if a.startswith("data_per_class=")), "10,30,50,100")
            argv = [PYTHON, "-m", "benchmarks.handwritten_fast", "--epochs", epochs, "--sizes", sizes,
                    "--work", str(work)]
            res, t0 = self._launch(argv, ROOT, self.env(variant), f"{variant} {name}")
            res.update(store_marks(work / "mlflow.db", t0, None))
            return res
        tree = self.before if variant == "before" else ROOT
        argv = [PYTHON, "-m", "cluster.cli", "run", "edge-data-per-class", "--name", name, "--tracking-uri",
                f"sqlite:///{work}/mlflow.db", "--storage-path", str(work / "ray_results"), *extra]
        res, t0 = self._launch(argv, tree, self.env(variant), f"{variant} {name}")
        res.update(store_marks(work / "mlflow.db", t0, name))
        return res

    def command(self, variant: str, args: list[str]) -> float:
        tree = self.before if variant == "before" else ROOT
        res, _ = self._launch([PYTHON, "-m", "cluster.cli", *args], tree, self.env(variant),
                              f"{variant} sweep {args[0]}")
        return res["marks"]["done"]


def store_marks(db: Path, t0: float, sweep: str | None) -> dict:
    """Milestones read from the MLflow store (ms timestamps): the newest parent run of the store
    (named `sweep` when given) and its children. Also returns every child's metric histories."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        q = "SELECT run_uuid, start_time, end_time FROM runs WHERE run_uuid NOT IN " \
            "(SELECT run_uuid FROM tags WHERE key='mlflow.parentRunId')"
        parents = con.execute(q + (" AND name=?" if sweep else "") + " ORDER BY start_time DESC",
                              (sweep,) if sweep else ()).fetchall()
        if not parents:
            return {"store": {}, "histories": {}, "statuses": []}
        pid, pstart, pend = parents[0]
        kids = con.execute("SELECT r.run_uuid, r.start_time, r.end_time, r.status FROM runs r JOIN tags t ON "
                           "t.run_uuid=r.run_uuid WHERE t.key='mlflow.parentRunId' AND t.value=?", (pid,)).fetchall()
        ids = [k[0] for k in kids]
        marks = {"store_parent_start": pstart / 1000 - t0}
        if pend:
            marks["store_parent_end"] = pend / 1000 - t0
        if kids:
            marks["store_first_child_start"] = min(k[1] for k in kids) / 1000 - t0
            ends = [k[2] for k in kids if k[2]]
            if ends:
                marks["store_last_child_end"] = max(ends) / 1000 - t0
            ph = ",".join("?" * len(ids))
            first = con.execute(f"SELECT MIN(timestamp) FROM metrics WHERE run_uuid IN ({ph})", ids).fetchone()[0]
            if first:
                marks["store_first_metric"] = first / 1000 - t0
        histories = {}
        for rid, *_ in kids:
            params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid=?", (rid,)).fetchall())
            cell = (params.get("pairing"), params.get("data_per_class"), params.get("seed"))
            rows = con.execute("SELECT key, step, value FROM metrics WHERE run_uuid=? ORDER BY key, step, timestamp",
                               (rid,)).fetchall()
            histories[json.dumps(cell)] = [r for r in rows if not r[0].endswith("_s") and r[0] not in TIMING]
        return {"store": marks, "histories": histories, "statuses": [k[3] for k in kids]}
    finally:
        con.close()


# Wall-clock measurements a trial logs: they differ between any two runs by nature.
TIMING = {"train_time_s", "time_total_s", "time_this_iter_s", "epoch_time_s", "throughput"}


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.2f}"


def print_table(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    variants = list(runs)
    medians: dict[str, dict[str, float]] = {}
    for v, rs in runs.items():
        keys = {k for r in rs for k in (*r["marks"], *r.get("store", {}))}
        medians[v] = {k: med([r["marks"].get(k, r.get("store", {}).get(k)) for r in rs]) for k in keys}
    width = 48
    print("\n  milestone (seconds since launch, median)".ljust(width + 2) + "".join(f"{v:>14}" for v in variants))
    for key, label in MILESTONES + [("first_trial_start", "first trial function entered (worker)")] + STORE_MILESTONES:
        if not any(medians[v].get(key) is not None for v in variants):
            continue
        print(f"  {label:<{width}}" + "".join(f"{fmt(medians[v].get(key)):>14}" for v in variants))
    print("\n  phase (seconds, from the milestones above)".ljust(width + 2) + "".join(f"{v:>14}" for v in variants))
    spans = [("CLI import", None, "run_imported"), ("planning and preflight", "run_imported", "planned"),
             ("Ray start or join", "planned", "ray_ready"), ("MLflow set-up (parallel)", "planned", "mlflow_ready"),
             ("ready to fit -> fit starts", "ray_ready", "fit_start"),
             ("fit start -> first actor ready", "fit_start", "first_actor_ready"),
             ("first actor ready -> first result", "first_actor_ready", "first_result"),
             ("first -> last result", "first_result", "last_result"), ("last result -> fit returned", "last_result", "fit_end"),
             ("results table", "fit_end", "results_table"), ("atexit shut-down", "results_table", "exit"),
             ("interpreter exit", "exit", "done"), ("TOTAL", None, "done")]
    for label, a, b in spans:
        row = []
        for v in variants:
            m = medians[v]
            end, start = m.get(b), (0.0 if a is None else m.get(a))
            row.append(None if end is None or start is None else end - start)
        if any(x is not None for x in row):
            print(f"  {label:<{width}}" + "".join(f"{fmt(x):>14}" for x in row))
    loads = "; ".join(v + ": " + ", ".join(f"{r['load']:.2f}" for r in rs) for v, rs in runs.items())
    print(f"  load averages at launch: {loads}")
    return medians


def compare_histories(ref: dict, other: dict) -> tuple[list[str], set[str]]:
    """Cells whose histories differ on the metric keys both sides log, and the keys only `other` logs
    (a newer tree may log more metrics, e.g. min_class_recall: that is not a change of the record)."""
    diff, added = [], set()
    for cell in set(ref) | set(other):
        a, b = ref.get(cell), other.get(cell)
        if a is None or b is None:
            diff.append(cell)
            continue
        keys_a, keys_b = {k for k, _, _ in a}, {k for k, _, _ in b}
        added |= keys_b - keys_a
        shared = keys_a & keys_b
        if [row for row in a if row[0] in shared] != [row for row in b if row[0] in shared] or keys_a - keys_b:
            diff.append(cell)
    return sorted(diff), added


def check_record(runs: dict[str, list[dict]]) -> bool:
    ok = True
    for v, rs in runs.items():
        if v == "hand-written":
            continue
        bad = [s for r in rs for s in r["statuses"] if s != "FINISHED"]
        if bad or any(not r["statuses"] for r in rs):
            print(f"  !! {v}: child runs not all FINISHED: {bad or 'none found'}")
            ok = False
    sweeps = [(v, r) for v, rs in runs.items() if v != "hand-written" for r in rs]
    if len(sweeps) > 1:
        ref_v, ref = sweeps[0]
        for v, r in sweeps[1:]:
            diff, added = compare_histories(ref["histories"], r["histories"])
            if diff:
                print(f"  !! metric histories of {v} differ from {ref_v} in cells {diff[:4]}")
                ok = False
            if added:
                print(f"  {v} logs metrics {ref_v} does not: {sorted(added)} (compared on the shared keys)")
        print(f"  record: {len(sweeps)} sweeps, {sum(len(r['histories']) for _, r in sweeps)} child runs; metric "
              f"histories identical across before/after: {'yes' if ok else 'NO'}; every child run FINISHED")
    return ok


def target(label: str, value: float | None, goal: float, lower: bool = True) -> str:
    if value is None:
        return f"  [  n/a ] {label}"
    ok = value <= goal if lower else value >= goal
    return f"  [{'PASS' if ok else 'FAIL':>6}] {label}: {value:.2f} (target {'<=' if lower else '>='} {goal:g})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", metavar="REF", help="also run the tree of this git ref (e.g. 47a8f2d)")
    p.add_argument("--repeats", type=int, default=2, help="measured runs of each 2-trial variant (default 2)")
    p.add_argument("--epochs", type=int, default=200, help="epochs of the 8-trial comparison (0 skips it)")
    p.add_argument("--max-load", type=float, default=1.5)
    p.add_argument("--run-max-load", type=float, default=3.0,
                   help="before each run after the first wait: wait while the load is above this")
    p.add_argument("--max-wait", type=float, default=900, help="seconds to wait for a quiet machine per run")
    p.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = p.parse_args(argv)
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores; "
          f"python {sys.version.split()[0]}", flush=True)
    load = wait_quiet(args.max_load, args.max_wait, "the benchmark")
    print(f"starting at load average {load:.2f} (< {args.max_load})", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-phases-"))
    before = export_tree(args.before, tmp / "before-tree") if args.before else None
    r = Runner(tmp, before, args.run_max_load, args.max_wait)
    home = tempfile.mkdtemp(prefix="bench-phases-head-")
    up_env = {**_env(), "SWEEP_HOME": home}
    ok = True
    try:
        t0 = time.perf_counter()
        subprocess.run([PYTHON, "-m", "cluster.cli", "up"], cwd=ROOT, env=up_env, check=True, capture_output=True)
        up_s = time.perf_counter() - t0
        r.head_home = home
        variants = (["before"] if before else []) + ["after cold", "after up", "hand-written"]
        print(f"`sweep up` took {up_s:.2f} s. 2-trial 1-epoch sweep: warm-up, then {args.repeats} interleaved "
              f"runs of {', '.join(variants)}", flush=True)
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for v in variants:
            r.sweep(v, "warmup", SMOKE)
        for i in range(args.repeats):
            for v in variants:
                res = r.sweep(v, f"s{i}", SMOKE)
                runs[v].append(res)
                print(f"  {v:<13} run {i + 1}: {res['marks']['done']:.2f} s (load {res['load']:.2f})", flush=True)
        medians = print_table(runs)
        ok &= check_record(runs)

        print("\n`sweep list` and `sweep results edge-data-per-class` (median of 3):", flush=True)
        cmd_times: dict[str, dict[str, float]] = {}
        for v in (["before"] if before else []) + ["after cold"]:
            db = r.work(v) / "mlflow.db"
            cmd_times[v] = {
                "list": med([r.command(v, ["list"]) for _ in range(3)]),
                "results": med([r.command(v, ["results", "edge-data-per-class", "--tracking-uri", f"sqlite:///{db}"])
                                for _ in range(3)])}
            print(f"  {v:<13} sweep list {cmd_times[v]['list']:.2f} s, sweep results {cmd_times[v]['results']:.2f} s",
                  flush=True)

        long: dict[str, float] = {}
        if args.epochs:
            print(f"\n8 edge trials x {args.epochs} epochs (edge-data-per-class, 1 seed), once each:", flush=True)
            extra = ["--seeds", "1", "--set", f"epochs={args.epochs}"]
            res = r.sweep("after up", f"long{args.epochs}", extra)
            long["sweep run (sweep up)"] = res["marks"]["done"]
            res = r.sweep("hand-written", "long", ["--set", f"epochs={args.epochs}"])
            long["hand-written"] = res["marks"]["done"]
            load = wait_quiet(args.run_max_load, args.max_wait, "notebook loop")
            t0 = time.perf_counter()
            subprocess.run([PYTHON, "-m", "benchmarks.notebook", "--epochs", str(args.epochs), "--seeds", "1"], cwd=ROOT,
                           env=_env(), check=True, capture_output=True)
            long["notebook loop"] = time.perf_counter() - t0
            for k, s in long.items():
                print(f"  {k:<22} {s:7.2f} s", flush=True)
            print(f"  (notebook launched at load {load:.2f})")
    finally:
        subprocess.run([PYTHON, "-m", "cluster.cli", "down"], cwd=ROOT, env=up_env, capture_output=True)
        if args.keep:
            print(f"work folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)

    print("\nTargets (issue 22):")
    print(target("2-trial sweep, cold (s)", medians.get("after cold", {}).get("done"), 8.0))
    print(target("2-trial sweep after `sweep up` (s)", medians.get("after up", {}).get("done"), 4.0))
    after = cmd_times.get("after cold", {})
    print(target("sweep list (s)", after.get("list"), 1.5))
    print(target("sweep results (s)", after.get("results"), 1.5))
    if long:
        sw, hw, nb = long["sweep run (sweep up)"], long["hand-written"], long["notebook loop"]
        print(target("8x200: sweep run / hand-written", sw / hw, 1.3))
        print(target("8x200: notebook loop / sweep run", nb / sw, 1.4, lower=False))
    if "before" in medians:
        b = medians["before"].get("done")
        print(f"  before ({args.before}) 2-trial sweep {b:.2f} s; before list {cmd_times['before']['list']:.2f} s, "
              f"results {cmd_times['before']['results']:.2f} s")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
