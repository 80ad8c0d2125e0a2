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

from cluster import console, interrupts, preflight, ray_setup, tracking, tune_state, validate
from cluster.locks import LOCK_FILE, SweepLock
from cluster.plan import Plan, make_plan
from search_spaces import get_experiment
from search_spaces.experiment import Experiment
from core.errors import ConfigError
from core import phases, store_schema as S
from trainables.tracking import TrackingInfo

SWEEP_FILE = "sweep.json"
# URI schemes pyarrow's file systems (used by Tune's storage) understand.
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
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
    allow_large: bool = False  # --yes: run sweeps above cluster.validate.MAX_TRIALS trials
    until_decided: bool = False  # --until-decided: seeds added where hypotheses are open (cluster.adaptive)
    max_seeds: int | None = None
    target_halfwidth: float | None = None

    def __post_init__(self):
        validate.check_options(self)  # non-finite resource values first: the checks below compare them
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
        scheme = path.split("://", 1)[0].lower()
        if scheme == "file":
            path = path[len("file://"):]
        elif scheme not in STORAGE_SCHEMES:
            raise ConfigError(f"--storage-path {path!r} has unsupported scheme {scheme!r}; use a local or shared "
                              f"path or one of {', '.join(s + '://' for s in STORAGE_SCHEMES)}")
        else:
            return path
    try:
        p = Path(path or "ray_results").expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ConfigError(f"--storage-path {path!r} cannot be resolved: {exc}") from None
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
    validate.check_overrides(opts.sets, opts.grids, opts.samples, opts.data_root)
    plan = make_plan(exp, opts.sets, opts.grids, opts.seeds, opts.smoke, num_samples, extra_fixed=extra,
                     precheck=lambda p: validate.check_plan(p, opts))
    validate.check_memory(plan)
    from cluster.packing import check_pack

    check_pack(plan, opts.pack, opts.scheduler, opts.search)  # --pack with ASHA/a searcher/samples: exit 2 here
    check_search(plan, opts)  # scheduler/searcher problems also fail before Ray or MLflow start
    from cluster.adaptive import settings_from

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
        from cluster.analytic import run_analytic

        return run_analytic(exp, opts.tracking_uri, opts.name)
    plan = build_plan(opts, definition)  # every cell validated here
    uri = tracking.check_tracking_uri(opts.tracking_uri)
    storage = resolve_storage(opts.storage_path)
    if opts.name and "://" not in storage and (Path(storage) / opts.name).exists():
        raise ConfigError(f"a sweep named {opts.name!r} already exists in {storage}; pick another --name or "
                          f"`sweep resume {opts.name}`")
    preflight.run_checks(plan, opts)  # models built, data decoded, resources fit: before Ray and MLflow
    phases.mark("planned")
    name, lock = claim_sweep(storage, opts.name, plan.experiment.name)
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
            quiet_libraries(log_path, opts.verbose)
            ray_how = ray_setup.init_ray(opts.address, ship_code=opts.ship_code)
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
        return _start_and_fit(plan, opts, uri, storage, name, resources, tags, tracking_ready,
                              {"ray": ray_how, "driver_log": str(log_path)})
    finally:
        release_claim(storage, name, lock)


def _start_and_fit(plan: Plan, opts: RunOptions, uri: str, storage: str, name: str, resources: dict,
                   tags: dict[str, str] | None, tracking_ready: tuple, started: dict) -> int:
    """Parent run, sweep.json, Tuner, fit; signals handled from the moment the parent run exists."""
    from cluster.search import asha_settings

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
        phases.mark("parent_run")
        meta = {"name": name, "experiment": plan.experiment.name, "tracking_uri": uri, "experiment_id": exp_id,
                "parent_run_id": parent, "resources": resources, "storage_path": storage, "git_sha": sha,
                "swept_keys": plan.swept_keys, "n_trials": plan.n_trials(),
                "options": {k: v for k, v in dataclasses.asdict(opts).items()},
                "metric": list(_progress_metric(plan)), "driver_log": started["driver_log"]}
        folder = None if "://" in storage else Path(storage) / name
        try:
            write_meta(folder, meta)
            if not opts.quiet:
                print(f"sweep {name}: {plan.n_trials()} trials of {plan.experiment.name} "
                      f"({resources['cpu']:g} CPU, {resources['gpu']:g} GPU each); MLflow {uri}, parent run {parent}; "
                      f"{RAY_HOW.get(started['ray'], 'Ray')}", flush=True)
            tuner = _make_tuner(plan, opts, meta, resources)
            record_tuner_hash(client, folder, meta)
            return _fit_and_close(tuner, client, meta, opts, guard, folder)
        except interrupts.Interrupted as exc:
            return _interrupted(client, meta, exc.signum, folder)
        except KeyboardInterrupt:
            return _interrupted(client, meta, guard.signum or 2, folder)


