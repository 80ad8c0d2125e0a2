"""What an adaptive sweep (`--until-decided`, cluster.flow.adaptive) reads before it starts: its settings
checked against the plan, the plan's grid cells, and within a study the other experiments' sweeps its
claims compare with (their runs, and the cells that get seeds while such a claim is open)."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads when runs are read, not while a plan is checked
    import pandas as pd

    from cluster.flow.adaptive import AdaptiveSettings

from core.errors import ConfigError

log = logging.getLogger(__name__)
# A trial config key naming the other experiment (of the same study) whose sweep records the trial:
# cluster.tuner.adaptive_searcher.train_sides pops it and logs the trial under that sweep's parent run.
OTHER_KEY = "_study_side"


@dataclass(frozen=True)
class OtherCell:
    """A cell of another experiment's sweep in the same study, the other side of a cross-experiment claim.

    Attributes:
        experiment: that experiment's name (a hypothesis's `other_experiment`).
        config: its flat trial config without the seed (its plan's cell, as its sweep ran it).
        key: the values of its sweep's swept keys: what picks this cell's runs out of its sweep.
    """

    experiment: str
    config: dict[str, Any]
    key: dict[str, Any]


def _same(a, b) -> bool:
    a = tuple(a) if isinstance(a, list) else a
    b = tuple(b) if isinstance(b, list) else b
    return a == b


def settings_from(opts, plan) -> AdaptiveSettings | None:
    """The adaptive settings of a run, checked against its plan; None without --until-decided."""
    from cluster.tuner.search import scheduler_of

    if not opts.until_decided:
        if opts.max_seeds is not None or opts.target_halfwidth is not None:
            raise ConfigError("--max-seeds and --target-halfwidth apply to --until-decided only")
        return None
    if plan.sampled or plan.num_samples != 1 or opts.search != "random":
        raise ConfigError("--until-decided adds seeds to grid cells; it cannot be combined with sampled axes, "
                          "--num-samples or --search")
    if opts.pack > 1:
        raise ConfigError("--until-decided cannot be combined with --pack (waves are decided per trial)")
    if scheduler_of(opts, plan) != "none":
        raise ConfigError("--until-decided needs every replicate to finish; it cannot be combined with a scheduler")
    from cluster.flow.adaptive import DEFAULT_MAX_SEEDS, AdaptiveSettings

    max_seeds = DEFAULT_MAX_SEEDS if opts.max_seeds is None else opts.max_seeds  # 0 is a value, not "unset"
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int):
        raise ConfigError(f"--max-seeds must be a whole number of seeds, got {max_seeds!r}")
    settings = AdaptiveSettings(first=len(plan.seeds), max_seeds=max_seeds, target_halfwidth=opts.target_halfwidth)
    from cluster.planning import validate

    # The most trials the waves can add up to, checked like any sweep's size (--yes above the limit).
    cells = max(plan.n_trials() // max(len(plan.seeds), 1), 1)
    validate.check_sweep_size(cells * settings.max_seeds, opts.allow_large)
    if not plan.experiment.hypotheses and settings.target_halfwidth is None:
        raise ConfigError(f"experiment {plan.experiment.name!r} declares no hypotheses: --until-decided has "
                          "nothing to decide; add --target-halfwidth H to add seeds until intervals are narrow")
    return settings


def other_runs(plan, tracking_uri: str, sweep: str | None = None) -> dict[str, pd.DataFrame]:
    """Runs of the experiments named by `other_experiment`, where stored.

    Within a study (the sweep is named "<study>.<experiment>") the other side is the study's own
    sweep "<study>.<other>", never another sweep of that experiment; outside a study, the newest.
    """
    from analysis.load import load_sweep

    study = study_of(plan, sweep)
    out = {}
    for name in sorted({h.other_experiment for h in plan.experiment.hypotheses if h.other_experiment}):
        try:
            # final values only: the per-epoch histories are most of a load's time and no verdict reads them
            out[name] = (load_sweep(tracking_uri, sweep=f"{study}.{name}", histories=False) if study
                         else load_sweep(tracking_uri, experiment=name, histories=False)).runs
        except ConfigError:
            where = f"sweep {study}.{name}" if study else f"sweep of {name}"
            log.warning("no %s in the store: its comparisons cannot drive --until-decided", where)
    return out


def study_of(plan, sweep: str | None) -> str | None:
    """The study a sweep belongs to ("<study>.<experiment>"), else None."""
    suffix = "." + plan.experiment.name
    return sweep[:-len(suffix)] if sweep and sweep.endswith(suffix) and len(sweep) > len(suffix) else None


def other_sides(plan, sweep: str | None, storage_path: str | None, others: dict[str, pd.DataFrame]):
    """The cells of the study's own sweeps of other experiments that this sweep's cross-experiment
    claims compare with, and each such sweep's TrackingInfo (where its trials are recorded).

    Only within a study, and only for sweeps whose runs were loaded (`others`): a cell is that
    sweep's plan cell (rebuilt from its recorded options) whose pairing is a claim's `worse`.
    Returns ([], {}) outside a study.
    """
    study = study_of(plan, sweep)
    if study is None:
        return [], {}
    from cluster.flow.options import RunOptions
    from cluster.flow.sweep import build_plan
    from cluster.folder.record import find_sweep

    known = {f.name for f in dataclasses.fields(RunOptions)}
    cells, tracking = [], {}
    for name in sorted({h.other_experiment for h in plan.experiment.hypotheses if h.other_experiment}):
        if name not in others:
            continue
        try:
            record = find_sweep(f"{study}.{name}", storage_path)
            opts = RunOptions(**{k: v for k, v in record.options.items() if k in known})
            other_plan = build_plan(opts)
        except ConfigError as exc:
            log.warning("the other side of %s's claims cannot get seeds (%s)", plan.experiment.name, exc)
            continue
        worse = {(h.worse, tuple(sorted((getattr(h, "worse_fixed", None) or {}).items())))
                 for h in plan.experiment.hypotheses if h.other_experiment == name}
        swept = [k for k in other_plan.swept_keys if k != "seed"]
        for cfg in grid_cells(other_plan):
            if any(cfg.get("pairing") == w and all(_same(cfg.get(k), v) for k, v in fixed) for w, fixed in worse):
                key = {k: (tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k]) for k in swept if k in cfg}
                cells.append(OtherCell(name, cfg, {"pairing": cfg["pairing"], **key}))
        tracking[name] = record.tracking_info()
    return cells, tracking


def trial_size(cfg: dict[str, Any]) -> float:
    """data_per_class x epochs of a cell's config: the work of a trial before any was timed."""
    out = 1.0
    for key in ("data_per_class", "epochs"):
        value = cfg.get(key)
        out *= float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 1.0
    return out


def grid_cells(plan) -> list[dict[str, Any]]:
    """One flat config per grid cell, without the seed (the searcher adds the seeds)."""
    cells: dict[str, dict[str, Any]] = {}
    for cfg in plan.cells():
        cell = {k: v for k, v in cfg.items() if k != "seed"}
        cells.setdefault(repr(sorted(cell.items(), key=lambda kv: kv[0])), cell)
    return list(cells.values())


