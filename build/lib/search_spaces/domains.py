"""Search-space domains as plain data; cluster/ turns them into Ray Tune domains.

Grid axes are plain lists (-> `tune.grid_search`). These classes describe sampled axes for
`--num-samples` searches; each validates itself so an impossible space fails before any run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError


@dataclass(frozen=True)
class LogUniform:
    """Log-uniform float in [low, high)."""

    low: float
    high: float

    def __post_init__(self):
        if not (self.low > 0 and self.high > 0):
            raise ConfigError(f"LogUniform bounds must be > 0, got low={self.low}, high={self.high}")
        if self.low >= self.high:
            raise ConfigError(f"LogUniform lower bound {self.low} must be < upper bound {self.high}")

    def contains(self, v: float) -> bool:
        return self.low <= v <= self.high

    def describe(self) -> str:
        return f"loguniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class Uniform:
    """Uniform float in [low, high)."""

    low: float
    high: float

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ConfigError(f"Uniform lower bound {self.low} must be < upper bound {self.high}")

    def contains(self, v: float) -> bool:
        return self.low <= v <= self.high

    def describe(self) -> str:
        return f"uniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class RandInt:
    """Integer in [low, high] (both inclusive)."""

    low: int
    high: int

    def __post_init__(self):
        if self.low > self.high:
            raise ConfigError(f"RandInt lower bound {self.low} must be <= upper bound {self.high}")

    def contains(self, v: int) -> bool:
        return self.low <= v <= self.high

    def describe(self) -> str:
        return f"randint({self.low}, {self.high})"


@dataclass(frozen=True)
class Choice:
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


Domain = LogUniform | Uniform | RandInt | Choice
SAMPLED = (LogUniform, Uniform, RandInt, Choice)
