"""User code in a sweep: `FILE.py:NAME` / `MODULE:NAME` targets, entry-point plugins, what travels
to the workers and what is recorded with the sweep (core.user_modules does the loading).

- A target names an experiment: a registered name ("edge-data-per-class", or one an installed
  package offers through the entry-point group `inductive_sweeps`), "my_study.py:NAME" (NAME a
  module-level variable holding an Experiment, or an Experiment's name) or "acme.studies:NAME".
- The sweep records every user module it loaded: sweep.json `user_modules`, the parent run's tag
  `user_modules` (name, sha256, path) and the source as the artifact `sweep/user_modules/<file>`,
  plus a copy in `<storage>/<sweep>/user_modules/`. `sweep resume` and `sweep confirm` load them
  again and refuse a module whose file changed; `sweep report` says so when the file changed since
  the sweep ran.
- With `--address`, the user's files travel to the workers in Ray's runtime environment
  (`py_modules`); the trials import them by name and check the hash (a local Ray reads the
  driver's path, with the same check).
"""
from __future__ import annotations

import json
from pathlib import Path

from core import registry, user_modules
from core import store_schema as S
from core.errors import ConfigError
from core.user_modules import FILE, ModuleRef
from search_spaces import EXPERIMENTS, get_experiment, module_experiments
from search_spaces.experiment import Experiment

ENTRY_POINT_GROUP = "inductive_sweeps"
TAG_USER_MODULES = S.TAG_USER_MODULES
ART_USER_MODULES = S.ART_USER_MODULES
FOLDER = "user_modules"
_PLUGINS_LOADED: list[bool] = []


def load_plugins() -> list[ModuleRef]:
    """Import every module installed packages declare in the entry-point group `inductive_sweeps`
    (`[project.entry-points.inductive_sweeps] acme = "acme.studies"`), once per process."""
    from importlib.metadata import entry_points

    refs = []
    if _PLUGINS_LOADED:
        return [r for r in user_modules.loaded_refs() if r.kind != FILE]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            refs.append(user_modules.load_installed(ep.module)[1])
        except ConfigError as exc:
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP}: {exc}") from None
    _PLUGINS_LOADED.append(True)
    return refs


def experiment_name(target: str | Experiment) -> str:
    """The registered experiment `target` names, loading its module first when it names one.

    Raises:
        ConfigError: the module cannot be loaded, or names no such experiment (its experiments
            are listed); UnknownName for an unknown registered name (close matches suggested).
    """
    if isinstance(target, Experiment):
        if EXPERIMENTS.get(target.name) is not target:
            from search_spaces import _register

            _register(target, _caller())
        return target.name
    parsed = user_modules.parse_target(target)
    if parsed is None:
        if target not in EXPERIMENTS:
            load_plugins()
        return get_experiment(target).name
    module_name, attr = parsed
    module, ref = user_modules.load(module_name)
    found = module_experiments(module)
    if attr is None:
        raise ConfigError(f"{target!r} names a module; add :NAME for one of its experiments "
                          f"({', '.join(found) or 'it defines none'}), or run them all with `sweep study {target}`")
    exp = found.get(attr) or next((e for e in found.values() if e.name == attr), None)
    if exp is None:
        listed = ", ".join(f"{k} ({e.name})" for k, e in found.items()) or "none"
        raise ConfigError(f"{ref.origin} defines no experiment {attr!r} at module level; its experiments: {listed}")
    return exp.name


def _caller() -> str:
    """The module that called into the API (a notebook: `__main__`), for the origin of an
    Experiment object passed to `api.run`."""
    import sys

    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("cluster", "search_spaces"):
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "__main__")) if frame is not None else "__main__"


def module_study(target: str):
    """The Study `sweep study FILE.py` runs: a Study the module defines (FILE.py:NAME), or every
    experiment it holds at module level, in order, as the study named after the module."""
    from search_spaces.studies import Study, get_study, register_study

    parsed = user_modules.parse_target(target)
    if parsed is None:
        from search_spaces.studies import STUDIES

        if target not in STUDIES:
            load_plugins()
        return get_study(target)
    module_name, attr = parsed
    module, ref = user_modules.load(module_name)
    if attr is not None:
        studies = {k: v for k, v in vars(module).items() if isinstance(v, Study)}
        study = studies.get(attr) or next((s for s in studies.values() if s.name == attr), None)
        if study is None:
            raise ConfigError(f"{ref.origin} defines no study {attr!r}; its studies: {', '.join(studies) or 'none'} "
                              f"(`sweep study {module_name}` runs all its experiments)")
        return study
    found = module_experiments(module)
    if not found:
        raise ConfigError(f"{ref.origin} defines no experiment at module level")
    stem = ref.name.rpartition(".")[2]
    return register_study(Study(stem, f"the experiments of {ref.origin}",
                                tuple(e.name for e in found.values())), ref.origin)


