"""`sweep run` and `sweep resume`: plan -> checks -> Ray -> parent run -> Tuner -> results."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster import console, preflight, ray_setup, tracking
from cluster.plan import Plan, make_plan
from search_spaces import get_experiment
from search_spaces.experiment import Experiment
from trainables.errors import ConfigError
from trainables.tracking import TrackingInfo

SWEEP_FILE = "sweep.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class RunOptions:
    """Everything `sweep run` accepts, checked in __post_init__ (before Ray or MLflow start)."""

    experiment: str
    seeds: int | None = None
    sets: dict[str, Any] = field(default_factory=dict)
    grids: dict[str, list] = field(default_factory=dict)
    smoke: bool = False
    num_samples: int | None = None  # None: the experiment's Search.num_samples (4 with --smoke), else 1
    address: str | None = None
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    name: str | None = None
    storage_path: str | None = None
    data_root: str | None = None
    max_failures: int = 2
    scheduler: str | None = None
    search: str = "random"
    samples: dict[str, Any] = field(default_factory=dict)  # --sample KEY=DOMAIN (cluster.search)
    grace_period: int | None = None
    reduction_factor: int | None = None
    ship_code: bool = True
    quiet: bool = False
    verbose: bool = False  # Ray's, Tune's and MLflow's own logs on the console instead of <storage>/<sweep>/driver.log
    pack: int = 1  # --pack K: up to K trials trained as one vmapped model per Tune trial (cluster.packing)

    def __post_init__(self):
        if self.name is not None and not NAME_RE.match(self.name):
            raise ConfigError(f"--name {self.name!r} must be letters, digits, '_', '.', '-' (max 128 chars)")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures must be >= 0, got {self.max_failures}")
        if self.pack < 1:
            raise ConfigError(f"--pack must be >= 1, got {self.pack}")
        ray_setup.check_gpu_arg(self.gpus_per_trial)
        if self.cpus_per_trial is not None and (self.cpus_per_trial < 1 or self.cpus_per_trial != int(self.cpus_per_trial)):
            raise ConfigError(f"--cpus-per-trial must be a whole number >= 1, got {self.cpus_per_trial:g}")


def resolve_storage(path: str | None) -> str:
    """Absolute local path (created and checked writable) or a URI Tune accepts (s3://, gs://, ...)."""
    if path and "://" in path:
        return path
    p = Path(path or "ray_results").expanduser().resolve()
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--storage-path {p} cannot be created: {exc.strerror}") from None
    if not os.access(p, os.W_OK):
        raise ConfigError(f"--storage-path {p} is not writable")
    return str(p)


def declaration(plan: Plan) -> dict[str, Any]:
    exp = plan.experiment
    d = dataclasses.asdict(exp)
    d.update(fixed=plan.fixed, axes={k: (v if isinstance(v, list) else repr(v)) for k, v in plan.axes.items()},
             per_pairing={p: {k: repr(v) for k, v in vals.items()} for p, vals in plan.per_pairing.items()},
             swept_keys=plan.swept_keys, num_samples=plan.num_samples, smoke=plan.smoke)
    return json.loads(json.dumps(d, default=repr))


def build_plan(opts: RunOptions, definition: Experiment | None = None) -> Plan:
    """The checked plan of `opts`; `definition` replaces the registry lookup (e.g. `sweep confirm`)."""
    from cluster.search import apply_samples, check_search

    exp = apply_samples(definition or get_experiment(opts.experiment), opts.samples)
    extra = {"data_root": opts.data_root} if opts.data_root else {}
    if exp.search is not None and opts.scheduler is None:
        opts.scheduler = exp.search.scheduler
    num_samples = opts.num_samples
    if num_samples is None:
        num_samples = (min(exp.search.num_samples, 4) if opts.smoke else exp.search.num_samples) if exp.search else 1
    plan = make_plan(exp, opts.sets, opts.grids, opts.seeds, opts.smoke, num_samples, extra_fixed=extra)
    check_search(plan, opts)  # scheduler/searcher problems also fail before Ray or MLflow start
    return plan


def run_sweep(opts: RunOptions, definition: Experiment | None = None, tags: dict[str, str] | None = None) -> int:
    """Run a sweep end to end; returns the process exit code (0 ok, 1 some trials failed).

    `definition` is an in-memory Experiment used instead of the registry entry (`sweep confirm`);
    `tags` are added to the parent run.
    """
    exp = definition or get_experiment(opts.experiment)
    if exp.analytic:
        from cluster.analytic import run_analytic

        return run_analytic(exp, opts.tracking_uri, opts.name)
    plan = build_plan(opts, definition)  # every cell validated here
    uri = tracking.check_tracking_uri(opts.tracking_uri)
    storage = resolve_storage(opts.storage_path)
    name = opts.name or f"{plan.experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "://" not in storage and _sweep_exists(Path(storage) / name):
        raise ConfigError(f"a sweep named {name!r} already exists in {storage}; pick another --name or "
                          f"`sweep resume {name}`")
    preflight.run_checks(plan, opts)  # models built, data decoded, resources fit: before Ray and MLflow
    log_path = console.driver_log_path(storage, name)
    quiet_libraries(log_path, opts.verbose)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="sweep-mlflow") as pool:
        # MLflow's import, store and experiment get ready while Ray starts (or joins `sweep up`'s head);
        # no run is created until Ray is up and the resources are checked.
        prepared = pool.submit(_prepare_tracking, uri, plan.experiment.name)
        ray_how = ray_setup.init_ray(opts.address, ship_code=opts.ship_code)
        if not opts.verbose:
            console.route_worker_output(log_path)
        client, exp_id, sha = prepared.result()
    cpus, gpus, nodes = ray_setup.cluster_resources()
    resources = ray_setup.trial_resources(opts.cpus_per_trial, opts.gpus_per_trial, cpus, gpus)
    if nodes > 1 and opts.storage_path is None:
        raise ConfigError(f"the cluster has {nodes} nodes: pass --storage-path with a shared filesystem path or a "
                          "cloud URI (s3://..., gs://...) so every node can write checkpoints")
    plan.fixed["threads"] = int(resources["cpu"])

    from cluster.search import asha_settings

    search = "grid" if not plan.sampled else opts.search
    parent = tracking.create_parent_run(
        client, exp_id, name, plan.experiment.name,
        {"swept_keys": json.dumps(plan.swept_keys), "git_sha": sha, "search": search,
         "smoke": str(plan.smoke).lower(), "storage_path": storage, "n_trials": str(plan.n_trials()),
         "scheduler": opts.scheduler or "none", "asha": json.dumps(asha_settings(plan, opts) or {}),
         **(tags or {})},
        {**plan.fixed, "seeds": plan.seeds, "num_samples": plan.num_samples}, declaration(plan))
    meta = {"name": name, "experiment": plan.experiment.name, "tracking_uri": uri, "experiment_id": exp_id,
            "parent_run_id": parent, "resources": resources, "storage_path": storage, "git_sha": sha,
            "swept_keys": plan.swept_keys, "n_trials": plan.n_trials(), "options": {k: v for k, v in dataclasses.asdict(opts).items()},
            "metric": list(_progress_metric(plan)), "driver_log": str(log_path)}
    if "://" not in storage:
        (Path(storage) / name).mkdir(parents=True, exist_ok=True)
        (Path(storage) / name / SWEEP_FILE).write_text(json.dumps(meta, indent=2, default=str))
    if not opts.quiet:
        print(f"sweep {name}: {plan.n_trials()} trials of {plan.experiment.name} "
              f"({resources['cpu']:g} CPU, {resources['gpu']:g} GPU each); MLflow {uri}, parent run {parent}; "
              f"{RAY_HOW.get(ray_how, 'Ray')}", flush=True)
    tuner = _make_tuner(plan, opts, meta, resources)
    return _fit_and_close(tuner, client, meta, opts)