def claim_sweep(storage: str, name: str | None, experiment: str) -> tuple[str, SweepLock | None]:
    """Create the sweep folder atomically and lock it; a default name gets a random suffix, so two
    `sweep run`s started in the same second never share a folder.

    Returns:
        (sweep name, the held lock; None for cloud storage, where no folder can be locked).
    """
    import secrets

    explicit = name is not None
    for _ in range(20):
        candidate = name if explicit else f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        if "://" in storage:
            return candidate, None
        try:
            (Path(storage) / candidate).mkdir()
        except FileExistsError:
            if explicit:
                raise ConfigError(f"a sweep named {candidate!r} already exists in {storage}; pick another --name "
                                  f"or `sweep resume {candidate}`") from None
            continue
        return candidate, SweepLock(Path(storage) / candidate, candidate).acquire()
    raise ConfigError(f"could not create a fresh sweep folder in {storage}")


def release_claim(storage: str, name: str, lock: SweepLock | None, remove: bool = False) -> None:
    """Drop the lock; with `remove`, also the folder if nothing but the lock (and the driver.log of
    the failed start) is in it."""
    if lock is None:
        return
    lock.release()
    folder = Path(storage) / name
    if remove and {p.name for p in folder.iterdir()} <= {LOCK_FILE, console.DRIVER_LOG}:
        (folder / LOCK_FILE).unlink(missing_ok=True)
        (folder / console.DRIVER_LOG).unlink(missing_ok=True)
        folder.rmdir()


def write_meta(folder: Path | None, meta: dict) -> None:
    """sweep.json, written whole to a temporary file and renamed (never half-written)."""
    if folder is None:
        return
    tmp = folder / f".{SWEEP_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, folder / SWEEP_FILE)


def record_tuner_hash(client, folder: Path | None, meta: dict) -> None:
    """The SHA-256 of tuner.pkl in sweep.json and as a parent-run tag (checked by `sweep resume`)."""
    digest = None if folder is None else tune_state.tuner_hash(folder)
    if digest is None:
        return
    meta[tune_state.TAG_TUNER_SHA] = digest
    meta["tune_state_at_exit"] = None  # fit running: the state files change until the driver exits
    write_meta(folder, meta)
    client.set_tag(meta["parent_run_id"], tune_state.TAG_TUNER_SHA, digest)


def record_exit_state(folder: Path | None, meta: dict) -> None:
    """Hashes of the Tune state files as the driver leaves them (verified by the next resume)."""
    if folder is None:
        return
    try:
        meta["tune_state_at_exit"] = tune_state.state_hashes(folder)
        write_meta(folder, meta)
    except OSError:
        pass  # a missing record only weakens the next resume's check to permissions + tuner.pkl


def _interrupted(client, meta: dict, signum: int, folder: Path | None) -> int:
    """Mark the parent and every RUNNING child KILLED; 128 + signal number."""
    import signal

    # A third signal while MLflow is being updated must not leave runs RUNNING.
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in interrupts.SIGNALS}
    try:
        n = interrupts.mark_killed(client, meta["experiment_id"], meta["parent_run_id"], signum)
        record_exit_state(folder, meta)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"sweep {meta['name']}: interrupted by {signal.Signals(signum).name}; parent and {n} running trial "
          f"run(s) marked KILLED. Continue with `sweep resume {meta['name']}`", file=sys.stderr, flush=True)
    return 128 + signum


