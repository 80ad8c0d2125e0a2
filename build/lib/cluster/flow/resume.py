"""`sweep resume`: Tuner.restore of an interrupted sweep, under its lock, after its state is verified."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from cluster.flow import user_code
from cluster.flow.finish import fit_and_close, interrupted
from cluster.flow.options import RunOptions
from cluster.folder import tune_state
from cluster.folder.locks import SweepLock
from cluster.folder.record import find_sweep, record_tuner_hash
from cluster.infra import console, interrupts, ray_setup, tracking
from cluster.tuner.assemble import trainable
from core.errors import ConfigError
from core.user_modules import ModuleRef


def resume_sweep(name: str, storage_path: str | None = None, address: str | None = None,
                 verbose: bool = False) -> int:
    """Restore an interrupted sweep with Tuner.restore: unfinished and errored trials continue from
    their checkpoints into the same MLflow runs; finished trials are not rerun.

    Refused (exit 2, before Ray starts) while another driver holds the sweep's lock, or when the
    Tune state was changed by someone else (cluster.folder.tune_state). The parent run becomes RUNNING
    only once Tune has restored; if the resume fails it gets its previous status back.
    """
    from mlflow.tracking import MlflowClient

    meta, folder = find_sweep(name, storage_path)
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
        user_code.reload_recorded(meta, parent.data.tags)  # a changed user module: refused here, before Ray
        return _restore_and_fit(client, meta, opts, folder, address, parent.info.status)

def _restore_and_fit(client, meta: dict, opts: RunOptions, folder: Path, address: str | None, status: str) -> int:
    from ray import tune

    name = meta["name"]
    log_path = console.driver_log_path(meta["storage_path"], name)
    console.quiet_libraries(log_path, opts.verbose)
    refs = [ModuleRef.from_dict(d) for d in meta.get(user_code.TAG_USER_MODULES) or ()]
    ray_setup.init_ray(address or opts.address, ship_code=opts.ship_code, py_modules=user_code.ship_paths(refs))
    if not opts.verbose:
        console.route_worker_output(log_path)
    if not tune.Tuner.can_restore(str(folder)):
        raise ConfigError(f"sweep {name!r} has no Tune state in {folder} to restore")
    with interrupts.SignalGuard() as guard:
        try:
            tuner = tune.Tuner.restore(str(folder), trainable=trainable(meta, meta["resources"]),
                                       resume_unfinished=True, resume_errored=True, restart_errored=False)
            record_tuner_hash(client, folder, meta)  # restore rewrites tuner.pkl
            client.update_run(meta["parent_run_id"], status="RUNNING")
            print(f"resuming sweep {name} from {folder}; MLflow parent run {meta['parent_run_id']}", flush=True)
            return fit_and_close(tuner, client, meta, opts, guard, folder)
        except interrupts.Interrupted as exc:
            return interrupted(client, meta, exc.signum, folder)
        except KeyboardInterrupt:
            return interrupted(client, meta, guard.signum or 2, folder)
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
