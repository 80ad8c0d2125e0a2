"""`sweep resume`: Tuner.restore of an interrupted sweep, under its lock, after its state is verified."""
from __future__ import annotations

import dataclasses

from cluster.flow import user_code
from cluster.flow.finish import fit_and_close, interrupted
from cluster.flow.options import RunOptions
from cluster.folder.record import SweepRecord, find_sweep
from cluster.infra import console, interrupts, ray_setup, tracking
from cluster.tuner.assemble import trainable
from core.errors import ConfigError


def resume_sweep(name: str, storage_path: str | None = None, address: str | None = None,
                 verbose: bool = False) -> int:
    """Restore an interrupted sweep with Tuner.restore: unfinished and errored trials continue from
    their checkpoints into the same MLflow runs; finished trials are not rerun.

    Refused (exit 2, before Ray starts) while another driver holds the sweep's lock, or when the
    Tune state was changed by someone else (cluster.folder.tune_state). The parent run becomes RUNNING
    only once Tune has restored; if the resume fails it gets its previous status back.
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
        try:
            tuner = tune.Tuner.restore(str(folder), trainable=trainable(record),
                                       resume_unfinished=True, resume_errored=True, restart_errored=False)
            record.record_tuner_hash(client)  # restore rewrites tuner.pkl
            client.update_run(record.parent_run_id, status="RUNNING")
            print(f"resuming sweep {name} from {folder}; MLflow parent run {record.parent_run_id}", flush=True)
            return fit_and_close(tuner, client, record, opts, guard)
        except interrupts.Interrupted as exc:
            return interrupted(client, record, exc.signum)
        except KeyboardInterrupt:
            return interrupted(client, record, guard.signum or 2)
        except BaseException:
            _restore_status(client, record.parent_run_id, status)
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
