"""Sampled mutation testing of the core with cosmic-ray: every operator mutation of each module,
a fixed-seed random sample of them run against the fast tests mapped to that module.

    python -m tests.mutation.sample                     # the CI sample (make test-mutants)
    python -m tests.mutation.sample --full              # every mutant (make test-mutants-full; hours)
    python -m tests.mutation.sample -m analysis/stats.py --per-module 5 --jobs 1   # one module, small
    python -m tests.mutation.sample --list              # mutants per module, nothing run

cosmic-ray (https://cosmic-ray.readthedocs.io) enumerates the mutations (its `init`: every
operator at every position) and applies each one (`mutate_and_test`); the session of each module
is a cosmic-ray work database under .mutants/, so `cr-report .mutants/<module>.sqlite` and
`cr-html` read it. What cosmic-ray does not do, done here: a fixed-seed sample per module,
per-module test targets (only the tests that exercise the module run per mutant), N workers
each on its own copy of the repository (a mutant never touches the working tree), and the
checked-in list of equivalent mutants (tests/mutation/equivalent.toml).

Results per mutant: killed (the mapped tests failed or timed out), survived (they passed),
equivalent (survived, and listed with the reason in equivalent.toml), incompetent (the
mutated module does not import/compile: counted apart), not run (the --budget ran out).
Kill rate = killed / (killed + survived), equivalents excluded. Exit 0 when the rate is at
least --min-rate (0.90) and the baseline (unmutated) run passed; survivors are printed with
their diff: kill each with a test, or list it in equivalent.toml saying why it changes nothing.

MODULES maps each module (a path, easy to update when files move) to the test targets that
exercise it; tests/mutation/test_sample.py checks that every path exists.
"""
from __future__ import annotations

import argparse
import difflib
import itertools
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")
SEED = 20261203  # the CI sample; change it only on purpose (the sample then changes)
PER_MODULE = 8  # CI sample size per module (18 modules: 144 mutants; 1,376 s with 2 workers in CI, 2026-12-05)
PYTEST = "-x -q -p no:cacheprovider -m 'not slow' --no-header -o addopts=--strict-markers"

U = "tests/test_unlisted_bugs.py"
K = "tests/test_mutation_kills.py"
INTR = "tests/test_hostile_units.py -k 'signal or mark_killed or interrupt'"
LOCKS = "tests/test_hostile_units.py -k 'lock or claim or name'"
WARM = "tests/test_warm_driver.py -k 'not signals'"

# module -> test targets (pytest arguments) that exercise it; the targets run per mutant.
MODULES: dict[str, str] = {
    # statistics and verdicts
    "analysis/stats.py": f"tests/test_analysis_stats.py tests/test_analysis_aggregate.py {K} {U}",
    "analysis/sequential.py": "tests/test_sequential.py tests/test_adaptive.py",
    "analysis/hypotheses.py": "tests/test_analysis_stats.py tests/test_analysis_aggregate.py tests/test_mutant_guards.py "
                              "tests/test_study.py",
    # the adaptive rule
    "cluster/flow/adaptive.py": f"tests/test_adaptive.py {U}",
    # planning and search domains
    "cluster/planning/plan.py": "tests/test_plan.py tests/test_mutant_guards.py",
    "cluster/tuner/search.py": f"tests/test_hpo.py tests/test_mutant_guards.py {K}",
    "search_spaces/domains.py": f"tests/test_mutant_guards.py tests/test_hpo.py {K}",
    # the spec and the trial lifecycle
    "trainables/spec.py": f"tests/test_spec.py tests/test_plan.py {K} {U}",
    "trainables/lifecycle.py": f"tests/test_trainable.py tests/test_packing.py {U}",
    # packing
    "cluster/tuner/packing.py": "tests/test_packing.py tests/test_cli.py -k 'pack or make_packs or packed'",
    "trainables/packing.py": "tests/test_packing.py",
    # tracking (the buffered writer, redaction)
    "trainables/tracking.py": f"tests/test_trainable.py tests/test_security.py tests/test_tracking_relay.py {K} {U}",
    "trainables/tracking_relay.py": "tests/test_tracking_relay.py",
    # validation of options and plans
    "cluster/planning/validate.py": f"tests/test_validate_rules.py tests/test_bad_input.py tests/test_hostile_inputs.py {K}",
    # signals and locks
    "cluster/infra/interrupts.py": INTR,
    "cluster/folder/locks.py": LOCKS,
    # `sweep up`'s warm driver (the signal test starts sweeps: left to the default suite)
    "cluster/infra/warm_client.py": WARM,
    "cluster/infra/warm_server.py": WARM,
}


