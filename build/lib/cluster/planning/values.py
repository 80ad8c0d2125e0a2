"""Parsing `--set key=value` and `--grid key=v1,v2` from the command line."""
from __future__ import annotations

import ast
from typing import Any

from core.errors import ConfigError


def parse_value(text: str) -> Any:
    """Python literal if it parses (1, 0.5, True, None, [50, 10], 'x'), else the raw string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignment(item: str, flag: str = "--set") -> tuple[str, Any]:
    """'key=value' -> (key, parsed value); ConfigError when there is no '='."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} expects key=value, got {item!r}")
    return key.strip(), parse_value(value)


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """'--set a=1 --set b=x' -> {"a": 1, "b": "x"}; the same key twice is refused (which one wins?)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_assignment(item)
        if key in out:
            raise ConfigError(f"--set {key} is given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
    return out


def parse_grids(items: list[str] | None) -> dict[str, list[Any]]:
    """'--grid lr=1e-3,1e-2' -> {"lr": [0.001, 0.01]} (a list literal works too)."""
    out: dict[str, list[Any]] = {}
    for item in items or []:
        key, value = parse_assignment(item, "--grid")
        if key in out:
            raise ConfigError(f"--grid {key} is given twice; give all its values in one --grid {key}=V1,V2,...")
        if isinstance(value, str):
            value = [parse_value(v) for v in value.split(",") if v.strip()]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        if not value:
            raise ConfigError(f"--grid {key} needs at least one value, got {item!r}")
        out[key] = list(value)
    return out
