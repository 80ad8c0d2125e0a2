"""Search-space domains as plain data that own their behaviour.

Grid axes are plain lists (-> `tune.grid_search`). These classes describe sampled axes for
`--num-samples` searches; each validates itself so an impossible space fails before any run, and
each answers every question the driver asks of a domain: its representative value (the cell a
plan resolves), its extremes (the values checked before anything runs), its largest value (the
memory estimate), its Tune form and one sample of it (Tune's own sampler), and its Optuna
suggestion. Nothing outside this module dispatches on the domain's type (`is_domain` tells a
domain from a plain value).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError


class _Domain:
    """What every domain answers (a range: low..high; a Choice overrides what differs)."""

    low: Any
    high: Any

    def contains(self, v: Any) -> bool:
        return self.low <= v <= self.high

    def representative(self) -> Any:
        """The value a plan resolves its cells at (before anything is sampled)."""
        return self.low

    def extremes(self) -> list[Any]:
        """Every value at an end of the domain: each is resolved and checked before anything runs."""
        return [self.low, self.high]

    def largest(self) -> Any:
        """The value that makes a trial biggest (the memory estimate's worst case)."""
        return self.high

    def listed(self) -> list[Any]:
        """Values the user wrote out one by one (checked for repeats); none for a range."""
        return []

    def to_tune(self):
        """The Ray Tune domain (`tune.loguniform`, ...)."""
        raise NotImplementedError

    def sample(self) -> Any:
        """One value drawn by Tune's own sampler for this domain."""
        return self.to_tune().sample()

    def suggest(self, trial, name: str) -> Any:
        """Optuna's define-by-run suggestion of `name` from this domain."""
        raise NotImplementedError


@dataclass(frozen=True)
class LogUniform(_Domain):
    """Log-uniform float in [low, high)."""

    low: float
    high: float

    def __post_init__(self):
        if not (self.low > 0 and self.high > 0):
            raise ConfigError(f"LogUniform bounds must be > 0, got low={self.low}, high={self.high}")
        if self.low >= self.high:
            raise ConfigError(f"LogUniform lower bound {self.low} must be < upper bound {self.high}")

    def describe(self) -> str:
        return f"loguniform({self.low:g}, {self.high:g})"

    def to_tune(self):
        from ray import tune

        return tune.loguniform(self.low, self.high)

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=True)


@dataclass(frozen=True)
class Uniform(_Domain):
    """Uniform float in [low, high)."""

    low: float
    high: float

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ConfigError(f"Uniform lower bound {self.low} must be < upper bound {self.high}")

    def describe(self) -> str:
        return f"uniform({self.low:g}, {self.high:g})"

    def to_tune(self):
        from ray import tune

        return tune.uniform(self.low, self.high)

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high)


@dataclass(frozen=True)
class RandInt(_Domain):
    """Integer in [low, high] (both inclusive)."""

    low: int
    high: int

    def __post_init__(self):
        if self.low > self.high:
            raise ConfigError(f"RandInt lower bound {self.low} must be <= upper bound {self.high}")

    def describe(self) -> str:
        return f"randint({self.low}, {self.high})"

    def to_tune(self):
        from ray import tune

        return tune.randint(self.low, self.high + 1)  # Tune's upper bound is exclusive

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high)


@dataclass(frozen=True)
class Choice(_Domain):
    """One of a non-empty tuple of values, sampled uniformly."""

    values: tuple[Any, ...]

    def __post_init__(self):
        if len(self.values) == 0:
            raise ConfigError("Choice needs at least one value, got an empty list")
        object.__setattr__(self, "values", tuple(self.values))

    def contains(self, v: Any) -> bool:
        return v in self.values

    def describe(self) -> str:
        return f"choice({list(self.values)})"

    def representative(self) -> Any:
        return self.values[0]

    def extremes(self) -> list[Any]:
        return list(self.values)

    def largest(self) -> Any:
        return max(self.values, key=repr)

    def listed(self) -> list[Any]:
        return list(self.values)

    def to_tune(self):
        from ray import tune

        return tune.choice(list(self.values))

    def suggest(self, trial, name: str) -> Any:
        values = list(self.values)
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            return trial.suggest_categorical(name, values)
        return values[trial.suggest_categorical(name, list(range(len(values))))]  # tuples: pick by index


Domain = LogUniform | Uniform | RandInt | Choice


def is_domain(value: Any) -> bool:
    """A sampled domain (as opposed to a plain value or a grid list)."""
    return isinstance(value, _Domain)