RAY_HOW = {"head": "Ray: the head of `sweep up`", "local": "Ray started for this sweep (`sweep up` keeps one)",
           "cluster": "Ray cluster", "running": "Ray already running in this process"}


def _sweep_exists(folder: Path) -> bool:
    """A sweep folder holds more than the driver.log of a run refused before it started."""
    return folder.exists() and any(p.name != console.DRIVER_LOG for p in folder.iterdir())


def quiet_libraries(log_path: Path, verbose: bool) -> None:
    """Unless verbose: Ray's, Tune's and MLflow's loggers write to the sweep's driver.log."""
    if verbose:
        return
    import ray  # noqa: F401  (Ray sets up its logger on import; replace it after)

    if "mlflow" not in sys.modules:
        os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # keep our handler on its logger
    console.route_library_logs(log_path)


def _prepare_tracking(uri: str, experiment: str):
    """(client, experiment id, git sha): run in a thread while Ray starts."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = tracking.get_or_create_experiment(client, experiment, uri)
    sha = tracking.git_sha()
    from ray import tune  # noqa: F401  (the Tuner's import, also off the critical path)

    return client, exp_id, sha


def _progress_metric(plan: Plan) -> tuple[str, str]:
    """The metric the progress display ranks by: the search's, else validation accuracy."""
    search = plan.experiment.search
    if search is not None and getattr(search, "metric", None):
        return search.metric, search.mode
    return "val_acc", "max"


def _trainable(meta: dict, resources: dict):
    from ray import tune

    from trainables.packed_trainable import train_pack
    from trainables.trainable import train

    if meta["options"].get("pack", 1) > 1:
        train = train_pack
    info = TrackingInfo(meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"], meta["name"],
                        meta["experiment"], meta["git_sha"], tuple(meta["swept_keys"]))
    return tune.with_resources(tune.with_parameters(train, tracking=info), resources)


