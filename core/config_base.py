"""Dataclass configs that validate themselves: types, then each class's own rules."""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from core.errors import ConfigError


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (tuple, list)) and all(
            _type_ok(v, args[0]) for v in value) if args else isinstance(value, (tuple, list))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


# Per-class caches: resolving a cell builds several configs, and a sweep resolves every cell.
_HINTS: dict[type, dict[str, Any]] = {}
_KEYS: dict[type, frozenset[str]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


class ConfigBase:
    """Mixin for frozen dataclasses: `from_config` picks its own keys and checks types.

    Subclasses add their rules in `__post_init__` (call `super().__post_init__()` first) and
    raise `ConfigError` naming the field, the value and what is allowed.
    """

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            hint = hints.get(f.name, Any)
            if not _type_ok(value, hint):
                raise ConfigError(
                    f"{f.name}={value!r} has type {type(value).__name__}; expected {_type_name(hint)}")
            # Normalise ints given for floats and lists given for tuples, so configs hash and compare.
            if hint is float and isinstance(value, int):
                object.__setattr__(self, f.name, float(value))
            if typing.get_origin(hint) is tuple and isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    @classmethod
    def keys(cls) -> set[str]:
        """Config keys this class reads."""
        if cls not in _KEYS:
            _KEYS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
        return set(_KEYS[cls])

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]):
        """Build from a mapping of settings, reading only this class's keys (others are ignored);
        an instance of this class is returned as it is (a builder handed its typed config)."""
        if isinstance(cfg, cls):
            return cfg
        return cls(**{k: cfg[k] for k in cls.keys() if k in cfg})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless `cond`."""
    if not cond:
        raise ConfigError(message)


SEED_LIMIT = 2 ** 32  # seeds feed NumPy's legacy RandomState as well as torch
IMAGE_SIDE_LARGEST = 4096  # the largest image side that makes sense (spatial_resolution, resize)


def check_seed(name: str, value: int | None) -> None:
    """A seed setting (None: unset) lies in [0, 2**32); raises ConfigError naming it."""
    check(value is None or 0 <= value < SEED_LIMIT, f"{name}={value} is not allowed; seeds must be in [0, 2**32)")


def check_at_most(name: str, value: float | None, largest: float) -> None:
    """The upper sanity bound of a setting (None: unset); the class states its lower bound itself."""
    check(value is None or value <= largest,
          f"{name}={value!r} is above {largest:g}, the largest value that makes sense here")