@dataclass
class Outcome:
    module: str
    job_id: str
    operator: str
    occurrence: int
    line: int
    result: str  # killed | survived | equivalent | incompetent | no-test | not run
    seconds: float = 0.0
    diff: str = ""
    reason: str = ""  # equivalent: why; killed: the first failing test


# ---- the mutants ---------------------------------------------------------------------------------

def copy_repo(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files of the working tree (uncommitted edits included)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def session_path(sessions: Path, module: str) -> Path:
    return sessions / (module.replace("/", "_").removesuffix(".py") + ".sqlite")


def enumerate_mutants(module: str, session: Path, cwd: Path) -> list:
    """cosmic-ray `init` of one module into a fresh work database; its work items, in a stable order."""
    from cosmic_ray.commands import init
    from cosmic_ray.work_db import use_db

    here = os.getcwd()
    os.chdir(cwd)
    try:
        session.unlink(missing_ok=True)
        with use_db(str(session)) as db:
            init([Path(module)], db, {})
            items = list(db.pending_work_items)
    finally:
        os.chdir(here)
    return sorted(items, key=lambda w: (w.mutations[0].operator_name, w.mutations[0].occurrence))


def sample(items: list, k: int | None, seed: int, module: str) -> list:
    """A fixed-seed random sample of k items (all of them when k is None); same seed, same sample.

    The items are shuffled by the seed and the first k taken, so a smaller sample of the same seed
    is part of a larger one (a quick run checks mutants of the CI sample)."""
    if k is None or k >= len(items):
        return list(items)
    order = list(items)
    random.Random(f"{seed}:{module}").shuffle(order)
    return sorted(order[:k], key=lambda w: (w.mutations[0].operator_name, w.mutations[0].occurrence))


def mutated_lines(root: Path, spec) -> tuple[str, str, str]:
    """(original lines, mutated lines, unified diff) of one mutation, for the equivalents list and the report."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    code = (root / spec.module_path).read_text()
    operator = cosmic_ray.plugins.get_operator(spec.operator_name)(**(spec.operator_args or {}))
    mutated = mutate_code(code, operator, spec.occurrence)
    if mutated is None:
        return "", "", ""
    a, b = code.splitlines(), mutated.splitlines()
    name = str(spec.module_path)
    diff = "\n".join(difflib.unified_diff(a, b, name, name, n=0, lineterm=""))
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    old, new = [], []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            old += a[i1:i2]
            new += b[j1:j2]
    return "\n".join(s.strip() for s in old), "\n".join(s.strip() for s in new), diff


def load_equivalents(path: Path = EQUIVALENT_FILE) -> list[dict]:
    """The checked-in equivalent mutants: module, operator, line (original, stripped), mutated, reason."""
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("equivalent", [])
    for e in entries:
        missing = {"module", "operator", "line", "mutated", "reason"} - set(e)
        if missing:
            raise ValueError(f"{path.name}: entry {e} lacks {sorted(missing)}")
        if not e["reason"].strip():
            raise ValueError(f"{path.name}: entry {e} gives no reason")
    return entries


def equivalent_reason(entries: list[dict], module: str, operator: str, old: str, new: str) -> str:
    for e in entries:
        if e["module"] == module and e["operator"] == operator and e["line"].strip() == old and e["mutated"].strip() == new:
            return e["reason"]
    return ""


# ---- running them ----------------------------------------------------------------------------------

def _test_command(targets: str) -> str:
    return f"{shlex.quote(sys.executable)} -m pytest {PYTEST} {targets}"


_WORKER: dict = {}


def _init_worker(copies) -> None:
    """Each worker process takes a copy of the repository of its own and runs every mutant there."""
    import multiprocessing

    ident = multiprocessing.current_process()._identity
    copy = copies[(ident[0] - 1) % len(copies) if ident else 0]
    os.chdir(copy)
    os.environ["PYTHONPATH"] = str(copy)
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    _WORKER["copy"] = copy


def _run_one(args) -> tuple[str, object, float]:
    from cosmic_ray.mutating import mutate_and_test

    job_id, mutations, targets, timeout = args
    t0 = time.perf_counter()
    result = mutate_and_test(mutations, _test_command(targets), timeout)
    return job_id, result, time.perf_counter() - t0


def baseline(copy: Path, modules: list[str]) -> dict[str, float]:
    """Seconds the unmutated tests of each module take (they must pass)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    out = {}
    for module in modules:
        t0 = time.perf_counter()
        proc = subprocess.run(shlex.split(_test_command(MODULES[module])), cwd=copy, env=env, capture_output=True,
                              text=True, timeout=1800)
        out[module] = time.perf_counter() - t0
        if proc.returncode != 0:
            print((proc.stdout + proc.stderr)[-4000:])
            raise SystemExit(f"baseline failed for {module} ({MODULES[module]}): fix the tests before mutating")
        print(f"baseline {module}: passed in {out[module]:.0f} s", flush=True)
    return out


def _first_failure(out: str) -> str:
    """The first failing test of a pytest run's output ("timeout" when it timed out)."""
    if out == "timeout":
        return "timeout"
    for line in out.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].split(" ", 1)[1].strip()
    return ""