def sweep_refs(experiment: Experiment) -> list[ModuleRef]:
    """The user modules a sweep of `experiment` needs in its trials: every one loaded here.

    Raises:
        ConfigError: a pairing, model or dataset of the experiment was registered from the
            notebook or script itself (`__main__`), which Ray workers cannot import.
    """
    from trainables.pairings import get_pairing

    loaded = {r.origin for r in user_modules.loaded_refs()}
    for name in experiment.pairings:
        p = get_pairing(name)
        for kind, key in (("model", p.model), ("dataset", p.dataset), ("pairing", name)):
            origin = registry.origin_of(kind, key)
            if origin != registry.BUILTIN and origin not in loaded:
                raise ConfigError(f"{kind} {key!r} was registered from {origin}, not from a module file: Ray's workers "
                                  "cannot import it. Put it in a .py file and load that (`api.use('my_models.py')`, "
                                  "or `sweep run my_models.py:EXPERIMENT`)")
    return user_modules.loaded_refs()


def ship_paths(refs: list[ModuleRef]) -> list[str]:
    """The files a cluster's workers get in Ray's `py_modules` (installed packages are not shipped)."""
    return [r.path for r in refs if r.kind == FILE and r.path]


def recorded_refs(record) -> list[ModuleRef]:
    """The user modules a sweep record (cluster.folder.record.SweepRecord, or sweep.json's dict) holds."""
    data = record if isinstance(record, dict) else {**record.extra, "name": record.name}
    return [ModuleRef.from_dict(d) for d in data.get(TAG_USER_MODULES) or ()]


def worker_refs(record) -> tuple[ModuleRef, ...]:
    """The refs a trial gets: on a cluster without the driver's path (imported by name from what Ray shipped)."""
    options = record.get("options", {}) if isinstance(record, dict) else record.options
    remote = bool(options.get("address"))
    return tuple(r.for_cluster() if remote else r for r in recorded_refs(record))


def record(client, parent_run_id: str, refs: list[ModuleRef], folder: Path | None) -> None:
    """Tag, artifact and sweep-folder copy of each user module's source (the bytes that ran)."""
    if not refs:
        return
    client.set_tag(parent_run_id, TAG_USER_MODULES, json.dumps([r.to_dict() for r in refs]))
    for ref in refs:
        source = _source(ref)
        if source is None:
            continue
        client.log_text(parent_run_id, source, f"{ART_USER_MODULES}/{Path(ref.path).name}")
        if folder is not None:
            (folder / FOLDER).mkdir(exist_ok=True)
            (folder / FOLDER / Path(ref.path).name).write_text(source)


def _source(ref: ModuleRef) -> str | None:
    try:
        data = Path(ref.path).read_bytes()
    except OSError:
        return None
    if user_modules.sha256_bytes(data) != ref.sha256:
        raise user_modules.changed_error(ref, user_modules.sha256_bytes(data))
    return data.decode("utf-8", errors="replace")


def reload_recorded(record, parent_tags: dict | None = None) -> list[ModuleRef]:
    """Before `sweep resume` starts Ray: load each recorded module again, refusing one whose
    source changed (the resumed trials would run other code than the record says), and a
    sweep.json whose modules are not the ones the parent run recorded."""
    refs = recorded_refs(record)
    name = record.get("name") if isinstance(record, dict) else record.name
    if parent_tags is not None and tagged_refs(parent_tags, name) != refs:
        raise ConfigError(f"sweep {name}: the user modules in sweep.json are not the ones its MLflow "
                          f"parent run recorded (tag {TAG_USER_MODULES}); the sweep folder was changed, so it is "
                          "not resumed")
    return _load_again(refs, name)


def tagged_refs(parent_tags: dict, name: str) -> list[ModuleRef]:
    """The user modules a sweep's parent run recorded (its tag `user_modules`; none for built-ins only).

    Raises:
        ConfigError: the tag is not the list the driver writes.
    """
    try:
        return [ModuleRef.from_dict(d) for d in json.loads(parent_tags.get(TAG_USER_MODULES) or "[]")]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError(f"sweep {name}: its parent run's tag {TAG_USER_MODULES} is not a list of modules "
                          "(name, sha256, path); the record was changed") from None


def reload_tagged(parent_tags: dict, name: str) -> list[ModuleRef]:
    """Before `sweep confirm` plans its rerun: load the user modules the search recorded on its
    parent run (hash-checked), so its experiment, pairings and models are the ones that ran."""
    return _load_again(tagged_refs(parent_tags, name), name)


def _load_again(refs: list[ModuleRef], name: str) -> list[ModuleRef]:
    """Load each recorded module, refusing one that is gone or whose source changed."""
    for ref in refs:
        if ref.kind == FILE:
            if not Path(ref.path).is_file():
                raise ConfigError(f"sweep {name}: its user module {ref.path} is gone; put it back "
                                  f"(the recorded source is in {FOLDER}/ of the sweep folder and in the parent "
                                  f"run's artifacts {ART_USER_MODULES}/)")
            user_modules.load_file(ref.path, expect_sha=ref.sha256)
        else:
            user_modules.load_installed(ref.name, expect_sha=ref.sha256)
    return refs
