"""Errors raised for bad user input: each names the bad value and what is allowed."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the key, the value and what is allowed."""


class UnknownName(ConfigError, KeyError):
    """A registry lookup failed; the message lists close matches and every valid name."""

    def __init__(self, kind: str, name: object, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}")
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return self.args[0]
