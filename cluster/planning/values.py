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


def command_items(items: Any, flag: str) -> list[str]:
    """The command line's form of an option: a list of "KEY=VALUE" strings (one string alone is one)."""
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    if isinstance(items, (list, tuple)) and all(isinstance(x, str) for x in items):
        return list(items)
    raise ConfigError(f"{flag} takes {{key: value}} or KEY=VALUE strings, got {items!r}")


def _keys(mapping: dict, flag: str) -> None:
    bad = [k for k in mapping if not isinstance(k, str) or not k.strip()]
    if bad:
        raise ConfigError(f"{flag} keys must be config key names (strings), got {bad!r}")


def parse_sets(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """'--set a=1 --set b=x' -> {"a": 1, "b": "x"}; the same key twice is refused (which one wins?).
    A mapping (cluster.api: set={"a": 1}) is taken as already parsed."""
    if isinstance(items, dict):
        _keys(items, "--set")
        return dict(items)
    out: dict[str, Any] = {}
    for item in command_items(items, "--set"):
        key, value = parse_assignment(item)
        if key in out:
            raise ConfigError(f"--set {key} is given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
    return out


def parse_grids(items: list[str] | dict[str, Any] | None) -> dict[str, list[Any]]:
    """'--grid lr=1e-3,1e-2' -> {"lr": [0.001, 0.01]} (a list literal works too). A mapping
    (cluster.api: grid={"lr": [1e-3, 1e-2]}) holds the values as given, with the same checks."""
    out: dict[str, list[Any]] = {}
    if isinstance(items, dict):
        _keys(items, "--grid")
        pairs = [(k.strip(), v, f"{k}={v!r}") for k, v in items.items()]
    else:
        pairs = [(*parse_assignment(item, "--grid"), item) for item in command_items(items, "--grid")]
    for key, value, item in pairs:
        if key in out:
            raise ConfigError(f"--grid {key} is given twice; give all its values in one --grid {key}=V1,V2,...")
        if isinstance(value, str) and not isinstance(items, dict):
            value = [parse_value(v) for v in value.split(",") if v.strip()]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        if not value:
            raise ConfigError(f"--grid {key} needs at least one value, got {item!r}")
        out[key] = list(value)
    return out
