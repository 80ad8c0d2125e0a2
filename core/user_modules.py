"""User modules: the user's own file (`my_study.py`) or an installed package's module, which
registers models, datasets, pairings and experiments when it is imported.

The driver loads a module once (`load_file`, `load_installed`) and keeps a `ModuleRef` (import
name, SHA-256 of the source that ran, where it was read). The ref travels to every trial, which
calls `ensure(refs)` before it builds anything: a module already loaded with that hash is
reused, else it is loaded again (a local Ray: from the driver's path; a cluster: by name, from
the copy Ray shipped in `py_modules` or the installed package) and must hash the same, so a trial
never runs other code than the sweep recorded. The hashed bytes are the bytes executed.

Stdlib only: the trials (trainables) and the driver (cluster) both use it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import keyword
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from core import registry
from core.errors import ConfigError

PROJECT_PACKAGES = ("core", "trainables", "search_spaces", "cluster", "analysis", "benchmarks", "tests")
FILE, PACKAGE = "file", "package"


@dataclass(frozen=True)
class ModuleRef:
    """A user module as the sweep ran it.

    Attributes:
        name: import name ("my_study", "acme.studies").
        sha256: hash of the source that ran.
        path: the file the driver read ("" in the copy sent to a cluster's workers, which import
            it by name from what Ray shipped).
        kind: FILE (a user's file: shipped to a cluster's workers) or PACKAGE (installed: not shipped).
    """

    name: str
    sha256: str
    path: str = ""
    kind: str = FILE

    @property
    def origin(self) -> str:
        """What `sweep list` shows as the source of its entries: the file name, or the module."""
        return f"{self.name.rpartition('.')[2]}.py" if self.kind == FILE else self.name

    def for_cluster(self) -> ModuleRef:
        """The copy for workers on other machines: imported by name, never from the driver's path."""
        return replace(self, path="")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModuleRef:
        try:
            return cls(str(d["name"]), str(d["sha256"]), str(d.get("path", "")), str(d.get("kind", FILE)))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"a recorded user module is damaged ({exc!r}): {d!r}") from None


# import name -> the ref of the version loaded in this process
LOADED: dict[str, ModuleRef] = {}
# Called after a module ran, with (module, origin): search_spaces registers its module-level experiments.
_AFTER_LOAD: list[Callable[[ModuleType, str], None]] = []


def after_load(fn: Callable[[ModuleType, str], None]) -> None:
    if fn not in _AFTER_LOAD:
        _AFTER_LOAD.append(fn)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def parse_target(text: str) -> tuple[str, str | None] | None:
    """Split a command-line target that names a module.

    "my_study.py:NAME" -> ("my_study.py", "NAME"); "my_study.py" or "dir/x.py" -> (path, None);
    "acme.studies:NAME" -> ("acme.studies", "NAME"); a plain registry name -> None.
    """
    if ":" in text:
        module, _, attr = text.rpartition(":")
        if not module or not attr:
            raise ConfigError(f"{text!r}: expected FILE.py:NAME or MODULE:NAME (NAME an experiment defined there)")
        return module, attr
    if text.endswith(".py") or "/" in text:
        return text, None
    return None


def is_file(module: str) -> bool:
    return module.endswith(".py") or "/" in module


def loaded_refs() -> list[ModuleRef]:
    return list(LOADED.values())


def load(module: str) -> tuple[ModuleType, ModuleRef]:
    """A file path ("my_study.py") or an importable name ("acme.studies")."""
    return load_file(module) if is_file(module) else load_installed(module)


def load_file(path: str | Path, expect_sha: str | None = None) -> tuple[ModuleType, ModuleRef]:
    """Run the user's file `path` as the module named after it (my_study.py -> `my_study`).

    Loaded again when its content changed since the last load (its old registrations are
    dropped first); a load that fails leaves nothing registered.

    Raises:
        ConfigError: no such file, not a .py file, a name that would shadow another module,
            `expect_sha` given and the file differs, or the module raised while it ran
            (the message names the file, the line and the error).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        raise ConfigError(f"user module {str(path)!r} {what} (looked at {p.absolute()})")
    if p.suffix != ".py":
        raise ConfigError(f"user module {str(path)!r} must be a Python file ending in .py")
    p = p.resolve()
    name = p.stem
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigError(f"user module {p.name!r}: the file name must be a Python module name "
                          "(letters, digits, '_'; not starting with a digit), e.g. my_study.py")
    if name in PROJECT_PACKAGES or name in sys.stdlib_module_names:
        raise ConfigError(f"user module {p.name!r} would shadow the module {name!r} (of this project or Python's "
                          "standard library); rename the file")
    _check_not_shadowing(name, p)
    source = p.read_bytes()
    sha = sha256_bytes(source)
    if expect_sha is not None and sha != expect_sha:
        raise changed_error(ModuleRef(name, expect_sha, str(p)), sha)
    ref = ModuleRef(name, sha, str(p), FILE)
    if LOADED.get(name) == ref and name in sys.modules:
        return sys.modules[name], ref
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    _run(module, ref, source)
    return module, ref


def _check_not_shadowing(name: str, path: Path) -> None:
    """A module of that name importable from elsewhere (installed, on sys.path) would be the one
    Ray workers import, and pickles would resolve to it: refuse rather than mix the two."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        where = getattr(loaded, "__file__", None)
        if where is None or Path(where).resolve() != path:
            raise ConfigError(f"user module {path.name!r}: a module named {name!r} is already imported from "
                              f"{where or 'a built-in'}; rename the file")
        return
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen") \
            and Path(spec.origin).resolve() != path:
        raise ConfigError(f"user module {path.name!r}: a module named {name!r} is already importable from "
                          f"{spec.origin}; rename the file")


