"""Names and output folders checked once, the same way everywhere (issue 24).

A sweep or study name becomes a folder under the storage path, an MLflow tag matched in filter
strings and a folder under ./reports: it must be letters, digits, '_', '.', '-' (first a letter
or digit, at most 128), matched against the whole string (a trailing newline, quotes or
non-UTF-8 bytes are refused, not passed on). A report goes where the user said (`--out`) or to
./reports/<name>; a name read back from the store that is not a safe name, or a reports/<name>
that resolves elsewhere (a planted symlink), never sends files outside ./reports.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")  # \Z: .match() is a whole match too ($ lets "x\n" in)
NAME_RULE = "letters, digits, '_', '.', '-' (first a letter or digit, max 128 chars)"
REPORTS = "reports"


def is_name(name: object) -> bool:
    """True when `name` is a whole valid sweep/study name."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def check_name(name: object, what: str = "sweep name") -> str:
    """Return `name` or raise ConfigError naming it (repr: control and non-UTF-8 bytes visible)."""
    if not is_name(name):
        raise ConfigError(f"{what} {name!r} must be {NAME_RULE}")
    return name  # type: ignore[return-value]


def report_dir(out_dir: str | os.PathLike | None, name: str, fallback: str = "sweep") -> Path:
    """The folder a report is written to, created.

    Args:
        out_dir: the user's `--out` (used as given), or None for ./reports/<name>.
        name: the sweep or study name (from the store: not trusted). Not a valid name: `fallback`.
        fallback: component used when `name` is unusable (e.g. the parent run id).

    Raises:
        ConfigError: `--out` is an existing file or cannot be created; ./reports/<name> resolves
            outside ./reports.
    """
    if out_dir is not None:
        out = Path(out_dir)
        what = f"--out {str(out)!r}"
    else:
        component = name if is_name(name) and name not in (".", "..") else fallback
        if not is_name(component):
            raise ConfigError(f"cannot name a report folder after {name!r}; pass --out DIR")
        root = Path(REPORTS)
        out = root / component
        what = f"report folder {str(out)!r}"
        try:
            root.mkdir(exist_ok=True)
            inside = out.resolve().is_relative_to(root.resolve())
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"{what} cannot be used: {exc}; pass --out DIR") from None
        if not inside or out.is_symlink():
            raise ConfigError(f"{what} is a link to {os.path.realpath(out)!r}, outside ./{REPORTS}; "
                              "remove it or pass --out DIR")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{what} is an existing file, not a folder; choose a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} cannot be created: {exc.strerror or exc}") from None
    return out
