"""How many project files a `--set KEY=VALUE` crosses from the command line to where it is used.

`sweep run EXP --smoke --set KEY=VALUE` runs in-process under a profiler up to the moment Ray
would start (the preflight has built every model and dataset by then, as the trial will). A
project file counts when one of its functions receives or returns the value: the raw
"KEY=VALUE" string, a local named KEY holding VALUE, or a dict/dataclass whose KEY is VALUE
(first count: held directly; second: also inside a larger structure, a few levels deep). Only
project files count: modules of the checkout's top-level packages (not tests, not benchmarks, never a
virtual environment or installed library that sits inside the checkout). Runs against a git ref or the worktree:

    python -m benchmarks.key_path REF [KEY=VALUE ...]   # REF: a git ref or "worktree"

Default keys: kernel_size=5 epochs=2 lr=0.0123 (edge-data-per-class).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.same_metrics import source

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["kernel_size=5", "epochs=2", "lr=0.0123"]

_TRACER = r"""
import dataclasses, json, os, sys
from pathlib import Path
code, key, raw, exp, out, deep = sys.argv[1:7]
DEPTH = int(deep)
value = json.loads(raw)
MISSING = object()

def carries(v, depth=0):
    if depth > DEPTH:
        return False
    try:
        if isinstance(v, str):
            return v.replace(" ", "") == f"{key}={raw}"
        if isinstance(v, dict):
            if v.get(key, MISSING) == value:
                return True
            return any(carries(x, depth + 1) for x in list(v.values())[:64] if not isinstance(x, (int, float)))
        if isinstance(v, (list, tuple)):
            return any(carries(x, depth + 1) for x in v[:64] if not isinstance(x, (int, float)))
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            if getattr(v, key, MISSING) == value:
                return True
            return any(carries(getattr(v, f.name, None), depth + 1) for f in dataclasses.fields(v))
    except Exception:
        return False
    return False

files = set()
# Project files only: the top-level packages of the checkout (a folder holding __init__.py), not
# tests or benchmarks, and never a virtual environment or installed library inside the checkout.
PACKAGES = {p.name for p in Path(code).iterdir() if (p / "__init__.py").is_file()
            and not p.name.startswith(".") and p.name not in ("tests", "benchmarks")}

def profile(frame, event, arg):
    if event not in ("call", "return"):
        return
    fn = frame.f_code.co_filename
    if not fn.startswith(code + os.sep):
        return
    rel = os.path.relpath(fn, code)
    if rel.split(os.sep, 1)[0] not in PACKAGES or "site-packages" in rel:
        return
    if rel in files:
        return
    if event == "call":
        loc = frame.f_locals
        if loc.get(key, MISSING) == value or any(carries(v) for v in loc.values()):
            files.add(rel)
    elif carries(arg):
        files.add(rel)

class Stop(Exception):
    pass

def stop(*a, **k):
    raise Stop

try:
    from cluster.infra import ray_setup
except ImportError:
    from cluster import ray_setup
ray_setup.init_ray = stop
from trainables import spec as trial_spec
cells = []
_resolve = trial_spec.resolve_config

def resolve_config(cell, *a, **k):  # the driver resolves each planned cell: keep the first's settings
    spec = _resolve(cell, *a, **k)
    if not cells:
        cells.append(dict(spec.config))
    return spec

trial_spec.resolve_config = resolve_config
from cluster.cli import main
sys.setprofile(profile)
try:
    main(["run", exp, "--smoke", "--seeds", "1", "--set", f"{key}={raw}", "--tracking-uri",
          f"sqlite:///{out}/mlflow.db", "--storage-path", f"{out}/rr"])
except Stop:
    pass
finally:
    sys.setprofile(None)
driver = sorted(files)
# The trial: what Ray would run, in this process: the first planned cell, trained end to end
# (no MLflow, no Tune), so the files where the value is used are counted too.
trial_spec.resolve_config = _resolve
from trainables.trainable import run_trial
files.clear()
sys.setprofile(profile)
try:
    run_trial(cells[0], tracking=None, report=None)
finally:
    sys.setprofile(None)
print(json.dumps({"driver": driver, "trial": sorted(files)}))
"""


def crossed(ref: str, assignment: str, experiment: str = "edge-data-per-class", depth: int = 3) -> dict[str, list[str]]:
    """Project files the value of `assignment` (KEY=VALUE) passes through, with the code of `ref`:
    {"driver": up to where Ray would start, "trial": the first planned trial, run in-process}.
    depth 0: only functions that hold the key itself (a local, a dict or config with that key);
    3: also those handed a larger structure holding it (a plan, a list of specs)."""
    key, _, raw = assignment.partition("=")
    with tempfile.TemporaryDirectory() as tmp:
        code = source(ref, Path(tmp) / "src")
        env = {**os.environ, "PYTHONPATH": str(code)}
        proc = subprocess.run([sys.executable, "-c", _TRACER, str(code), key, json.dumps(json.loads(raw)),
                               experiment, tmp, str(depth)], cwd=tmp, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"{ref} {assignment}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    ref, keys = argv[0], argv[1:] or DEFAULT
    for assignment in keys:
        direct, reached = crossed(ref, assignment, depth=0), crossed(ref, assignment)
        both = sorted(set(direct["driver"]) | set(direct["trial"]))
        print(f"{ref} --set {assignment}: {len(both)} files hold the key from the CLI to its use ({' '.join(both)}): "
              f"{len(direct['driver'])} in the driver, {len(direct['trial'])} in the trial "
              f"({' '.join(direct['trial'])}); {len(set(reached['driver']) | set(reached['trial']))} files "
              f"are handed it inside a larger structure", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
