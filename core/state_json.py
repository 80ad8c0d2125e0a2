"""One checked loader for the driver's JSON state files (sweep.json, study.json, ...).

A state file is read without following a link, up to a size bound, and must hold a JSON object
with the keys and types its writer puts there; anything else is a ConfigError naming the path,
what is wrong and what to do, never a traceback from deep inside the code that uses it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from core.errors import ConfigError


def load_state_json(path: Path, required: dict[str, type | tuple[type, ...]], what_to_do: str,
                    max_bytes: int = 64 << 20) -> dict:
    """The JSON object in `path`, checked.

    Args:
        required: key -> type(s) each must have.
        what_to_do: the end of the message (e.g. "remove it, or pick another --name").
        max_bytes: larger files are refused unread.

    Raises:
        ConfigError: a link, unreadable, too large, not JSON, not an object, a key missing or mistyped.
    """
    path = Path(path)

    def damaged(why: str) -> ConfigError:
        return ConfigError(f"{path} is damaged ({why}); {what_to_do}")

    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise damaged(exc.strerror or type(exc).__name__) from None
    if len(raw) > max_bytes:
        raise damaged(f"over {max_bytes >> 20} MB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise damaged(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise damaged(f"a JSON {type(data).__name__}, not an object")
    for key, kind in required.items():
        if key not in data:
            raise damaged(f"KeyError: {key!r} missing")
        if not isinstance(data[key], kind):
            raise damaged(f"{key} is a {type(data[key]).__name__}")
    return data
