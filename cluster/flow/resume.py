"""`sweep resume`: Tuner.restore of an interrupted sweep, under its lock, after its state is verified."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import sys
import types
from collections.abc import Iterator

from cluster.flow import user_code
from cluster.flow.finish import fit_and_close, interrupted, mark_failed
from cluster.flow.options import RunOptions
from cluster.folder import tune_copy
from cluster.folder.record import SweepRecord, find_sweep
from cluster.infra import console, interrupts, ray_setup, tracking
from cluster.tuner.assemble import trainable
from core.errors import ConfigError


def resume_sweep(name: str, storage_path: str | None = None, address: str | None = None,
                 verbose: bool = False) -> int:
    """Restore an interrupted sweep with Tuner.restore: unfinished and errored trials continue from
    their checkpoints into the same MLflow runs; finished trials are not rerun.

    Refused (exit 2, before Ray starts) while another driver holds the sweep's lock, or when the
    Tune state was changed by someone else (cluster.folder.tune_state). Tune state a full disk cut
    short is first replaced by the driver's last good copy (cluster.folder.tune_copy). The parent
    run becomes RUNNING only once Tune has restored; if the resume fails it gets its previous status back.
    """
    from mlflow.tracking import MlflowClient

    record = find_sweep(name, storage_path)
    known = {f.name for f in dataclasses.fields(RunOptions)}
    opts = RunOptions(**{**{k: v for k, v in record.options.items() if k in known}, "verbose": verbose})
    uri = tracking.check_tracking_uri(record.tracking_uri)
    with record.lock():
        client = MlflowClient(tracking_uri=uri)
        try:
            parent = client.get_run(record.parent_run_id)
        except Exception as exc:
            raise ConfigError(f"the parent run {record.parent_run_id} of sweep {name} is not in {uri} "
                              f"({type(exc).__name__}); was --tracking-uri changed?") from None
        record.verify(parent.data.tags)
        user_code.reload_recorded(record, parent.data.tags)  # a changed user module: refused here, before Ray
        repaired = tune_copy.repair(record.folder, parent.data.tags)  # a full disk cut Tune's state short
        if repaired is not None:
            if record.tune_state_at_exit is not None:
                record.record_exit_state()  # the folder as repaired is what the driver leaves, should Ray fail
            print(f"sweep {name}: {repaired}", flush=True)
        return _restore_and_fit(client, record, opts, address, parent.info.status)


def _restore_and_fit(client, record: SweepRecord, opts: RunOptions, address: str | None, status: str) -> int:
    from ray import tune

    name, folder = record.name, record.folder
    log_path = console.driver_log_path(record.storage_path, name)
    console.quiet_libraries(log_path, opts.verbose)
    refs = user_code.recorded_refs(record)
    ray_setup.init_ray(address or opts.address, ship_code=opts.ship_code, py_modules=user_code.ship_paths(refs))
    if not opts.verbose:
        console.route_worker_output(log_path)
    if not tune.Tuner.can_restore(str(folder)):
        raise ConfigError(f"sweep {name!r} has no Tune state in {folder} to restore")
    with interrupts.SignalGuard() as guard:
        running = False
        try:
            with tracking.trial_relay(record):
                with _modules_of_older_drivers():
                    tuner = tune.Tuner.restore(str(folder), trainable=trainable(record),
                                               resume_unfinished=True, resume_errored=True, restart_errored=False)
                record.record_tuner_hash(client)  # restore rewrites tuner.pkl
                client.update_run(record.parent_run_id, status="RUNNING")
                running = True
                print(f"resuming sweep {name} from {folder}; MLflow parent run {record.parent_run_id}", flush=True)
                return fit_and_close(tuner, client, record, opts, guard)
        except interrupts.Interrupted as exc:
            return interrupted(client, record, exc.signum)
        except KeyboardInterrupt:
            return interrupted(client, record, guard.signum or 2)
        except BaseException as exc:
            if running and isinstance(exc, Exception) and not isinstance(exc, ConfigError):  # a full disk, a store gone, a closed console
                mark_failed(client, record, exc)  # trials left RUNNING -> FAILED, manifest recorded
            _restore_status(client, record.parent_run_id, status)  # the parent as it was before the resume
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


# Where the driver's picklable classes (callbacks, scheduler, searcher, sample_from functions) lived
# before cluster/ was split by concern: a sweep started then has these module names in its
# tuner.pkl. While Tune unpickles that (verified) state, each old name points at the module that
# holds the class now; nothing is left at the old paths afterwards.
MOVED_MODULES = {
    "cluster.callbacks": ("cluster.tuner.callbacks",), "cluster.schedulers": ("cluster.tuner.schedulers",),
    "cluster.search": ("cluster.tuner.search",), "cluster.packing": ("cluster.tuner.packing",),
    "cluster.plan": ("cluster.planning.plan",),
    "cluster.adaptive": ("cluster.tuner.adaptive_searcher", "cluster.flow.adaptive"),
}


@contextlib.contextmanager
def _modules_of_older_drivers() -> Iterator[None]:
    """Old module names of MOVED_MODULES resolvable (for unpickling) inside the block only."""
    added = [old for old in MOVED_MODULES if old not in sys.modules]
    for old in added:
        view = types.ModuleType(old, f"the names of {', '.join(MOVED_MODULES[old])} (unpickling only)")
        for new in reversed(MOVED_MODULES[old]):
            view.__dict__.update({k: v for k, v in vars(importlib.import_module(new)).items()
                                  if not k.startswith("__")})
        sys.modules[old] = view
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)
