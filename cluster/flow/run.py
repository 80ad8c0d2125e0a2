"""`sweep run`: plan -> checks -> Ray -> parent run -> Tuner -> results."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from cluster.flow import user_code
from cluster.flow.finish import failed, fit_and_close, interrupted
from cluster.flow.options import RunOptions
from cluster.flow.sweep import Sweep, plan_sweep
from cluster.folder.record import SweepRecord, claim_sweep, release_claim
from cluster.folder.storage import resolve_storage
from cluster.infra import console, interrupts, ray_setup, tracking
from cluster.planning import preflight, validate
from cluster.planning.plan import Plan
from cluster.tuner import assemble
from core import phases, store_schema as S
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


def run_sweep(opts: RunOptions, definition: Experiment | None = None, tags: dict[str, str] | None = None,
              on_start=None) -> int:
    """Run a sweep end to end; returns the process exit code (0 ok, 1 some trials failed,
    130/143 interrupted by SIGINT/SIGTERM: every run left RUNNING is then KILLED).

    `definition` is an in-memory Experiment used instead of the registry entry (`sweep confirm`);
    `tags` are added to the parent run; `on_start(name)` is called with the sweep's name once its
    folder is claimed (cluster.api's handle).
    """
    exp = definition or get_experiment(opts.experiment)
    if exp.analytic:
        from cluster.flow.analytic import check_analytic_options, run_analytic

        check_analytic_options(exp, opts)
        return run_analytic(exp, opts.tracking_uri, opts.name)
    sweep = plan_sweep(opts, definition)  # every cell validated here
    plan, opts = sweep.plan, sweep.options
    refs = user_code.sweep_refs(plan.experiment)  # the user modules its trials load (none: built-ins only)
    uri = tracking.check_tracking_uri(opts.tracking_uri)
    storage = resolve_storage(opts.storage_path)
    if opts.name and "://" not in storage and (Path(storage) / opts.name).exists():
        raise ConfigError(f"a sweep named {opts.name!r} already exists in {storage}; pick another --name or "
                          f"`sweep resume {opts.name}`")
    preflight.run_checks(plan, opts)  # models built, data decoded, resources fit: before Ray and MLflow
    phases.mark("planned")
    name, lock = claim_sweep(storage, opts.name, plan.experiment.name)
    if on_start is not None:
        on_start(name)
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
            phases.mark("ray_ready", how=ray_how)
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
        return _start_and_fit(sweep, uri, storage, name, resources, tags, tracking_ready,
                              {"ray": ray_how, "driver_log": str(log_path), "user_modules": refs})
    finally:
        release_claim(storage, name, lock)


def _start_and_fit(sweep: Sweep, uri: str, storage: str, name: str, resources: dict,
                   tags: dict[str, str] | None, tracking_ready: tuple, started: dict) -> int:
    """Parent run, sweep.json, Tuner, fit; signals handled from the moment the parent run exists."""
    plan, opts = sweep.plan, sweep.options
    client, exp_id, sha = tracking_ready
    with interrupts.SignalGuard() as guard:
        parent = tracking.create_parent_run(
            client, exp_id, name, plan.experiment.name,
            {S.TAG_SWEPT_KEYS: json.dumps(plan.swept_keys), S.TAG_GIT_SHA: sha, S.TAG_SEARCH: sweep.search,
             S.TAG_SMOKE: str(plan.smoke).lower(), S.TAG_STORAGE_PATH: storage, S.TAG_N_TRIALS: str(plan.n_trials()),
             S.TAG_SCHEDULER: opts.scheduler or "none", S.TAG_ASHA: json.dumps(sweep.asha or {}),
             **(sweep.adaptive.parent_tags() if sweep.adaptive else {}), **(tags or {})},
            {**plan.fixed, S.PARAM_SEEDS: plan.seeds, S.PARAM_NUM_SAMPLES: plan.num_samples}, declaration(plan))
        phases.mark("parent_run")
        record = SweepRecord(
            name=name, experiment=plan.experiment.name, tracking_uri=uri, experiment_id=exp_id, parent_run_id=parent,
            resources=resources, storage_path=storage, git_sha=sha, swept_keys=plan.swept_keys,
            n_trials=plan.n_trials(), options=dataclasses.asdict(opts), metric=sweep.metric,
            driver_log=started["driver_log"],
            extra={S.TAG_USER_MODULES: [r.to_dict() for r in started["user_modules"]]})
        try:
            record.save()
            user_code.record(client, parent, started["user_modules"], record.folder)
            if not opts.quiet:
                print(f"sweep {name}: {plan.n_trials()} trials of {plan.experiment.name} "
                      f"({resources['cpu']:g} CPU, {resources['gpu']:g} GPU each); MLflow {uri}, parent run {parent}; "
                      f"{RAY_HOW.get(started['ray'], 'Ray')}", flush=True)
            with tracking.trial_relay(record):
                tuner = assemble.make_tuner(plan, opts, record)
                record.record_tuner_hash(client)
                return fit_and_close(tuner, client, record, opts, guard)
        except interrupts.Interrupted as exc:
            return interrupted(client, record, exc.signum)
        except KeyboardInterrupt:
            return interrupted(client, record, guard.signum or 2)
        except Exception as exc:  # a full disk, a store gone, a closed console: runs marked, one message
            code = failed(client, record, exc)
            if isinstance(exc, ConfigError):
                raise
            return code


RAY_HOW = {"head": "Ray: the head of `sweep up`", "local": "Ray started for this sweep (`sweep up` keeps one)",
           "cluster": "Ray cluster", "running": "Ray already running in this process"}


def _prepare_tracking(uri: str, experiment: str):
    """(client, experiment id, git sha): run in a thread while Ray starts."""
    from mlflow.tracking import MlflowClient

    tracking.create_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = tracking.get_or_create_experiment(client, experiment, uri)
    sha = tracking.git_sha()
    phases.mark("mlflow_ready")
    from ray import tune  # noqa: F401  (the Tuner's import, also off the critical path)

    return client, exp_id, sha
