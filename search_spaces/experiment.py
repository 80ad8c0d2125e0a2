"""Experiments are values: pairings x fixed settings x swept axes x seeds, plus report contents."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from search_spaces.domains import is_domain
from core.errors import ConfigError, UnknownName

# The plots `sweep report` can draw: the names of analysis.plots.PLOTS, which search_spaces may not
# import (tests/test_registry.py keeps the two equal). An experiment's `plots` are checked against
# this at plan time, so a typo stops `sweep run` before any trial.
PLOT_NAMES = ("accuracy_vs_data", "curves", "kernels", "confusion", "params_vs_accuracy", "lr_kernel_heatmap",
              "accuracy_vs_epochs", "accuracy_vs_shift", "leaderboard", "param_explosion", "samples", "iou_table",
              "search_scatter", "asha_rungs", "best_configs")


# What a sweep optimises, ranks by and reports when its experiment declares no search.
DEFAULT_METRIC = "val_acc"
DEFAULT_MODE = "max"

# What a claim asserts (Hypothesis.kind). Each kind names the fields it needs and the ones it uses.
HYPOTHESIS_KINDS = ("difference", "equivalence", "threshold", "chance", "interaction")


@dataclass(frozen=True)
class Hypothesis:
    """A claim of the source, answered per cell from the data.

    Kinds (`kind`):
      difference   "`better` has higher `metric` than `worse`" (lower when mode="min"); with
                   `margin` set, "equivalent within ±margin" is a possible answer too.
      equivalence  `better` and `worse` are within ±`margin` of each other (the names only say
                   which side is which).
      threshold    `better`'s metric is >= `threshold` (<= when mode="min"); no `worse`.
      chance       `better` is at chance (1/classes); `margin` (optional) is how close counts. No `worse`.
      interaction  the gap `better` - `worse` at `at` exceeds the gap at `at_other` (e.g. the gap
                   at 100 epochs is larger than at 1000: the gap narrows with training).

    `at` restricts the cells (e.g. {"data_per_class": 10}), empty = every cell. `better`/`worse`
    are pairing names; `better_fixed`/`worse_fixed` further select runs by param value (e.g.
    {"init": "edge_detector"}) and `other_experiment` takes `worse` from another experiment's
    runs (e.g. edge-detector-init vs the random-init CNN). Metric units throughout: margin=0.05
    is 5 accuracy points. `source` says where the claim comes from (notebook and question or
    cell, e.g. "EDGE Q2, answer cell") and `source_value` the notebook's printed single-run
    value(s).
    """

    text: str
    better: str
    worse: str = ""
    metric: str = "val_acc"
    mode: str = "max"
    at: dict[str, Any] = field(default_factory=dict)
    other_experiment: str | None = None
    kind: str = "difference"
    source: str = ""
    source_value: str = ""
    margin: float | None = None
    threshold: float | None = None
    at_other: dict[str, Any] = field(default_factory=dict)
    better_fixed: dict[str, Any] = field(default_factory=dict)
    worse_fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        def bad(what: str) -> ConfigError:
            return ConfigError(f"hypothesis {self.text!r}: {what}")

        if self.mode not in ("max", "min"):
            raise ConfigError(f"Hypothesis mode must be 'max' or 'min', got {self.mode!r}")
        if self.kind not in HYPOTHESIS_KINDS:
            raise bad(f"kind must be one of {', '.join(map(repr, HYPOTHESIS_KINDS))}, got {self.kind!r}")
        if not isinstance(self.better, str) or not self.better:
            raise bad(f"`better` must name a pairing, got {self.better!r}")
        for name in ("at", "at_other", "better_fixed", "worse_fixed"):
            if not isinstance(getattr(self, name), dict):
                raise bad(f"`{name}` must be a dict of param -> value, got {getattr(self, name)!r}")
        for name in ("margin", "threshold"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value != value or value in (float("inf"), float("-inf"))):
                raise bad(f"`{name}` must be a finite number (metric units, 0.05 = 5 points), got {value!r}")
        if self.margin is not None and self.margin <= 0:
            raise bad(f"`margin` must be > 0 (metric units, 0.05 = 5 points), got {self.margin!r}")
        two_sided = self.kind in ("difference", "equivalence", "interaction")
        if two_sided and not self.worse:
            raise bad(f"a {self.kind} claim needs `worse` (the pairing compared with `better`)")
        if not two_sided:
            unused = [n for n in ("worse", "worse_fixed", "other_experiment") if getattr(self, n)]
            if unused:
                raise bad(f"a {self.kind} claim is about `better` alone; {', '.join(unused)} would not be used")
        if self.kind == "equivalence" and self.margin is None:
            raise bad("an equivalence claim needs `margin` (metric units, e.g. 0.05 = ±5 points)")
        if self.kind == "threshold":
            if self.threshold is None:
                raise bad("a threshold claim needs `threshold` (metric units, e.g. 0.95)")
            if self.margin is not None:
                raise bad("a threshold claim is one-sided; `margin` would not be used")
        elif self.threshold is not None:
            raise bad(f"`threshold` is used only by kind='threshold', not {self.kind!r}")
        if self.kind == "interaction":
            if not self.at_other:
                raise bad("an interaction claim needs `at_other` (the cells whose gap is the smaller one)")
            if self.at_other == self.at:
                raise bad("an interaction claim compares the gap at `at` with the gap at `at_other`; they are equal")
        elif self.at_other:
            raise bad(f"`at_other` is used only by kind='interaction', not {self.kind!r}")


@dataclass(frozen=True)
class Search:
    """Hyper-parameter search declaration: what to optimise and how."""

    metric: str = DEFAULT_METRIC
    mode: str = DEFAULT_MODE
    scheduler: str = "asha"
    grace_period: int = 10
    reduction_factor: int = 3
    num_samples: int = 16

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ConfigError(f"search mode must be 'max' or 'min', got {self.mode!r}")
        if self.scheduler not in ("asha", "none"):
            raise ConfigError(f"search scheduler must be 'asha' or 'none', got {self.scheduler!r}")
        if self.grace_period < 1:
            raise ConfigError(f"grace_period must be >= 1 epoch, got {self.grace_period}")
        if self.reduction_factor < 2:
            raise ConfigError(f"reduction_factor must be >= 2, got {self.reduction_factor}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")


def objective(search: Search | Mapping[str, Any] | None) -> tuple[str, str]:
    """(metric, mode) a sweep optimises and ranks by: its search declaration's (a `Search`, or the
    dict a sweep stored in its declaration artifact), else DEFAULT_METRIC / DEFAULT_MODE."""
    if isinstance(search, Search):
        return search.metric or DEFAULT_METRIC, search.mode
    if not isinstance(search, Mapping):
        return DEFAULT_METRIC, DEFAULT_MODE
    return search.get("metric") or DEFAULT_METRIC, search.get("mode") or DEFAULT_MODE


@dataclass(frozen=True)
class Experiment:
    """A named sweep.

    Attributes:
        name: id used on the command line and as the MLflow experiment name.
        description: one line for `sweep list`.
        pairings: pairing names ("model/dataset") swept as the `pairing` axis.
        fixed: settings shared by every trial (override pairing defaults).
        axes: grid axes, key -> list of values (tune.grid_search), or sampled domains
            (search_spaces.domains) for `--num-samples` searches.
        per_pairing: pairing -> settings that apply to that pairing only: fixed values, or sampled
            domains for searches (e.g. kernel size for the CNN, hidden width for the MLP).
        seeds: replicates per cell; seeds are seed_start, seed_start+1, ...
        smoke: overrides applied by `--smoke` (shrinks epochs and data for CI).
        plots: analysis plot names the report draws (see analysis.plots.PLOTS).
        hypotheses: claims the report answers with CIs and p-values.
        compare_with: other experiments whose runs the report plots alongside.
        search: set for hyper-parameter searches (metric/mode/scheduler).
        analytic: computed without training (no Ray trials).
    """

    name: str
    description: str
    pairings: tuple[str, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, Any] = field(default_factory=dict)
    per_pairing: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: int = 3
    seed_start: int = 10
    smoke: dict[str, Any] = field(default_factory=dict)
    plots: tuple[str, ...] = ()
    hypotheses: tuple[Hypothesis, ...] = ()
    compare_with: tuple[str, ...] = ()
    search: Search | None = None
    analytic: bool = False

    def __post_init__(self):
        if not self.analytic and not self.pairings:
            raise ConfigError(f"experiment {self.name!r} has no pairings")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        for key, values in self.axes.items():
            if not is_domain(values) and (not isinstance(values, (list, tuple)) or not values):
                raise ConfigError(f"axis {key!r} of {self.name!r} needs a non-empty list or a domain, got {values!r}")
        unknown = set(self.per_pairing) - set(self.pairings)
        if unknown:
            raise ConfigError(f"per_pairing of {self.name!r} names pairings not in the experiment: {sorted(unknown)}")

    @property
    def swept_keys(self) -> list[str]:
        """Keys that vary between cells (not counting seed): pairing, grid axes, per-pairing axes."""
        keys = ["pairing"] if len(self.pairings) > 1 else []
        keys += [k for k in self.axes]
        for extra in self.per_pairing.values():
            keys += [k for k, v in extra.items() if is_domain(v) and k not in keys]
        return keys

    def check_plots(self) -> None:
        """Raise ConfigError for a plot name the report does not know (close names suggested)."""
        for name in self.plots:
            if name not in PLOT_NAMES:
                raise ConfigError(f"experiment {self.name!r}: {UnknownName('plot', name, PLOT_NAMES)}")

    def seed_values(self, n: int | None = None) -> list[int]:
        return list(range(self.seed_start, self.seed_start + (n or self.seeds)))
