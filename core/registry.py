"""Where each registry entry came from, and the one rule for adding entries from user code.

The registries stay explicit dicts in their own packages (MODELS, DATASETS, PAIRINGS,
EXPERIMENTS, STUDIES); this module only remembers which entries user code added and from
where ("my_study.py", "entry point acme (acme.studies)"). Anything not recorded here is
built-in. A user entry may never replace a built-in one or another module's entry of the same
name (ConfigError, exit 2); a module loaded again (a notebook re-running, a changed file read
afresh) replaces its own entries.
"""
from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

from core.errors import ConfigError

BUILTIN = "built-in"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# (kind, name) -> origin, for entries user code added.
ORIGINS: dict[tuple[str, str], str] = {}
# kind -> the registry dict, for every registry that accepts user entries.
_REGISTRIES: dict[str, MutableMapping[str, Any]] = {}
# The origin of the module being loaded by core.user_modules (None outside a load).
_LOADING: contextvars.ContextVar[str | None] = contextvars.ContextVar("loading_user_module", default=None)


def track(kind: str, registry: MutableMapping[str, Any]) -> None:
    """Declare `registry` (its current entries built-in) as the one for `kind`."""
    _REGISTRIES[kind] = registry


@contextlib.contextmanager
def loading(origin: str) -> Iterator[None]:
    """While a user module executes: entries it registers get this origin."""
    token = _LOADING.set(origin)
    try:
        yield
    finally:
        _LOADING.reset(token)


def current_origin(depth: int = 2) -> str:
    """The origin of a registration: the module being loaded, else the calling module's name
    (`__main__` for a notebook cell or a script)."""
    origin = _LOADING.get()
    if origin is not None:
        return origin
    frame = sys._getframe(depth)
    return str(frame.f_globals.get("__name__", "__main__"))


def origin_of(kind: str, name: str) -> str:
    return ORIGINS.get((kind, name), BUILTIN)


def register(kind: str, name: str, obj: Any, origin: str) -> None:
    """Add `obj` as `name` to the `kind` registry, refusing clashes.

    Raises:
        ConfigError: a bad name, or `name` already belongs to a built-in entry or to another
            module's entry.
    """
    registry = _REGISTRIES[kind]
    if kind != "pairing" and (not isinstance(name, str) or not NAME_RE.match(name)):  # pairings: model/dataset
        raise ConfigError(f"{kind} name {name!r} from {origin} must be letters, digits, '_', '.', '-' "
                          "(max 64 characters, starting with a letter or digit)")
    if name in registry:
        owner = origin_of(kind, name)
        if owner != origin:
            other = f"the built-in {kind} {name!r}" if owner == BUILTIN else f"the {kind} {name!r} from {owner}"
            raise ConfigError(f"{kind} {name!r} from {origin} clashes with {other}; give yours another name "
                              f"(`sweep list` shows every {kind} and where it comes from)")
    registry[name] = obj
    ORIGINS[(kind, name)] = origin


def forget(origin: str) -> None:
    """Remove every entry `origin` registered (before a module is loaded again, or after it failed)."""
    for (kind, name), owner in list(ORIGINS.items()):
        if owner == origin:
            _REGISTRIES[kind].pop(name, None)
            del ORIGINS[(kind, name)]


def entries_from(origin: str, kind: str | None = None) -> list[tuple[str, str]]:
    """(kind, name) of the entries `origin` registered, in registration order."""
    return [k for k, o in ORIGINS.items() if o == origin and (kind is None or k[0] == kind)]