def _run_config(opts: RunOptions, meta: dict):
    from ray import tune

    from cluster.callbacks import MlflowTrialFinalizer, ProgressDisplay

    callbacks = [MlflowTrialFinalizer(meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"])]
    if not opts.quiet:
        metric, mode = meta.get("metric") or ("val_acc", "max")
        callbacks.append(ProgressDisplay(int(meta.get("n_trials", 0)), meta["swept_keys"], metric=metric, mode=mode))
    return tune.RunConfig(
        name=meta["name"], storage_path=meta["storage_path"],
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        # num_to_keep forces an experiment snapshot whenever a trial saved that many checkpoints
        # since the last one; with ~5 checkpoints per trial, 3 keeps that rare and disk small.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
        callbacks=callbacks, verbose=0)


def _make_tuner(plan: Plan, opts: RunOptions, meta: dict, resources: dict):
    from ray import tune

    from cluster.search import make_search, tune_space

    scheduler, search_alg, metric, mode = make_search(plan, opts)
    tune_config = tune.TuneConfig(num_samples=plan.num_samples, max_concurrent_trials=opts.max_concurrent,
                                  reuse_actors=True, scheduler=scheduler, search_alg=search_alg,
                                  metric=metric, mode=mode)
    space = tune_space(plan, opts)
    if opts.pack > 1:
        from cluster.packing import packed_space

        space, packs = packed_space(plan, opts.pack, resources["gpu"] > 0, opts.scheduler)
        if not opts.quiet:
            print(packs.summary(opts.pack), flush=True)
    return tune.Tuner(_trainable(meta, resources), param_space=space, tune_config=tune_config,
                      run_config=_run_config(opts, meta))


def _fit_and_close(tuner, client, meta: dict, opts: RunOptions) -> int:
    results = tuner.fit()
    errors = sum(1 for r in results if r.error is not None)
    client.set_tag(meta["parent_run_id"], "n_errors", str(errors))
    client.set_terminated(meta["parent_run_id"], status="FINISHED" if errors < len(results) else "FAILED")
    if not opts.quiet:
        print_results(meta)
    return 1 if errors else 0


def print_results(meta: dict) -> None:
    from analysis.results import format_results, results_table

    table = results_table(meta["tracking_uri"], sweep=meta["name"])
    print(f"\nResults of {meta['name']} (mean and 95% CI over seeds):")
    print(format_results(table, "table"))
    print(f"\nBrowse every trial:  {tracking.ui_hint(meta['tracking_uri'], meta.get('experiment_id'))}")
    if meta.get("driver_log") and not meta.get("options", {}).get("verbose"):
        print(f"Ray and MLflow logs: {meta['driver_log']}")


def load_meta(name: str, storage_path: str | None) -> dict:
    storage = resolve_storage(storage_path)
    path = Path(storage) / name / SWEEP_FILE
    if not path.exists():
        known = sorted(p.parent.name for p in Path(storage).glob(f"*/{SWEEP_FILE}"))
        raise ConfigError(f"no sweep named {name!r} in {storage}; known sweeps: {', '.join(known) or 'none'}")
    return json.loads(path.read_text())


def resume_sweep(name: str, storage_path: str | None = None, address: str | None = None,
                 verbose: bool = False) -> int:
    """Restore an interrupted sweep with Tuner.restore: unfinished and errored trials continue from
    their checkpoints into the same MLflow runs; finished trials are not rerun."""
    from mlflow.tracking import MlflowClient
    from ray import tune

    meta = load_meta(name, storage_path)
    opts = RunOptions(**{k: v for k, v in meta["options"].items() if k in {f.name for f in dataclasses.fields(RunOptions)}})
    opts.verbose = verbose
    uri = tracking.check_tracking_uri(meta["tracking_uri"])
    client = MlflowClient(tracking_uri=uri)
    client.update_run(meta["parent_run_id"], status="RUNNING")
    log_path = console.driver_log_path(meta["storage_path"], name)
    quiet_libraries(log_path, opts.verbose)
    ray_setup.init_ray(address or opts.address, ship_code=opts.ship_code)
    if not opts.verbose:
        console.route_worker_output(log_path)
    path = str(Path(meta["storage_path"]) / name) if "://" not in meta["storage_path"] else f"{meta['storage_path']}/{name}"
    if not tune.Tuner.can_restore(path):
        raise ConfigError(f"sweep {name!r} has no Tune state in {path} to restore")
    tuner = tune.Tuner.restore(path, trainable=_trainable(meta, meta["resources"]), resume_unfinished=True,
                               resume_errored=True, restart_errored=False)
    print(f"resuming sweep {name} from {path}; MLflow parent run {meta['parent_run_id']}", flush=True)
    return _fit_and_close(tuner, client, meta, opts)
