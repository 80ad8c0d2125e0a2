"""The typed sweep: `plan_sweep` turns RunOptions into one frozen `Sweep` before Ray or MLflow start.

Every setting the driver derives is fixed here, once, before any cell resolves: the scheduler
(the command line's, else the experiment's Search), the number of samples, the threads each trial
uses (its CPUs: `threads` is resolved into every cell's spec like any other key), ASHA's budget,
the adaptive settings and the metric the display ranks by. `run`, `confirm` and `study` run a
Sweep; nothing after planning writes into the plan.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cluster.flow.adaptive import AdaptiveSettings, settings_from
from cluster.flow.options import RunOptions
from cluster.planning import validate
from cluster.planning.plan import Plan, make_plan
from cluster.tuner.packing import check_pack
from cluster.tuner.search import apply_samples, asha_settings, check_search, scheduler_of
from search_spaces import get_experiment
from search_spaces.experiment import Experiment, objective


@dataclass(frozen=True)
class Sweep:
    """A planned sweep.

    Attributes:
        options: the run's options, the scheduler resolved (`--scheduler`, else the experiment's).
        plan: the checked plan: every cell resolved into its TrialSpec.
        threads: torch threads per trial (= CPUs per trial), part of every cell's spec.
        search: "grid" (nothing sampled), else the searcher (random, hyperopt, optuna).
        asha: ASHA's max_t, grace period and reduction factor; None without ASHA.
        adaptive: --until-decided settings; None without.
        metric: (metric, mode) the progress display ranks trials by.
    """

    options: RunOptions
    plan: Plan
    threads: int
    search: str
    asha: dict[str, int] | None
    adaptive: AdaptiveSettings | None
    metric: tuple[str, str]

    @property
    def experiment(self) -> Experiment:
        return self.plan.experiment


def plan_sweep(opts: RunOptions, definition: Experiment | None = None) -> Sweep:
    """The checked, typed sweep of `opts`; `definition` replaces the registry lookup (e.g. `sweep confirm`).

    Raises:
        ConfigError: any problem of the options, the overrides, a cell, the memory estimate,
            packing, the search or --until-decided; all before Ray or MLflow start.
    """
    exp = apply_samples(definition or get_experiment(opts.experiment), opts.samples)
    if exp.search is not None and opts.scheduler is None:
        opts = dataclasses.replace(opts, scheduler=exp.search.scheduler)
    num_samples = opts.num_samples
    if num_samples is None:
        num_samples = (min(exp.search.num_samples, 4) if opts.smoke else exp.search.num_samples) if exp.search else 1
    threads = int(opts.cpus_per_trial or 1)  # the trial's CPUs (cluster.infra.ray_setup.trial_resources)
    extra = {"data_root": opts.data_root} if opts.data_root else {}
    extra["threads"] = threads
    validate.check_overrides(opts.sets.keys(), opts.grids, opts.samples, opts.data_root)
    plan = make_plan(exp, opts.sets, opts.grids, opts.seeds, opts.smoke, num_samples, extra_fixed=extra,
                     precheck=lambda p: validate.check_plan(p, opts))
    validate.check_memory(plan)
    check_pack(plan, opts.pack, scheduler_of(opts, plan), opts.search)  # --pack with ASHA/a searcher/samples: exit 2 here
    check_search(plan, opts)  # scheduler/searcher problems also fail before Ray or MLflow start
    adaptive = settings_from(opts, plan)  # --until-decided problems too
    metric = objective(exp.search)
    return Sweep(options=opts, plan=plan, threads=threads, search="grid" if not plan.sampled else opts.search,
                 asha=asha_settings(plan, opts), adaptive=adaptive, metric=metric)


def build_plan(opts: RunOptions, definition: Experiment | None = None) -> Plan:
    """The checked plan of `opts` (the plan of `plan_sweep`)."""
    return plan_sweep(opts, definition).plan
