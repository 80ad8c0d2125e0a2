"""Mutation check of the core: apply each named mutant to a temporary copy of the repository, run
only the fast test files mapped to it, and report whether the tests caught it.

    python -m tests.mutation.run              # every mutant (make test-mutants)
    python -m tests.mutation.run -k verdict,redact   # mutants whose name contains "verdict" or "redact"
    python -m tests.mutation.run --list       # the mutants, no test run

Each mutant is (name, file, exact source snippet, replacement, test targets). Results:
  killed    the mapped tests failed (or hung past the per-mutant timeout: "timeout")
  survived  the mapped tests passed with the mutant in place: a test is missing
  stale     the snippet is no longer in the file (or not exactly once): update the mutant
Exit code 0 only when every mutant was killed; survived or stale mutants fail the run.

A well-kept tool (mutmut 3, cosmic-ray) generates every operator mutation of every function:
for this core that is thousands of mutants, each a pytest run that imports torch, Ray and
MLflow (3-5 s before the first test), i.e. hours on 2 cores. A named list keeps the check to
the behaviour the project promises and runs in about ten minutes.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", "--no-header", "-o", "addopts=--strict-markers"]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]


G = "tests/test_mutant_guards.py"
AGG = "tests/test_analysis_aggregate.py"
SEQ = "tests/test_sequential.py"
STAT = "tests/test_analysis_stats.py"
PLAN = "tests/test_plan.py"
HPO = "tests/test_hpo.py"
SEC = "tests/test_security.py::test_trial_params_and_config_artifact_redact_credentials"
SEC_CKPT = "tests/test_security.py::test_hostile_trial_checkpoint_is_refused"
CLI = "tests/test_cli.py::test_pack_refused_before_ray_and_mlflow"
EDGE = "tests/test_edge_data.py"
PACK = "tests/test_packing.py::test_packed_space_rejects_searches_and_schedulers"
TRAIN = "tests/test_trainable.py"
BAD = "tests/test_bad_input.py"
U25 = "tests/test_unlisted_bugs.py"

MUTANTS = [
    # --- statistics (analysis/aggregate.py) ---
    Mutant("std-population", "analysis/aggregate.py", "std = float(x.std(ddof=1))", "std = float(x.std(ddof=0))",
           (AGG,)),
    Mutant("t-quantile-one-sided", "analysis/aggregate.py", "stats.t.ppf(0.5 + confidence / 2, len(x) - 1)",
           "stats.t.ppf(confidence, len(x) - 1)", (AGG,)),
    Mutant("ci-no-sqrt-n", "analysis/aggregate.py", "* std / math.sqrt(len(x))", "* std / len(x)", (AGG,)),
    Mutant("aggregate-counts-failed-runs", "analysis/aggregate.py",
           "        runs = runs[runs[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED]\n    metrics",
           "        runs = runs\n    metrics", (AGG,)),
    Mutant("welch-equal-variance", "analysis/aggregate.py", "stats.ttest_ind(x, y, equal_var=False)",
           "stats.ttest_ind(x, y, equal_var=True)", (AGG,)),
    Mutant("welch-one-value-tested", "analysis/aggregate.py", "if len(x) < 2 or len(y) < 2:",
           "if len(x) < 1 or len(y) < 1:", (G, AGG)),
    Mutant("welch-deterministic-separation", "analysis/aggregate.py", "1.0 if same else 0.0", "1.0", (AGG,)),
    # --- verdicts (analysis/hypotheses.py, analysis/sequential.py: the two-part test, issue 20) ---
    Mutant("verdict-min-as-max", "analysis/hypotheses.py", 'sign = 1.0 if h.mode == "max" else -1.0  # decide',
           "sign = 1.0  # decide", (G, AGG)),
    Mutant("two-part-ignores-learned-rate", "analysis/sequential.py", "if s.low > 0 or rate[0] <= part:",
           "if s.low > 0:", (SEQ,)),
    Mutant("two-part-level-not-split", "analysis/sequential.py", "    part = level / 2\n", "    part = level\n",
           (STAT,)),
    Mutant("spending-cumulative", "analysis/sequential.py",
           "target = spent(t, alpha, kind) - spent(prev_t, alpha, kind)", "target = spent(t, alpha, kind)", (SEQ,)),
    Mutant("equivalence-without-margin", "analysis/sequential.py",
           "elif not ways and margin is not None and -margin < s.low and s.high < margin:",
           "elif not ways and margin is not None:", (SEQ,)),
    Mutant("hypothesis-counts-stopped-runs", "analysis/hypotheses.py",
           "mask &= runs[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED", "pass", (AGG,)),
    # --- planning and search-space translation (cluster/planning/plan.py, cluster/tuner/search.py, domains) ---
    Mutant("grid-keeps-per-pairing", "cluster/planning/plan.py",
           "        fixed.pop(k, None)\n        for p in per_pairing.values():\n            p.pop(k, None)\n",
           "        fixed.pop(k, None)\n", (G, PLAN)),
    Mutant("set-keeps-per-pairing", "cluster/planning/plan.py",
           "        axes.pop(k, None)\n        for p in per_pairing.values():\n            p.pop(k, None)\n",
           "        axes.pop(k, None)\n", (G, PLAN)),
    Mutant("randint-tune-exclusive", "search_spaces/domains.py", "tune.randint(self.low, self.high + 1)",
           "tune.randint(self.low, self.high)", (G, PLAN)),
    Mutant("per-pairing-not-sampled", "cluster/planning/plan.py", "return v.sample() if is_domain(v) else v",
           "return v.representative() if is_domain(v) else v", (G, PLAN)),
    Mutant("randint-upper-not-validated", "search_spaces/domains.py",
           "        return [self.low, self.high]\n",
           "        return [self.low]\n", (G, PLAN)),
    Mutant("n-trials-ignores-samples", "cluster/planning/plan.py", "return len(self.cell_vars) * self.num_samples", "return len(self.cell_vars)", (G, PLAN)),
    Mutant("smoke-keeps-all-seeds", "cluster/planning/plan.py", "(min(exp.seeds, 2) if smoke else exp.seeds)",
           "exp.seeds", (PLAN,)),
    Mutant("optuna-randint-exclusive", "search_spaces/domains.py", "trial.suggest_int(name, self.low, self.high)",
           "trial.suggest_int(name, self.low, self.high - 1)", (G, HPO)),
    Mutant("asha-grace-not-shrunk", "cluster/tuner/search.py", "if grace >= max_t:", "if grace > max_t:", (G, HPO)),
    Mutant("reduction-factor-one-allowed", "cluster/tuner/search.py", "if rf is not None and rf < 2:",
           "if rf is not None and rf < 1:", (HPO,)),
    Mutant("randint-reversed-allowed", "search_spaces/domains.py", "if self.low > self.high:\n",
           "if False:\n", (HPO, PLAN)),
    Mutant("pack-with-asha-allowed", "cluster/tuner/packing.py", 'if scheduler not in (None, "none"):',
           "if False:", (CLI, PACK)),
    Mutant("pack-with-samples-allowed", "cluster/tuner/packing.py", "if plan.num_samples != 1:", "if False:",
           (CLI, PACK)),
    Mutant("pack-check-after-ray", "cluster/flow/sweep.py", "    check_pack(plan, opts.pack, scheduler_of(opts, plan), opts.search)",
           "    pass", (CLI,)),
    # --- redaction (trainables/tracking.py) ---
    Mutant("redact-case-sensitive", "trainables/tracking.py", "in str(k).lower()", "in str(k)", (G, SEC)),
    Mutant("redact-no-secret", "trainables/tracking.py", '"secret", ', "", (G, SEC)),
    Mutant("redact-no-credential", "trainables/tracking.py", '"credential", ', "", (G, SEC)),
    Mutant("redact-not-nested", "trainables/tracking.py", "else redact(v) if isinstance(v, dict) else v",
           "else v", (G, SEC)),
    # --- resolve / validate (trainables/spec.py, core/config_base.py) ---
    Mutant("unknown-key-accepted", "trainables/spec.py", "if key not in known and key != CELL_KEY:",
           "if False:", (PLAN,)),
    Mutant("kernel-above-image-accepted", "trainables/models/edge.py", "(size and k > size)",
           "(size and k > size + 1)", (PLAN, G)),
    Mutant("bool-accepted-as-int", "core/config_base.py",
           "return isinstance(value, int) and not isinstance(value, bool)", "return isinstance(value, int)",
           (G, PLAN)),
    Mutant("fault-injection-ungated", "trainables/spec.py", 'os.environ.get(FAULT_ENV) != "1"', "False",
           (PLAN, TRAIN)),
    # --- --cpus-per-trial reaches the trial ---
    # (lambda n: None)(...) drops the call whatever its argument is named; unpacked and packed trials
    # share one set-up (trainables.trainable.run_specs), so G's packed case is killed by it too
    Mutant("trainable-ignores-threads", "trainables/trainable.py", "torch.set_num_threads(",
           "(lambda n: None)(", (G, TRAIN)),
    Mutant("checkpoint-unpickles", "trainables/checkpoint.py", "torch.load(path, weights_only=True,",
           "torch.load(path, weights_only=False,", (SEC_CKPT,)),
    Mutant("runner-ignores-cpus-per-trial", "cluster/flow/sweep.py", 'extra["threads"] = threads',
           "pass", (G,)),
    Mutant("resources-ignore-cpus-per-trial", "cluster/infra/ray_setup.py", "cpus = 1.0 if cpus is None else float(cpus)",
           "cpus = 1.0", (G,)),
    # --- the trial lifecycle and its MLflow writes (trainables/lifecycle.py) ---
    Mutant("flush-every-report", "trainables/lifecycle.py", "m.run.flush_if_due()", "m.run.flush()",
           (TRAIN + "::test_metric_writes_are_bounded_in_time_not_per_report",)),
    Mutant("stopped-trial-drops-buffer", "trainables/lifecycle.py",
           "                    run.flush()\n                else:\n", "                    pass\n                else:\n",
           (TRAIN + "::test_trial_stopped_by_the_scheduler_keeps_every_reported_epoch",)),
    Mutant("no-flush-before-checkpoint", "trainables/lifecycle.py",
           "                if checkpoint:\n                    m.run.flush()", "                if False:\n                    m.run.flush()",
           (TRAIN + "::test_a_checkpoint_never_runs_ahead_of_what_mlflow_holds",)),
    Mutant("analysis-imports-trainables", "analysis/samples.py", "from analysis.load import download_artifact\n",
           "from analysis.load import download_artifact\nimport trainables.data  # noqa\n", ("tests/test_layering.py",)),
    # --- the edge data labels (trainables/data/edge_patterns.py) ---
    Mutant("edge-labels-shifted", "trainables/data/edge_patterns.py",
           "y[c * n_per_class:(c + 1) * n_per_class] = c", "y[c * n_per_class:(c + 1) * n_per_class] = (c + 1) % k",
           (EDGE,)),
    Mutant("edge-classes-reordered", "trainables/data/edge_patterns.py",
           "for c, kind in enumerate(cfg.class_type):", "for c, kind in enumerate(reversed(cfg.class_type)):",
           (EDGE,)),
    Mutant("edge-permutation-ignored", "trainables/data/edge_patterns.py",
           "        if permutation is not None:\n            block = block.reshape",
           "        if False:\n            block = block.reshape", (EDGE,)),
    # --- the CLI ---
    Mutant("interrupt-exit-code", "cluster/cli.py", 'return 128 + getattr(exc, "signum", 2)', "return 1",
           ("tests/test_cli.py::test_exit_code_2_for_bad_input_and_130_for_an_interrupt",)),
    # --- issue 25: bugs the suite missed until these tests (each checked by applying it) ---
    Mutant("adaptive-parent-records-wrong-alpha", "cluster/flow/adaptive.py",
           "SS.TAG_ALPHA: repr(d.alpha)", "SS.TAG_ALPHA: repr(d.levels[-1])",
           (U25 + "::test_adaptive_parent_run_records_the_design_it_tested_with",)),
    Mutant("study-judges-adaptive-at-one-look", "analysis/study.py", "        design, sequential = decision_design(data)",
           "        design, sequential = type(decision_design(data)[0])(alpha=alpha), False",
           (U25 + "::test_study_report_judges_an_adaptive_sweep_under_its_design",)),
    Mutant("untagged-killed-run-completed", "analysis/load.py",
           'runs[reason].fillna(runs["mlflow_status"].str.lower())', "runs[reason].fillna(S.STATUS_COMPLETED)",
           (U25 + "::test_child_run_killed_before_it_was_tagged_is_not_a_result",)),
    Mutant("pack-one-finished-earlier-is-finished", "trainables/lifecycle.py",
           "if all(m.run is not None and m.run.finished_earlier for m in members)",
           "if any(m.run is not None and m.run.finished_earlier for m in members)",
           (U25 + "::test_pack_with_one_member_finished_earlier_trains_and_completes_the_others",)),
    Mutant("pack-best-from-member-0", "trainables/lifecycle.py", "step.history_rows(i, 1, start - 1)",
           "step.history_rows(0, 1, start - 1)", (U25 + "::test_restored_pack_members_keep_their_own_best_accuracy",)),
    Mutant("flush-one-batch", "trainables/tracking.py", "        while self.buffer:", "        if self.buffer:",
           (U25 + "::test_flush_drains_the_buffer_in_batches",)),
    Mutant("evaluator-keys-for-any-pairing", "trainables/spec.py", "| _evaluator_keys(evaluators)", "| _evaluator_keys()",
           (U25 + "::test_evaluator_keys_are_refused_for_trials_without_that_evaluator",)),
    Mutant("ci-low-not-clipped", "analysis/stats.py", "return min(max(low, bounds[0]), bounds[1]), ",
           "return min(low, bounds[1]), ", (U25 + "::test_accuracy_interval_lower_bound_is_clipped_to_zero",)),
    Mutant("no-correction-over-looks", "analysis/sequential.py",
           "        fr = tuple(n / self.looks[-1] for n in self.looks)", "        return (self.alpha / 2,) * self.k",
           ("tests/test_adaptive.py::test_error_rate_under_repeated_looks_stays_below_alpha",)),
    Mutant("sigterm-exits-130", "cluster/flow/finish.py", "    return 128 + signum", "    return 130",
           ("tests/test_resume_fast.py::test_asha_search_resumes",)),
    Mutant("graceful-stop-exits-as-done", "cluster/flow/finish.py",
           "    if guard.signum is not None:  # Tune stopped gracefully", "    if False:  # Tune stopped gracefully",
           ("tests/test_resume_fast.py::test_packed_sweep_resumes_every_member",)),
    Mutant("packed-resume-ignores-checkpoint", "trainables/packed_trainable.py",
           'run_pack(list(config["members"]), tracking, report, restore, trial_id=trial_id)',
           'run_pack(list(config["members"]), tracking, report, None, trial_id=trial_id)',
           ("tests/test_resume_fast.py::test_packed_sweep_resumes_every_member",)),
]


def _copy_repo(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files of the working tree (uncommitted edits included)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith("tests/mutation/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", *PYTEST, *tests], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return "passed", time.perf_counter() - t0, out
    if proc.returncode == 1:
        return "failed", time.perf_counter() - t0, out
    return f"error({proc.returncode})", time.perf_counter() - t0, out


def _first_failure(out: str) -> str:
    for line in out.splitlines():
        if line.startswith("FAILED ") or line.startswith("ERROR "):
            return line.split(" - ")[0][7:].strip()
    return ""


def check_snippets(mutants: list[Mutant], root: Path = ROOT) -> dict[str, str]:
    """name -> "" if the snippet occurs exactly once in its file, else why the mutant is stale."""
    out = {}
    for m in mutants:
        path = root / m.file
        n = path.read_text().count(m.find) if path.exists() else -1
        out[m.name] = "" if n == 1 else ("file missing" if n < 0 else f"snippet found {n} times")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="select", help="only mutants whose name contains this (comma-separated: any of them)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per mutant (default 300)")
    ap.add_argument("--list", action="store_true", help="list the mutants and whether their snippets exist")
    args = ap.parse_args(argv)
    wanted = [w for w in (args.select or "").split(",") if w]
    mutants = [m for m in MUTANTS if not wanted or any(w in m.name for w in wanted)]
    stale = check_snippets(mutants)
    if args.list:
        for m in mutants:
            print(f"{m.name:34s} {m.file:36s} {stale[m.name] or 'ok'}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as d:
        copy = Path(d)
        _copy_repo(copy)
        targets = tuple(sorted({t for m in mutants for t in m.tests}))
        print(f"baseline: {len(targets)} test files on the unmutated copy ...", flush=True)
        status, secs, out = _pytest(copy, targets, args.timeout * 2)
        if status != "passed":
            print(out[-4000:])
            print(f"baseline {status} ({secs:.0f} s): fix the tests before checking mutants")
            return 2
        print(f"baseline passed in {secs:.0f} s\n", flush=True)
        rows = []
        for m in mutants:
            if stale[m.name]:
                rows.append((m, "stale", 0.0, stale[m.name]))
                print(f"{'stale':9s} {m.name}: {stale[m.name]}", flush=True)
                continue
            path = copy / m.file
            original = path.read_text()
            path.write_text(original.replace(m.find, m.replace))
            try:
                status, secs, out = _pytest(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = {"passed": "survived", "failed": "killed", "timeout": "timeout"}.get(status, status)
            why = _first_failure(out) if verdict == "killed" else ""
            rows.append((m, verdict, secs, why))
            print(f"{verdict:9s} {m.name} ({secs:.0f} s) {why}", flush=True)
    counts = {v: sum(1 for r in rows if r[1] == v) for v in ("killed", "timeout", "survived", "stale")}
    other = len(rows) - sum(counts.values())
    print(f"\n{'mutant':34s} {'file':36s} result")
    for m, verdict, _, _ in rows:
        print(f"{m.name:34s} {m.file:36s} {verdict}")
    print(f"\n{len(rows)} mutants: {counts['killed']} killed, {counts['timeout']} timed out (killed), "
          f"{counts['survived']} survived, {counts['stale']} stale" + (f", {other} errors" if other else ""))
    return 0 if counts["killed"] + counts["timeout"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
