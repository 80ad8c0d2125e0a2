"""From an Experiment plus command-line overrides to a checked plan of trials and a Tune param space.

Everything here runs before Ray or MLflow is touched: every grid cell (and both ends of every
sampled range) is resolved with `trainables.resolve.resolve_config`, so nonsense input fails in
milliseconds with a ConfigError.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from search_spaces.domains import SAMPLED, Choice, LogUniform, RandInt, Uniform
from search_spaces.experiment import Experiment
from core.errors import ConfigError
from trainables.pairings import get_pairing
from trainables.resolve import check_keys, resolve_config


@dataclass
class Plan:
    """What a sweep will run.

    Attributes:
        experiment: the declaration.
        fixed: settings shared by every trial (experiment fixed + smoke + --set).
        axes: grid axes (lists) and sampled axes (domains), pairing and seed included.
        per_pairing: pairing -> its own fixed values / sampled domains.
        num_samples: Tune num_samples (repeats of the grid; samples of a search).
    """

    experiment: Experiment
    fixed: dict[str, Any]
    axes: dict[str, Any]
    per_pairing: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 1
    smoke: bool = False

    @property
    def seeds(self) -> list[int]:
        return list(self.axes["seed"])

    @property
    def grid_axes(self) -> dict[str, list]:
        return {k: v for k, v in self.axes.items() if isinstance(v, list)}

    @property
    def sampled(self) -> bool:
        return any(isinstance(v, SAMPLED) for v in self.axes.values()) or any(
            isinstance(v, SAMPLED) for p in self.per_pairing.values() for v in p.values())

    @property
    def swept_keys(self) -> list[str]:
        keys = [k for k, v in self.axes.items() if k != "seed" and (not isinstance(v, list) or len(v) > 1)]
        keys += [k for p in self.per_pairing.values() for k, v in p.items() if isinstance(v, SAMPLED)]
        return list(dict.fromkeys(keys))

    def n_trials(self) -> int:
        n = 1
        for v in self.grid_axes.values():
            n *= len(v)
        return n * self.num_samples

    def cells(self) -> list[dict[str, Any]]:
        """Every grid combination as a flat trial config (sampled axes at a representative value)."""
        grid = self.grid_axes
        out = []
        for combo in itertools.product(*grid.values()):
            cfg = {**self.fixed, **dict(zip(grid, combo))}
            for k, v in self.axes.items():
                if isinstance(v, SAMPLED):
                    cfg[k] = _representative(v)
            for k, v in self.per_pairing.get(cfg["pairing"], {}).items():
                cfg[k] = _representative(v) if isinstance(v, SAMPLED) else v
            out.append(cfg)
        return out


def _representative(domain) -> Any:
    if isinstance(domain, Choice):
        return domain.values[0]
    if isinstance(domain, RandInt):
        return domain.low
    return domain.low


def _extremes(domain) -> list[Any]:
    if isinstance(domain, Choice):
        return list(domain.values)
    if isinstance(domain, RandInt):
        return [domain.low, domain.high]
    return [domain.low, domain.high]


# Keys holding local paths: made absolute in the driver, because Tune may run a trial in its own
# working directory (a relative ./data would then point somewhere else).
PATH_KEYS = ("data_root", "weights", "feature_cache_dir")


def absolute_paths(fixed: dict[str, Any], datasets: set[str]) -> None:
    """Make path settings absolute; pin the default data root for datasets that read files."""
    import os

    from trainables.data import get_dataset

    if "data_root" not in fixed and any("data_root" in get_dataset(d).config.keys() for d in datasets):
        fixed["data_root"] = os.environ.get("SWEEP_DATA_ROOT", "data")
    for key in PATH_KEYS:
        value = fixed.get(key)
        if isinstance(value, str) and value and "://" not in value:
            fixed[key] = os.path.abspath(os.path.expanduser(value))


def make_plan(exp: Experiment, sets: dict[str, Any] | None = None, grids: dict[str, list] | None = None,
              seeds: int | None = None, smoke: bool = False, num_samples: int = 1,
              extra_fixed: dict[str, Any] | None = None) -> Plan:
    """Combine an experiment with overrides; validate every cell. Raises ConfigError."""
    if exp.analytic:
        raise ConfigError(f"experiment {exp.name!r} is analytic (no trials); `sweep run` computes it directly")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    sets, grids = dict(sets or {}), dict(grids or {})
    for bad in ("pairing", "seed"):
        if bad in sets or bad in grids:
            raise ConfigError(f"{bad!r} is set by the experiment and --seeds; choose another experiment or --seeds N")
    check_keys({**sets, **grids})
    fixed = {**exp.fixed}
    axes: dict[str, Any] = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in exp.axes.items()}
    per_pairing = {p: dict(v) for p, v in exp.per_pairing.items()}
    if smoke:
        for k, v in exp.smoke.items():
            if k in axes:
                axes[k] = list(v) if isinstance(v, (list, tuple)) else [v]
            else:
                fixed[k] = v
    fixed.update(extra_fixed or {})
    for k, v in sets.items():
        axes.pop(k, None)
        for p in per_pairing.values():
            p.pop(k, None)
        fixed[k] = v
    for k, v in grids.items():
        fixed.pop(k, None)
        for p in per_pairing.values():
            p.pop(k, None)
        axes[k] = list(v)
    n_seeds = seeds if seeds is not None else (min(exp.seeds, 2) if smoke else exp.seeds)
    absolute_paths(fixed, {get_pairing(p).dataset for p in exp.pairings})
    plan = Plan(exp, fixed, {"pairing": list(exp.pairings), **axes, "seed": exp.seed_values(n_seeds)},
                per_pairing, num_samples, smoke)
    validate(plan)
    return plan


def validate(plan: Plan) -> None:
    """Resolve every cell, plus every extreme of every sampled domain; first problem raises.

    Dataset configs with a `preflight()` (files on disk, weights) check it once per distinct config,
    so missing or corrupt data fails here, before Ray or MLflow start.
    """
    checked: set[str] = set()
    for cfg in plan.cells():
        r = resolve_config(cfg)
        key = repr(r.data)
        if key not in checked and hasattr(r.data, "preflight"):
            checked.add(key)
            r.data.preflight()
        for k, v in plan.axes.items():
            if isinstance(v, SAMPLED):
                for x in _extremes(v):
                    resolve_config({**cfg, k: x})
        for k, v in plan.per_pairing.get(cfg["pairing"], {}).items():
            if isinstance(v, SAMPLED):
                for x in _extremes(v):
                    resolve_config({**cfg, k: x})


def to_tune_space(plan: Plan) -> dict[str, Any]:
    """The Tune param_space: lists -> grid_search, domains -> Tune sampling, per-pairing via sample_from."""
    from ray import tune

    def domain(v):
        if isinstance(v, LogUniform):
            return tune.loguniform(v.low, v.high)
        if isinstance(v, Uniform):
            return tune.uniform(v.low, v.high)
        if isinstance(v, RandInt):
            return tune.randint(v.low, v.high + 1)  # Tune's upper bound is exclusive
        if isinstance(v, Choice):
            return tune.choice(list(v.values))
        raise TypeError(v)

    space: dict[str, Any] = dict(plan.fixed)
    for k, v in plan.axes.items():
        if isinstance(v, list):
            space[k] = tune.grid_search(v) if len(v) > 1 else v[0]
        else:
            space[k] = domain(v)
    per_keys = {k for p in plan.per_pairing.values() for k in p}
    for key in sorted(per_keys):
        table = {p: vals[key] for p, vals in plan.per_pairing.items() if key in vals}
        space[key] = tune.sample_from(_PerPairing(key, table))
    return space


class _PerPairing:
    """Picklable sample_from function: the value (or a fresh sample) for this trial's pairing."""

    def __init__(self, key: str, table: dict[str, Any]):
        self.key, self.table = key, table

    def __call__(self, config) -> Any:
        import random

        # Tune passes the resolved config dict (older Tune: a spec with .config, now deprecated).
        cfg = config.config if hasattr(config, "config") else config
        v = self.table.get(cfg["pairing"])
        if isinstance(v, LogUniform):
            import math
            return math.exp(random.uniform(math.log(v.low), math.log(v.high)))
        if isinstance(v, Uniform):
            return random.uniform(v.low, v.high)
        if isinstance(v, RandInt):
            return random.randint(v.low, v.high)
        if isinstance(v, Choice):
            return random.choice(list(v.values))
        return v
