"""Same seeds, same bytes: run smoke sweeps with two versions of the code and compare every metric.

A refactor of the driver must not change what a trial computes. This runs the same sweeps
(a smoke sweep of every edge experiment, and a packed sweep) with the code of a git ref and with
the working tree, each into its own MLflow store, then matches the trial runs of the two stores
by their params and compares every metric's full history (step and value, as stored: float64
from MLflow, compared with ==). Wall-clock metrics (`*_time_s`) are left out.

Sampled axes are fixed with --set at their first value (unless --smoke fixes them) (Tune samples them unseeded), and a
scheduler is turned off (ASHA's stops depend on the order results arrive), so each case is
deterministic on its own.

    python -m benchmarks.same_metrics run REF OUT          # REF: a git ref, or "worktree"
    python -m benchmarks.same_metrics compare OUT/A OUT/B [--common]  # exit 1 on any difference
                                                           # (--common: only sweeps both stores hold)
    SAME_METRICS_ONLY=packed5,edge-hpo python -m ...       # only these cases
    python -m benchmarks.same_metrics both REF OUT         # both runs, then the comparison

Takes about 1 minute per case and side on 2 busy cores (15 cases).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# On CPU only models without convolutions pack, 5 members at least (trainables.packing.MIN_PACK): the
# MLP cells of 5 seeds make packs; the CNN cells run unpacked beside them.
PACKED = ("edge-data-per-class", "packed5", ["--pack", "5", "--seeds", "5"])
VOLATILE_METRICS = ("train_time_s",)


def cases() -> list[tuple[str, str, list[str]]]:
    """(experiment, case name, extra flags): every trainable edge experiment's smoke sweep, one packed."""
    sys.path.insert(0, str(ROOT))
    from search_spaces import EXPERIMENTS
    from search_spaces.domains import is_domain

    out = []
    for name, exp in sorted(EXPERIMENTS.items()):
        if not name.startswith("edge-") or exp.analytic:
            continue
        extra = ["--seeds", "1"]
        sampled = {k: v for k, v in exp.axes.items() if is_domain(v)}
        sampled.update({k: v for vals in exp.per_pairing.values() for k, v in vals.items() if is_domain(v)})
        for key, domain in sorted(sampled.items()):
            if key in exp.smoke:
                continue  # --smoke fixes it
            first = domain.representative()
            extra += ["--set", f"{key}={json.dumps(first)}"]
        if exp.search is not None:
            extra += ["--scheduler", "none"]
        out.append((name, name, extra))
    out.append(PACKED)
    only = os.environ.get("SAME_METRICS_ONLY")  # comma-separated case names: a partial run
    return [c for c in out if not only or c[1] in only.split(",")]


def source(ref: str, into: Path) -> Path:
    """The code of `ref` ("worktree": this checkout) as a folder."""
    if ref == "worktree":
        return ROOT
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(into, filter="data")
    return into


# Runs in the side's folder with the side's code on PYTHONPATH: one Ray session for every case
# (`sweep run` joins a Ray already running in its process), each case through the CLI's main.
_RUNNER = r"""
import json, os, sys
from pathlib import Path
import ray
from cluster.cli import main
cases, side = json.loads(sys.argv[1]), Path(sys.argv[2])
ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
for exp, name, extra in cases:
    if (side / "done" / name).exists():
        continue
    argv = ["run", exp, "--smoke", "--name", name, "--tracking-uri", f"sqlite:///{side}/mlflow.db",
            "--storage-path", str(side / "rr"), *extra]
    code = main(argv)
    print(f"{name} exit {code}", flush=True)
    if code != 0:
        raise SystemExit(f"case {name} failed")
    (side / "done").mkdir(exist_ok=True)
    (side / "done" / name).touch()
ray.shutdown()
"""


