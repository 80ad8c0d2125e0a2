"""Schedulers and search algorithms for `sweep run` (Tune's own; optional packages only if installed)."""
from __future__ import annotations

from trainables.errors import ConfigError

SCHEDULERS = ("asha", "none")
SEARCHERS = ("random", "hyperopt", "optuna")


def make_search(plan, opts):
    """Return (scheduler, search_alg, metric, mode) for the Tuner; all None for a plain grid."""
    scheduler_name = opts.scheduler or "none"
    if scheduler_name not in SCHEDULERS:
        raise ConfigError(f"--scheduler {scheduler_name!r} not allowed; use one of {SCHEDULERS}")
    if opts.search not in SEARCHERS:
        raise ConfigError(f"--search {opts.search!r} not allowed; use one of {SEARCHERS}")
    search = plan.experiment.search
    metric = search.metric if search else "val_acc"
    mode = search.mode if search else "max"
    scheduler = None
    if scheduler_name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        epochs = int(plan.fixed.get("epochs", 0) or max(plan.axes.get("epochs", [1]) if isinstance(
            plan.axes.get("epochs"), list) else [1]))
        grace = search.grace_period if search else 1
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max(epochs, grace), grace_period=grace,
                                  reduction_factor=search.reduction_factor if search else 3)
    search_alg = None
    if opts.search != "random":
        raise ConfigError(f"--search {opts.search!r} is not wired yet; use --search random")
    if scheduler is None and search_alg is None:
        return None, None, None, None
    return scheduler, search_alg, metric, mode