def classify(result) -> str:
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    if result.worker_outcome == WorkerOutcome.NO_TEST:
        return "no-test"
    if result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
        return "incompetent"
    return "killed" if result.test_outcome == TestOutcome.KILLED else "survived"


def run(modules: list[str], per_module: int | None, seed: int, jobs: int, budget: float | None,
        sessions: Path, skip_baseline: bool = False) -> list[Outcome]:
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    equivalents = load_equivalents()
    sessions.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copies = [Path(tmp) / f"w{i}" for i in range(max(1, jobs))]
        for c in copies:
            copy_repo(c)
        base = baseline(copies[0], modules) if not skip_baseline else {m: 100.0 for m in modules}
        per_module_work, by_job = [], {}
        for module in modules:
            items = enumerate_mutants(module, session_path(sessions, module), copies[0])
            chosen = sample(items, per_module, seed, module)
            chosen_ids = {w.job_id for w in chosen}
            with use_db(str(session_path(sessions, module))) as db:
                for w in items:
                    if w.job_id not in chosen_ids:  # outside the sample: skipped, as cosmic-ray filters mark them
                        db.set_result(w.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
            timeout = max(60.0, 3 * base[module] + 30)
            print(f"{module}: {len(items)} mutants, {len(chosen)} sampled", flush=True)
            per_module_work.append([(w.job_id, w.mutations, MODULES[module], timeout) for w in chosen])
            for w in chosen:
                by_job[w.job_id] = (module, w)
        # Round robin over the modules: a --budget cut leaves every module partly covered.
        work = [job for group in itertools.zip_longest(*per_module_work) for job in group if job is not None]
        ctx = get_context("fork")
        with ctx.Pool(max(1, jobs), initializer=_init_worker, initargs=(copies,)) as pool:
            pending = pool.imap_unordered(_run_one, work)
            done = set()
            for job_id, result, secs in pending:
                module, w = by_job[job_id]
                spec = w.mutations[0]
                verdict = classify(result)
                old, new, diff = mutated_lines(copies[0], spec)
                reason = equivalent_reason(equivalents, module, spec.operator_name, old, new) if verdict == "survived" else ""
                if reason:
                    verdict = "equivalent"
                if verdict == "killed":
                    reason = _first_failure(result.output or "")
                outcomes.append(Outcome(module, job_id, spec.operator_name, spec.occurrence, spec.start_pos[0],
                                        verdict, secs, diff, reason))
                with use_db(str(session_path(sessions, module))) as db:
                    db.set_result(job_id, result)
                done.add(job_id)
                print(f"{verdict:11s} {module}:{spec.start_pos[0]} {spec.operator_name} #{spec.occurrence} ({secs:.0f} s)"
                      f" {reason if verdict == 'killed' else ''}", flush=True)
                if budget is not None and time.monotonic() - start > budget:
                    print(f"budget of {budget:.0f} s spent: the rest of the sample is not run", flush=True)
                    pool.terminate()
                    break
            for job_id, (module, w) in by_job.items():
                if job_id not in done:
                    spec = w.mutations[0]
                    outcomes.append(Outcome(module, job_id, spec.operator_name, spec.occurrence, spec.start_pos[0],
                                            "not run"))
    return outcomes


# ---- the report --------------------------------------------------------------------------------------

RESULTS = ("killed", "survived", "equivalent", "incompetent", "no-test", "not run")


def table(outcomes: list[Outcome]) -> tuple[str, float]:
    """Per-module counts and the overall kill rate over non-equivalent mutants."""
    lines = [f"{'module':28s} " + " ".join(f"{r:>11s}" for r in RESULTS) + "   kill rate"]
    modules = list(dict.fromkeys(o.module for o in outcomes))
    tot = {r: 0 for r in RESULTS}
    for m in modules:
        c = {r: sum(1 for o in outcomes if o.module == m and o.result == r) for r in RESULTS}
        for r in RESULTS:
            tot[r] += c[r]
        n = c["killed"] + c["survived"]
        lines.append(f"{m:28s} " + " ".join(f"{c[r]:11d}" for r in RESULTS) + (f"   {c['killed'] / n:9.0%}" if n else "         —"))
    n = tot["killed"] + tot["survived"]
    rate = tot["killed"] / n if n else 1.0
    lines.append(f"{'total':28s} " + " ".join(f"{tot[r]:11d}" for r in RESULTS) + f"   {rate:9.1%}")
    return "\n".join(lines), rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--module", action="append", help="only this module (repeatable); default: every MODULES entry")
    ap.add_argument("--per-module", type=int, default=PER_MODULE, help=f"sample size per module (default {PER_MODULE})")
    ap.add_argument("--full", action="store_true", help="every mutant of every module (the weekly run)")
    ap.add_argument("--seed", type=int, default=SEED, help=f"sample seed (default {SEED}: the CI sample)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="workers, each on its own copy")
    ap.add_argument("--budget", type=float, help="seconds; mutants not started by then are reported 'not run'")
    ap.add_argument("--skip-baseline", action="store_true",
                    help="do not first run each module's tests unmutated (only when they are known to pass)")
    ap.add_argument("--min-rate", type=float, default=0.90, help="kill rate needed over non-equivalent mutants")
    ap.add_argument("--sessions", type=Path, default=ROOT / ".mutants", help="cosmic-ray work databases (cr-report)")
    ap.add_argument("--json", type=Path, help="write every outcome (with diffs) here")
    ap.add_argument("--list", action="store_true", help="count the mutants per module; run nothing")
    args = ap.parse_args(argv)
    modules = args.module or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        ap.error(f"not in MODULES: {', '.join(unknown)}; known: {', '.join(MODULES)}")
    missing = [m for m in modules if not (ROOT / m).is_file()]
    if missing:
        print(f"modules missing (moved? update MODULES in {Path(__file__).name}): {', '.join(missing)}")
        return 2
    per_module = None if args.full else args.per_module
    if args.list:
        with tempfile.TemporaryDirectory() as tmp:
            for m in modules:
                items = enumerate_mutants(m, Path(tmp) / "s.sqlite", ROOT)
                print(f"{m:28s} {len(items):5d} mutants, {min(len(items), per_module or len(items)):4d} in the sample")
        return 0
    t0 = time.monotonic()
    outcomes = run(modules, per_module, args.seed, args.jobs, args.budget, args.sessions, args.skip_baseline)
    text, rate = table(outcomes)
    survivors = [o for o in outcomes if o.result == "survived"]
    if survivors:
        print("\nsurvivors (kill with a test, or list in tests/mutation/equivalent.toml with the reason):")
        for o in survivors:
            print(f"--- {o.module}:{o.line} {o.operator} #{o.occurrence}\n{o.diff}")
    print(f"\n{text}\n\n{len(outcomes)} mutants in {time.monotonic() - t0:.0f} s (seed {args.seed}, "
          f"{'all' if per_module is None else per_module} per module); kill rate {rate:.1%} "
          f"(needed {args.min_rate:.0%}); cosmic-ray sessions in {args.sessions}")
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    return 0 if rate >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