def _adaptive_tags(plan: Plan, opts: RunOptions) -> dict[str, str]:
    from cluster.adaptive import settings_from

    settings = settings_from(opts, plan)
    return settings.parent_tags() if settings else {}


RAY_HOW = {"head": "Ray: the head of `sweep up`", "local": "Ray started for this sweep (`sweep up` keeps one)",
           "cluster": "Ray cluster", "running": "Ray already running in this process"}


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

    tracking.create_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = tracking.get_or_create_experiment(client, experiment, uri)
    sha = tracking.git_sha()
    phases.mark("mlflow_ready")
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
    if phases.enabled():
        from cluster.callbacks import PhaseMarker

        callbacks.append(PhaseMarker())
    if not opts.quiet:
        metric, mode = meta.get("metric") or ("val_acc", "max")
        callbacks.append(ProgressDisplay(int(meta.get("n_trials", 0)), meta["swept_keys"], metric=metric, mode=mode))
    return tune.RunConfig(
        name=meta["name"], storage_path=meta["storage_path"],
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        # Every checkpoint is kept (about 5 per trial: one per 4th report, plus the last epoch).
        # With num_to_keep=K, Tune deletes a trial's oldest checkpoint in the same step in which it
        # asks for a forced experiment snapshot; a driver killed in between leaves a snapshot that
        # names a deleted checkpoint, and `sweep resume` then fails that trial ("does not exist on
        # storage anymore"; seen in tests/test_faults.py's SIGKILL test). Keeping all costs < 2x
        # the disk of K=3 at the default intervals.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        callbacks=callbacks, verbose=0)


def _make_tuner(plan: Plan, opts: RunOptions, meta: dict, resources: dict):
    from ray import tune

    from cluster.search import make_search, tune_space

    if opts.until_decided:
        from cluster.adaptive import make_tuner

        return make_tuner(plan, opts, meta, resources, _trainable(meta, resources), _run_config(opts, meta))
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


def _fit_and_close(tuner, client, meta: dict, opts: RunOptions, guard: interrupts.SignalGuard,
                   folder: Path | None) -> int:
    phases.mark("fit_start")
    with guard.fitting():
        results = tuner.fit()
    phases.mark("fit_end")
    if guard.signum is not None:  # Tune stopped gracefully on our SIGINT/SIGTERM
        return _interrupted(client, meta, guard.signum, folder)
    record_exit_state(folder, meta)
    errors = sum(1 for r in results if r.error is not None)
    client.set_tag(meta["parent_run_id"], S.TAG_N_ERRORS, str(errors))
    client.set_terminated(meta["parent_run_id"], status="FINISHED" if errors < len(results) else "FAILED")
    if not opts.quiet:
        print_results(meta)
    return 1 if errors else 0


def print_results(meta: dict) -> None:
    from analysis.results import format_results, results_table

    table = results_table(meta["tracking_uri"], sweep=meta["name"])
    print(f"\nResults of {meta['name']} (mean and 95% CI over seeds):")
    print(format_results(table, "table"), flush=True)
    phases.mark("results_table")
    print(f"\nBrowse every trial:  {tracking.ui_hint(meta['tracking_uri'], meta.get('experiment_id'))}")
    if meta.get("driver_log") and not meta.get("options", {}).get("verbose"):
        print(f"Ray and MLflow logs: {meta['driver_log']}")


def load_meta(name: str, storage_path: str | None) -> dict:
    return _find_sweep(name, storage_path)[0]


def _find_sweep(name: str, storage_path: str | None) -> tuple[dict, Path]:
    """(sweep.json, the folder it was found in): --storage-path wins over the recorded path."""
    if not NAME_RE.match(name):
        raise ConfigError(f"sweep name {name!r} must be letters, digits, '_', '.', '-' (max 128 chars)")
    storage = resolve_storage(storage_path)
    if "://" in storage:
        raise ConfigError(f"`sweep resume` reads sweep.json from a local or shared folder; {storage} is a URI. "
                          "Resume from a machine where the storage is mounted")
    path = Path(storage) / name / SWEEP_FILE
    if not path.exists():
        known = sorted(p.parent.name for p in Path(storage).glob(f"*/{SWEEP_FILE}"))
        raise ConfigError(f"no sweep named {name!r} in {storage}; known sweeps: {', '.join(known) or 'none'}")
    try:
        meta = json.loads(path.read_text())
        for key in ("name", "tracking_uri", "parent_run_id", "experiment_id", "options", "resources", "storage_path"):
            meta[key]
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"{path} is damaged ({type(exc).__name__}: {exc}); the sweep cannot be resumed") from None
    return meta, path.parent


