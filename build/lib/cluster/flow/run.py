"""`sweep run`: plan -> checks -> Ray -> parent run -> Tuner -> results."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from cluster.flow import user_code
from cluster.flow.finish import fit_and_close, interrupted
from cluster.flow.options import RunOptions
from cluster.folder.record import claim_sweep, record_tuner_hash, release_claim, write_meta
from cluster.folder.storage import resolve_storage
from cluster.infra import console, interrupts, ray_setup, tracking
from cluster.planning import preflight, validate
from cluster.planning.plan import Plan, make_plan
from cluster.tuner import assemble
from core import store_schema as S
from core.errors import ConfigError
from search_spaces import get_experiment
from search_spaces.experiment import Experiment


def declaration(plan: Plan) -> dict[str, Any]:
    exp = plan.experiment
    d = dataclasses.asdict(exp)
    d.update(fixed=plan.fixed, axes={k: (v if isinstance(v, list) else repr(v)) for k, v in plan.axes.items()},
             per_pairing={p: {k: repr(v) for k, v in vals.items()} for p, vals in plan.per_pairing.items()},
             swept_keys=plan.swept_keys, num_samples=plan.num_samples, smoke=plan.smoke)
    return json.loads(json.dumps(d, default=repr))

def build_plan(opts: RunOptions, definition: Experiment | None = None) -> Plan:
    """The checked plan of `opts`; `definition` replaces the registry lookup (e.g. `sweep confirm`)."""
    from cluster.tuner.search import apply_samples, check_search

    exp = apply_samples(definition or get_experiment(opts.experiment), opts.samples)
    extra = {"data_root": opts.data_root} if opts.data_root else {}
    if exp.search is not None and opts.scheduler is None:
        opts.scheduler = exp.search.scheduler
    num_samples = opts.num_samples
    if num_samples is None:
        num_samples = (min(exp.search.num_samples, 4) if opts.smoke else exp.search.num_samples) if exp.search else 1
    validate.check_overrides(opts.sets, opts.grids, opts.samples, opts.data_root)
    plan = make_plan(exp, opts.sets, opts.grids, opts.seeds, opts.smoke, num_samples, extra_fixed=extra,
                     precheck=lambda p: validate.check_plan(p, opts))
    validate.check_memory(plan)
    from cluster.tuner.packing import check_pack

    check_pack(plan, opts.pack, opts.scheduler, opts.search)  # --pack with ASHA/a searcher/samples: exit 2 here
    check_search(plan, opts)  # scheduler/searcher problems also fail before Ray or MLflow start
    from cluster.flow.adaptive import settings_from

    settings_from(opts, plan)  # --until-decided problems too
    return plan

def run_sweep(opts: RunOptions, definition: Experiment | None = None, tags: dict[str, str] | None = None) -> int:
    """Run a sweep end to end; returns the process exit code (0 ok, 1 some trials failed,
    130/143 interrupted by SIGINT/SIGTERM: every run left RUNNING is then KILLED).

    `definition` is an in-memory Experiment used instead of the registry entry (`sweep confirm`);
    `tags` are added to the parent run.
    """
    exp = definition or get_experiment(opts.experiment)
    if exp.analytic:
        from cluster.flow.analytic import run_analytic

        return run_analytic(exp, opts.tracking_uri, opts.name)
    plan = build_plan(opts, definition)  # every cell validated here
    refs = user_code.sweep_refs(plan.experiment)  # the user modules its trials load (none: built-ins only)
    uri = tracking.check_tracking_uri(opts.tracking_uri)
    storage = resolve_storage(opts.storage_path)
    if opts.name and "://" not in storage and (Path(storage) / opts.name).exists():
        raise ConfigError(f"a sweep named {opts.name!r} already exists in {storage}; pick another --name or "
                          f"`sweep resume {opts.name}`")
    preflight.run_checks(plan, opts)  # models built, data decoded, resources fit: before Ray and MLflow
    name, lock = claim_sweep(storage, opts.name, plan.experiment.name)
    opts.started = name  # for the API's handle (not an option: never in sweep.json)
    log_path = console.driver_log_path(storage, name)
    try:
        from concurrent.futures import ThreadPoolExecutor

        if not opts.verbose and "mlflow" not in sys.modules:
            os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # our driver.log handler stays on its logger
        with ThreadPoolExecutor(1, thread_name_prefix="sweep-mlflow") as pool:
            # MLflow's store (schema creation serialized with other sweeps), experiment and imports get
            # ready while Ray is imported and starts or joins `sweep up`'s head; no run exists until the
            # resources fit.
            prepared = pool.submit(_prepare_tracking, uri, plan.experiment.name)
            console.quiet_libraries(log_path, opts.verbose)
            ray_how = ray_setup.init_ray(opts.address, ship_code=opts.ship_code, py_modules=user_code.ship_paths(refs))
            if not opts.verbose:
                console.route_worker_output(log_path)
            tracking_ready = prepared.result()
        cpus, gpus, nodes = ray_setup.cluster_resources()
        resources = ray_setup.trial_resources(opts.cpus_per_trial, opts.gpus_per_trial, cpus, gpus)
        if nodes > 1 and opts.storage_path is None:
            raise ConfigError(f"the cluster has {nodes} nodes: pass --storage-path with a shared filesystem path or "
                              "a cloud URI (s3://..., gs://...) so every node can write checkpoints")
        if opts.address is not None:
            validate.check_device_cluster(plan, gpus)
    except BaseException:
        release_claim(storage, name, lock, remove=True)
        raise
    try:
        return _start_and_fit(plan, opts, uri, storage, name, resources, tags, tracking_ready,
                              {"ray": ray_how, "driver_log": str(log_path), "user_modules": refs})
    finally:
        release_claim(storage, name, lock)

def _start_and_fit(plan: Plan, opts: RunOptions, uri: str, storage: str, name: str, resources: dict,
                   tags: dict[str, str] | None, tracking_ready: tuple, started: dict) -> int:
    """Parent run, sweep.json, Tuner, fit; signals handled from the moment the parent run exists."""
    from cluster.tuner.search import asha_settings

    plan.fixed["threads"] = int(resources["cpu"])
    client, exp_id, sha = tracking_ready
    search = "grid" if not plan.sampled else opts.search
    with interrupts.SignalGuard() as guard:
        parent = tracking.create_parent_run(
            client, exp_id, name, plan.experiment.name,
            {S.TAG_SWEPT_KEYS: json.dumps(plan.swept_keys), S.TAG_GIT_SHA: sha, S.TAG_SEARCH: search,
             S.TAG_SMOKE: str(plan.smoke).lower(), S.TAG_STORAGE_PATH: storage, S.TAG_N_TRIALS: str(plan.n_trials()),
             S.TAG_SCHEDULER: opts.scheduler or "none", S.TAG_ASHA: json.dumps(asha_settings(plan, opts) or {}),
             **_adaptive_tags(plan, opts), **(tags or {})},
            {**plan.fixed, S.PARAM_SEEDS: plan.seeds, S.PARAM_NUM_SAMPLES: plan.num_samples}, declaration(plan))
        meta = {"name": name, "experiment": plan.experiment.name, "tracking_uri": uri, "experiment_id": exp_id,
                "parent_run_id": parent, "resources": resources, "storage_path": storage, "git_sha": sha,
                "swept_keys": plan.swept_keys, "n_trials": plan.n_trials(),
                "options": {k: v for k, v in dataclasses.asdict(opts).items()},
                "metric": list(assemble.progress_metric(plan)), "driver_log": started["driver_log"],
                user_code.TAG_USER_MODULES: [r.to_dict() for r in started["user_modules"]]}
        folder = None if "://" in storage else Path(storage) / name
        try:
            write_meta(folder, meta)
            user_code.record(client, parent, started["user_modules"], folder)
            if not opts.quiet:
                print(f"sweep {name}: {plan.n_trials()} trials of {plan.experiment.name} "
                      f"({resources['cpu']:g} CPU, {resources['gpu']:g} GPU each); MLflow {uri}, parent run {parent}; "
                      f"{RAY_HOW.get(started['ray'], 'Ray')}", flush=True)
            tuner = assemble.make_tuner(plan, opts, meta, resources)
            record_tuner_hash(client, folder, meta)
            return fit_and_close(tuner, client, meta, opts, guard, folder)
        except interrupts.Interrupted as exc:
            return interrupted(client, meta, exc.signum, folder)
        except KeyboardInterrupt:
            return interrupted(client, meta, guard.signum or 2, folder)

def _adaptive_tags(plan: Plan, opts: RunOptions) -> dict[str, str]:
    from cluster.flow.adaptive import settings_from

    settings = settings_from(opts, plan)
    return settings.parent_tags() if settings else {}

RAY_HOW = {"head": "Ray: the head of `sweep up`", "local": "Ray started for this sweep (`sweep up` keeps one)",
           "cluster": "Ray cluster", "running": "Ray already running in this process"}

def _prepare_tracking(uri: str, experiment: str):
    """(client, experiment id, git sha): run in a thread while Ray starts."""
    from mlflow.tracking import MlflowClient

    tracking.create_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = tracking.get_or_create_experiment(client, experiment, uri)
    sha = tracking.git_sha()
    from ray import tune  # noqa: F401  (the Tuner's import, also off the critical path)

    return client, exp_id, sha