def run(ref: str, out: Path) -> Path:
    """Run every case with the code of `ref`; returns the folder holding its store."""
    side = out / ref.replace("/", "_")
    side.mkdir(parents=True, exist_ok=True)
    code = source(ref, out / f"src-{ref.replace('/', '_')}")
    env = {**os.environ, "PYTHONPATH": str(code)}
    where = subprocess.run([sys.executable, "-c", "import cluster, trainables; print(cluster.__file__)"],
                           cwd=side, env=env, check=True, capture_output=True, text=True).stdout.strip()
    print(f"{ref}: code from {Path(where).parent.parent}", flush=True)
    proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(cases()), str(side)], cwd=side, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{ref}: a case failed (see above)")
    return side


def trials(side: Path) -> dict[tuple, dict[str, list[tuple[int, float]]]]:
    """(sweep, sorted params) -> metric -> [(step, value)] for every trial run of the store in `side`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{side}/mlflow.db")
    out = {}
    for exp in client.search_experiments():
        for r in client.search_runs([exp.experiment_id], max_results=10000):
            if r.data.tags.get("role") != "trial":
                continue
            key = (r.data.tags.get("sweep"), tuple(sorted(r.data.params.items())))
            # Trials with the same params (a search's samples with every sampled key fixed) are one
            # key holding each of their histories; histories are compared as sorted lists.
            out.setdefault(key, []).append(
                {m: [(h.step, h.value) for h in sorted(client.get_metric_history(r.info.run_id, m),
                                                       key=lambda h: (h.step, h.timestamp))]
                 for m in sorted(r.data.metrics) if m not in VOLATILE_METRICS})
    return {k: sorted(v, key=repr) for k, v in out.items()}


def compare(a: Path, b: Path, common: bool = False) -> int:
    """Every trial of both stores matched and equal; with `common`, only the sweeps both stores hold."""
    ta, tb = trials(a), trials(b)
    if common:
        both = {k[0] for k in ta} & {k[0] for k in tb}
        ta, tb = ({k: v for k, v in t.items() if k[0] in both} for t in (ta, tb))
    problems = [f"only in {a.name}: {k}" for k in ta.keys() - tb.keys()]
    problems += [f"only in {b.name}: {k}" for k in tb.keys() - ta.keys()]
    values = 0
    trials_compared, added = 0, set()
    for key in sorted(ta.keys() & tb.keys()):
        if len(ta[key]) != len(tb[key]):
            problems.append(f"{key}: {len(ta[key])} trial(s) in {a.name}, {len(tb[key])} in {b.name}")
        for ma, mb in zip(ta[key], tb[key]):
            trials_compared += 1
            if ma.keys() - mb.keys():
                problems.append(f"{key}: metrics {sorted(ma.keys() - mb.keys())} missing in {b.name}")
            added |= mb.keys() - ma.keys()  # a metric the newer code logs as well: not a difference
            for m in sorted(ma.keys() & mb.keys()):
                values += len(ma[m])
                if ma[m] != mb[m]:
                    problems.append(f"{key[0]} {dict(key[1]).get('pairing')} seed {dict(key[1]).get('seed')}: {m} "
                                    f"{ma[m][:3]}... != {mb[m][:3]}...")
    sweeps = sorted({k[0] for k in ta})
    print(f"{trials_compared} trials in both ({len(sweeps)} sweeps), {values} metric values compared; "
          f"{len(problems)} difference(s)" + (f"; metrics only {b.name} logs: {sorted(added)}" if added else ""))
    for p in problems[:50]:
        print("  " + p)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "run":
        run(argv[1], Path(argv[2]).resolve())
        return 0
    if len(argv) in (3, 4) and argv[0] == "compare":
        return compare(Path(argv[1]).resolve(), Path(argv[2]).resolve(), common=argv[3:] == ["--common"])
    if len(argv) == 3 and argv[0] == "both":
        out = Path(argv[2]).resolve()
        return compare(run(argv[1], out), run("worktree", out))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