def load_installed(name: str, expect_sha: str | None = None) -> tuple[ModuleType, ModuleRef]:
    """Import the installed module `name` (a package's entry point, `acme.studies`).

    Raises:
        ConfigError: it cannot be imported, raised while it ran, or `expect_sha` differs.
    """
    if name.split(".")[0] in PROJECT_PACKAGES:
        raise ConfigError(f"{name!r} is part of this project, not a user module")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"user module {name!r} cannot be imported: {exc}") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ConfigError(f"user module {name!r} is not importable here (no such module on sys.path; "
                          "pass a file as FILE.py:NAME, or install the package that provides it)")
    source = Path(spec.origin).read_bytes()
    sha = sha256_bytes(source)
    if expect_sha is not None and sha != expect_sha:
        raise changed_error(ModuleRef(name, expect_sha, spec.origin, PACKAGE), sha)
    ref = ModuleRef(name, sha, spec.origin, PACKAGE)
    if LOADED.get(name) == ref and name in sys.modules:
        return sys.modules[name], ref
    if "." in name:
        importlib.import_module(name.rpartition(".")[0])  # the parent package first, as `import` would
    module = importlib.util.module_from_spec(spec)
    _run(module, ref, source)
    return module, ref


def _run(module: ModuleType, ref: ModuleRef, source: bytes) -> None:
    """Execute `source` (the hashed bytes) as `module`, its registrations tagged with ref.origin; on failure nothing stays."""
    previous = sys.modules.get(ref.name)
    registry.forget(ref.origin)
    LOADED.pop(ref.name, None)
    sys.modules[ref.name] = module
    try:
        with registry.loading(ref.origin):
            exec(compile(source, module.__file__, "exec"), module.__dict__)
            for hook in _AFTER_LOAD:
                hook(module, ref.origin)
    except BaseException as exc:
        registry.forget(ref.origin)
        if previous is not None:
            sys.modules[ref.name] = previous
        else:
            sys.modules.pop(ref.name, None)
        if isinstance(exc, ConfigError):
            raise
        if not isinstance(exc, Exception):
            raise
        raise ConfigError(f"user module {ref.origin} failed to load{_where(exc, module.__file__)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    LOADED[ref.name] = ref


def _where(exc: BaseException, path: str | None) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    return f" (line {lines[-1]})" if lines else ""


def changed_error(ref: ModuleRef, now: str) -> ConfigError:
    return ConfigError(f"user module {ref.origin} ({ref.path or ref.name}) changed since the sweep recorded it "
                       f"(sha256 {ref.sha256[:12]} recorded, {now[:12]} now): its trials would not run the code "
                       "the sweep recorded. Put the recorded source back (saved with the sweep: "
                       "<storage>/<sweep>/user_modules/ and the parent run's artifacts) or start a new sweep")


def ensure(refs: tuple[ModuleRef, ...] | list[ModuleRef]) -> None:
    """In a trial, before anything is built: every module of the sweep loaded, with its recorded hash.

    A ref with a path (a local Ray: the driver's machine) is read from that path; one without
    (a cluster) is imported by name from what Ray shipped (`py_modules`) or from the installed
    package.

    Raises:
        ConfigError: a module is missing here, or its source differs from the recorded one.
    """
    for ref in refs:
        if LOADED.get(ref.name, None) is not None and LOADED[ref.name].sha256 == ref.sha256 \
                and ref.name in sys.modules:
            continue
        if ref.kind == FILE:
            path = ref.path or _shipped_path(ref)
            load_file(path, expect_sha=ref.sha256)
        else:
            load_installed(ref.name, expect_sha=ref.sha256)


def _shipped_path(ref: ModuleRef) -> str:
    try:
        spec = importlib.util.find_spec(ref.name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ConfigError(f"user module {ref.origin} is not importable on this worker: it travels in Ray's "
                          "runtime environment (py_modules) when `sweep run --address` starts the sweep; "
                          f"sys.path here: {sys.path[:6]}")
    return spec.origin


def recorded_changes(tag: str | None) -> list[str]:
    """Notes for a report: each user module recorded in a sweep's `user_modules` tag (JSON) whose
    file changed or is gone since the sweep ran."""
    import json

    if not tag:
        return []
    try:
        refs = [ModuleRef.from_dict(d) for d in json.loads(tag)]
    except (ValueError, TypeError, ConfigError):
        return ["the sweep's user_modules tag is not readable"]
    notes = []
    for ref in refs:
        if ref.kind != FILE:
            continue
        path = Path(ref.path)
        if not path.is_file():
            notes.append(f"user module {ref.origin} ({ref.path}) is gone since this sweep ran; its recorded source "
                         "is in the parent run's artifacts")
        elif file_sha256(path) != ref.sha256:
            notes.append(f"user module {ref.origin} ({ref.path}) changed since this sweep ran (sha256 "
                         f"{ref.sha256[:12]} then, {file_sha256(path)[:12]} now); this report uses the declaration "
                         "recorded with the sweep")
    return notes
