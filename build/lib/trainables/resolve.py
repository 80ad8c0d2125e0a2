"""Compatibility names for the one resolver, trainables.spec.resolve_config.

`Resolved` is the TrialSpec; callers import `resolve_config`, `known_keys` and `check_keys` from
here or from trainables.spec alike.
"""
from __future__ import annotations

from trainables.spec import (CELL_KEY, FAULT_ENV, TrialSpec, accepting_pairings, check_keys,
                             known_keys, pairing_keys, resolve_config)

Resolved = TrialSpec

__all__ = ["CELL_KEY", "FAULT_ENV", "Resolved", "TrialSpec", "accepting_pairings", "check_keys", "known_keys",
           "pairing_keys", "resolve_config"]