def resume_sweep(name: str, storage_path: str | None = None, address: str | None = None,
                 verbose: bool = False) -> int:
    """Restore an interrupted sweep with Tuner.restore: unfinished and errored trials continue from
    their checkpoints into the same MLflow runs; finished trials are not rerun.

    Refused (exit 2, before Ray starts) while another driver holds the sweep's lock, or when the
    Tune state was changed by someone else (cluster.tune_state). The parent run becomes RUNNING
    only once Tune has restored; if the resume fails it gets its previous status back.
    """
    from mlflow.tracking import MlflowClient

    meta, folder = _find_sweep(name, storage_path)
    if str(folder.parent) != str(meta["storage_path"]):
        print(f"sweep {name}: using the sweep folder {folder} (recorded: {meta['storage_path']}/{name})", flush=True)
        meta["storage_path"] = str(folder.parent)
    opts = RunOptions(**{k: v for k, v in meta["options"].items() if k in {f.name for f in dataclasses.fields(RunOptions)}})
    opts.verbose = verbose
    uri = tracking.check_tracking_uri(meta["tracking_uri"])
    with SweepLock(folder, name):
        client = MlflowClient(tracking_uri=uri)
        try:
            parent = client.get_run(meta["parent_run_id"])
        except Exception as exc:
            raise ConfigError(f"the parent run {meta['parent_run_id']} of sweep {name} is not in {uri} "
                              f"({type(exc).__name__}); was --tracking-uri changed?") from None
        tune_state.verify(folder, meta, parent.data.tags)
        return _restore_and_fit(client, meta, opts, folder, address, parent.info.status)


def _restore_and_fit(client, meta: dict, opts: RunOptions, folder: Path, address: str | None, status: str) -> int:
    from ray import tune

    name = meta["name"]
    log_path = console.driver_log_path(meta["storage_path"], name)
    quiet_libraries(log_path, opts.verbose)
    ray_setup.init_ray(address or opts.address, ship_code=opts.ship_code)
    if not opts.verbose:
        console.route_worker_output(log_path)
    if not tune.Tuner.can_restore(str(folder)):
        raise ConfigError(f"sweep {name!r} has no Tune state in {folder} to restore")
    with interrupts.SignalGuard() as guard:
        try:
            tuner = tune.Tuner.restore(str(folder), trainable=_trainable(meta, meta["resources"]),
                                       resume_unfinished=True, resume_errored=True, restart_errored=False)
            record_tuner_hash(client, folder, meta)  # restore rewrites tuner.pkl
            client.update_run(meta["parent_run_id"], status="RUNNING")
            print(f"resuming sweep {name} from {folder}; MLflow parent run {meta['parent_run_id']}", flush=True)
            return _fit_and_close(tuner, client, meta, opts, guard, folder)
        except interrupts.Interrupted as exc:
            return _interrupted(client, meta, exc.signum, folder)
        except KeyboardInterrupt:
            return _interrupted(client, meta, guard.signum or 2, folder)
        except BaseException:
            _restore_status(client, meta["parent_run_id"], status)
            raise


def _restore_status(client, run_id: str, status: str) -> None:
    """Give a parent run the status it had before a resume that failed."""
    try:
        if status == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:
            client.set_terminated(run_id, status=status)
    except Exception:
        pass  # the resume's own error is the one to report
