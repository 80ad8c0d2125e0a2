"""The Tuner of a sweep: trainable with its resources, run config with callbacks, search and space."""
from __future__ import annotations

from cluster.flow.options import RunOptions
from cluster.folder.record import SweepRecord
from cluster.planning.plan import Plan
from core import phases


def trainable(record: SweepRecord):
    """The trial function (a pack's with --pack) with the sweep's tracking info and Ray resources."""
    from ray import tune

    from trainables.packed_trainable import train_pack
    from trainables.trainable import train

    if record.options.get("pack", 1) > 1:
        train = train_pack
    if record.options.get("until_decided"):  # a run and its resume alike: the other side's trials log there
        from cluster.tuner.adaptive_searcher import other_tracking, sides_trainable

        return sides_trainable(record, other_tracking(record))
    from cluster.flow.user_code import worker_refs

    modules = worker_refs(record)  # the trial loads them (hash-checked) before it builds anything
    return tune.with_resources(tune.with_parameters(train, tracking=record.tracking_info(), modules=modules),
                               record.resources)


def run_config(opts: RunOptions, record: SweepRecord):
    from ray import tune

    from cluster.tuner.callbacks import MlflowTrialFinalizer, NoTensorBoardFiles, ProgressDisplay, TuneStateKeeper

    callbacks = [MlflowTrialFinalizer(record.tracking_uri, record.experiment_id, record.parent_run_id),
                 NoTensorBoardFiles()]  # Tune's TensorBoard logger off (an events file per result, in the driver's loop)
    if record.folder is not None:  # a last good copy of Tune's state, for `sweep resume` after a full disk
        callbacks.append(TuneStateKeeper(record.tracking_uri, record.parent_run_id))
    if phases.enabled():
        from cluster.tuner.callbacks import PhaseMarker

        callbacks.append(PhaseMarker())
    progress = opts.progress
    if progress == "notebook" or (not opts.quiet and progress != "none"):
        metric, mode = record.metric
        stream = None
        if progress == "notebook":  # one line redrawn in the cell's output (cluster.infra.notebook)
            from cluster.infra.notebook import DisplayStream

            stream = DisplayStream()
        callbacks.append(ProgressDisplay(record.n_trials, record.swept_keys, metric=metric, mode=mode,
                                         stream=stream, tty=True if stream is not None else None))
    return tune.RunConfig(
        name=record.name, storage_path=record.storage_path,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        # Every checkpoint is kept (about 5 per trial: one per 4th report, plus the last epoch).
        # With num_to_keep=K, Tune deletes a trial's oldest checkpoint in the same step in which it
        # asks for a forced experiment snapshot; a driver killed in between leaves a snapshot that
        # names a deleted checkpoint, and `sweep resume` then fails that trial ("does not exist on
        # storage anymore"; seen in tests/test_faults.py's SIGKILL test). Keeping all costs < 2x
        # the disk of K=3 at the default intervals.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        callbacks=callbacks, verbose=0)


def make_tuner(plan: Plan, opts: RunOptions, record: SweepRecord):
    """The Tuner of a sweep: adaptive (--until-decided), or the plan's space with its search, scheduler and packs."""
    from ray import tune

    from cluster.tuner.search import make_search, scheduler_of, tune_space

    if opts.until_decided:
        from cluster.tuner.adaptive_searcher import make_tuner as adaptive_tuner

        return adaptive_tuner(plan, opts, record, trainable(record), run_config(opts, record))
    scheduler, search_alg, metric, mode = make_search(plan, opts)
    tune_config = tune.TuneConfig(num_samples=plan.num_samples, max_concurrent_trials=opts.max_concurrent,
                                  reuse_actors=True, scheduler=scheduler, search_alg=search_alg,
                                  metric=metric, mode=mode)
    space = tune_space(plan, opts)
    if opts.pack > 1:
        from cluster.tuner.packing import packed_space

        space, packs = packed_space(plan, opts.pack, record.resources["gpu"] > 0, scheduler_of(opts, plan))
        if not opts.quiet:
            print(packs.summary(opts.pack), flush=True)
    elif scheduler is None and search_alg is None:  # a plain grid: its largest cells start first
        from cluster.tuner.order import ordered_space

        space = ordered_space(plan, space)
    return tune.Tuner(trainable(record), param_space=space, tune_config=tune_config,
                      run_config=run_config(opts, record))
