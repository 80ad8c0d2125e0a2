"""From an Experiment plus command-line overrides to a checked plan of trials and a Tune param space.

Everything here runs before Ray or MLflow is touched: every grid cell (and both ends of every
sampled range) is resolved once into a `trainables.spec.TrialSpec`, so nonsense input fails in
milliseconds with a ConfigError, and the driver's later checks (search, preflight, packing)
reuse those specs instead of resolving the cells again.

Keys are strict: every key the user sets (`--set`, `--grid`, `--sample`, an experiment's
fixed/axes/per_pairing/smoke) must be used by at least one pairing of the sweep. A key only some
pairings use is routed to those pairings: the others neither get it (so it is never logged as
applied) nor get more cells from it (a grid axis the MLP ignores does not repeat MLP trials).
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from search_spaces.domains import is_domain
from search_spaces.experiment import Experiment
from core.errors import ConfigError
from trainables.pairings import get_pairing
from trainables.spec import CELL_KEY, TrialSpec, check_keys, pairing_keys, resolve_config, unused_key_message


@dataclass
class Plan:
    """What a sweep will run.

    Attributes:
        experiment: the declaration.
        fixed: settings shared by every trial (experiment fixed + smoke + --set) and used by all.
        axes: grid axes (lists) and sampled axes (domains), pairing and seed included.
        per_pairing: pairing -> its own fixed values / sampled domains.
        num_samples: Tune num_samples (repeats of the grid; samples of a search).
        cell_vars: per cell, its values beyond `fixed` (filled by make_plan; see cells()).
        specs: the resolved spec of each cell, in the order of cell_vars.
        checked: specs of every cell and of each cell at both ends of each sampled domain.
        explicit: some grid axis is not used by every cell, so the Tune space enumerates the
            cells (by index) instead of crossing the axes.
    """

    experiment: Experiment
    fixed: dict[str, Any]
    axes: dict[str, Any]
    per_pairing: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 1
    smoke: bool = False
    cell_vars: list[dict[str, Any]] | None = None
    specs: list[TrialSpec] = field(default_factory=list)
    checked: list[TrialSpec] = field(default_factory=list)
    explicit: bool = False

    @property
    def seeds(self) -> list[int]:
        return list(self.axes["seed"])

    @property
    def grid_axes(self) -> dict[str, list]:
        return {k: v for k, v in self.axes.items() if isinstance(v, list)}

    @property
    def sampled(self) -> bool:
        return any(is_domain(v) for v in self.axes.values()) or any(
            is_domain(v) for p in self.per_pairing.values() for v in p.values())

    @property
    def swept_keys(self) -> list[str]:
        keys = [k for k, v in self.axes.items() if k != "seed" and (not isinstance(v, list) or len(v) > 1)]
        keys += [k for p in self.per_pairing.values() for k, v in p.items() if is_domain(v)]
        return list(dict.fromkeys(keys))

    def n_trials(self) -> int:
        if self.cell_vars is None:  # before routing: the full cross product (an upper bound)
            n = 1
            for v in self.grid_axes.values():
                n *= len(v)
            return n * self.num_samples
        return len(self.cell_vars) * self.num_samples

    def cells(self) -> list[dict[str, Any]]:
        """Every grid cell as a flat trial config (sampled axes at a representative value), each
        holding only keys its pairing uses, without duplicates."""
        if self.cell_vars is None:
            return self.product_cells()
        return [{**self.fixed, **v} for v in self.cell_vars]

    def product_cells(self) -> list[dict[str, Any]]:
        """The cross product of the axes, before keys are routed to the pairings that use them."""
        grid = self.grid_axes
        out = []
        for combo in itertools.product(*grid.values()):
            cfg = {**self.fixed, **dict(zip(grid, combo))}
            for k, v in self.axes.items():
                if is_domain(v):
                    cfg[k] = v.representative()
            for k, v in self.per_pairing.get(cfg["pairing"], {}).items():
                cfg[k] = v.representative() if is_domain(v) else v
            out.append(cfg)
        return out


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
              extra_fixed: dict[str, Any] | None = None, precheck: Callable[[Plan], None] | None = None) -> Plan:
    """Combine an experiment with overrides; route keys to the pairings that use them; resolve
    and validate every cell. `extra_fixed` (e.g. --data-root) applies where a pairing uses it
    and is no error elsewhere. `precheck(plan)` runs before the cells are routed and resolved
    (cheap whole-plan checks on the values as given: cluster.planning.validate). Raises ConfigError."""
    if exp.analytic:
        raise ConfigError(f"experiment {exp.name!r} is analytic (no trials); `sweep run` computes it directly")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    exp.check_plots()
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
    user_keys = set(fixed) | set(axes) | set(sets) | set(grids)
    check_keys({k: None for k in user_keys | {k for v in per_pairing.values() for k in v}})
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
    if precheck is not None:
        # The values as given (finite, in range) and the size of the cross product, before its
        # cells are enumerated and resolved; routing only ever removes cells.
        precheck(plan)
    route_keys(plan, user_keys - {"pairing", "seed"})
    validate(plan)
    return plan


def _sweep_name(plan: Plan, pairings: list[str] | None = None) -> str:
    names = pairings or plan.axes["pairing"]
    return f"pairing {names[0]}" if len(names) == 1 else f"any pairing of {plan.experiment.name} ({', '.join(names)})"


def route_keys(plan: Plan, user_keys: set[str]) -> None:
    """Give each key only to the cells whose pairing uses it; fill plan.cell_vars and plan.specs.

    Raises:
        ConfigError: a user key (or an experiment's per-pairing key) that no cell uses, naming it
            and the pairings that would accept it.
    """
    pairings = list(plan.axes["pairing"])
    # A sampled axis only some pairings use becomes a per-pairing domain of those pairings.
    for key, domain in [(k, v) for k, v in plan.axes.items() if is_domain(v)]:
        users = [p for p in pairings if key not in _probe(plan, p).unused]
        if users and len(users) < len(pairings):
            del plan.axes[key]
            for p in users:
                plan.per_pairing.setdefault(p, {})[key] = domain
    used: dict[str, set[str]] = {}
    why: dict[str, str | None] = {}
    seen: dict[str, int] = {}
    cell_vars: list[dict[str, Any]] = []
    specs: list[TrialSpec] = []
    for raw in plan.product_cells():
        spec = resolve_config(raw, strict=False)
        for k in raw:
            if k in spec.unused:
                why.setdefault(k, spec.unused[k])
            else:
                used.setdefault(k, set()).add(raw["pairing"])
        cell = {k: v for k, v in raw.items() if k not in spec.unused}
        ident = repr(sorted(cell.items(), key=lambda kv: kv[0]))
        if ident in seen:
            continue
        seen[ident] = len(cell_vars)
        cell_vars.append(cell)
        specs.append(dataclasses.replace(spec, unused={}))
    for key in sorted(user_keys):
        if key not in used:
            could = [p for p in pairings if key in pairing_keys(p)]
            raise ConfigError(unused_key_message(key, _sweep_name(plan, could or None), why.get(key) if could else None))
    for p, values in plan.per_pairing.items():
        for key in values:
            if p not in used.get(key, set()):
                usable = key in pairing_keys(p)
                raise ConfigError(unused_key_message(key, f"pairing {p}", why.get(key) if usable else None))
    # Fixed keys every cell uses stay in plan.fixed; the others go per pairing, or the cells are
    # enumerated when a key's use is not the same across a pairing's cells or a grid axis repeats cells.
    by_pairing: dict[str, list[dict]] = {}
    for cell in cell_vars:
        by_pairing.setdefault(cell["pairing"], []).append(cell)
    explicit = len(cell_vars) < len(plan.product_cells())
    for key in [k for k in plan.fixed if k not in used or used[k] != set(pairings)]:
        value = plan.fixed.pop(key)
        for p, cells in by_pairing.items():
            present = [key in c for c in cells]
            if all(present):
                plan.per_pairing.setdefault(p, {})[key] = value
            elif any(present):
                explicit = True
    for key, values in plan.grid_axes.items():
        if any(key not in c for c in cell_vars):
            explicit = True
    plan.explicit = explicit
    plan.cell_vars = [{k: v for k, v in c.items() if k not in plan.fixed} for c in cell_vars]
    plan.specs = specs


def _probe(plan: Plan, pairing: str) -> TrialSpec:
    """A lenient spec of the first cell of `pairing` (to see which keys that pairing uses)."""
    cfg = {**plan.fixed, **{k: v[0] for k, v in plan.grid_axes.items()}, "pairing": pairing}
    for k, v in plan.axes.items():
        if is_domain(v):
            cfg[k] = v.representative()
    for k, v in plan.per_pairing.get(pairing, {}).items():
        cfg[k] = v.representative() if is_domain(v) else v
    return resolve_config(cfg, strict=False)


def validate(plan: Plan) -> None:
    """Check every cell's spec, plus every extreme of every sampled domain; first problem raises.

    Dataset configs with a `preflight()` (files on disk, weights) check it once per distinct config,
    so missing or corrupt data fails here, before Ray or MLflow start. Fills plan.checked.
    """
    checked_data: set[str] = set()
    plan.checked = list(plan.specs)
    for cfg, spec in zip(plan.cells(), plan.specs):
        key = repr(spec.data)
        if key not in checked_data and hasattr(spec.data, "preflight"):
            checked_data.add(key)
            spec.data.preflight()
        sampled = {k: v for k, v in plan.axes.items() if is_domain(v)}
        sampled.update({k: v for k, v in plan.per_pairing.get(cfg["pairing"], {}).items() if is_domain(v)})
        for k, v in sampled.items():
            for x in v.extremes():
                plan.checked.append(resolve_config({**cfg, k: x}))


def to_tune_space(plan: Plan) -> dict[str, Any]:
    """The Tune param_space: lists -> grid_search, domains -> Tune sampling, per-pairing via sample_from.

    An explicit plan (a grid axis some cells do not use) is a grid over cell indices instead,
    each key a sample_from reading the trial's cell, so no pairing gets duplicate cells.
    """
    from ray import tune

    space: dict[str, Any] = dict(plan.fixed)
    per_keys = {k for p in plan.per_pairing.values() for k in p}
    cell_pairings = None
    if plan.explicit:
        # Cells differ per pairing: Tune enumerates them by index; each key reads its cell's value.
        sampled_keys = {k for k, v in plan.axes.items() if is_domain(v)}
        sampled_keys |= {k for vals in plan.per_pairing.values() for k, v in vals.items() if is_domain(v)}
        table = [{k: v for k, v in c.items() if k not in sampled_keys} for c in plan.cell_vars]
        cell_pairings = [c["pairing"] for c in plan.cell_vars]
        space[CELL_KEY] = tune.grid_search(list(range(len(table))))
        for key in sorted({k for c in table for k in c}):
            space[key] = tune.sample_from(_CellValue(key, table))
        for k, v in plan.axes.items():
            if is_domain(v):
                space[k] = v.to_tune()
        per_keys = {k for k in per_keys if k in sampled_keys}
    else:
        for k, v in plan.axes.items():
            if isinstance(v, list):
                space[k] = tune.grid_search(v) if len(v) > 1 else v[0]
            else:
                space[k] = v.to_tune()
    for key in sorted(per_keys):
        table = {p: vals[key] for p, vals in plan.per_pairing.items() if key in vals}
        space[key] = tune.sample_from(_PerPairing(key, table, cell_pairings))
    return space


class _CellValue:
    """Picklable sample_from function: the value of `key` in the trial's cell (None: not set)."""

    def __init__(self, key: str, table: list[dict[str, Any]]):
        self.key, self.table = key, table

    def __call__(self, config) -> Any:
        cfg = config.config if hasattr(config, "config") else config
        return self.table[cfg[CELL_KEY]].get(self.key)


class _PerPairing:
    """Picklable sample_from function: the value (or a fresh sample) for this trial's pairing."""

    def __init__(self, key: str, table: dict[str, Any], cell_pairings: list[str] | None = None):
        self.key, self.table, self.cell_pairings = key, table, cell_pairings

    def __call__(self, config) -> Any:
        # Tune passes the resolved config dict (older Tune: a spec with .config, now deprecated).
        cfg = config.config if hasattr(config, "config") else config
        # With enumerated cells the pairing is itself a sample_from value: read it from the cell.
        pairing = self.cell_pairings[cfg[CELL_KEY]] if self.cell_pairings else cfg["pairing"]
        v = self.table.get(pairing)
        return v.sample() if is_domain(v) else v
