"""Named experiments: one explicit dict, filled from the per-family lists below."""
from __future__ import annotations

from search_spaces.domains import Choice, LogUniform, RandInt, Uniform
from search_spaces.edge import EDGE_EXPERIMENTS
from search_spaces.experiment import Experiment, Hypothesis, Search
from search_spaces.hpo import HPO_EXPERIMENTS
from search_spaces.images import IMAGE_EXPERIMENTS
from core import registry, user_modules
from core.errors import ConfigError, UnknownName

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [*EDGE_EXPERIMENTS, *IMAGE_EXPERIMENTS, *HPO_EXPERIMENTS]}


registry.track("experiment", EXPERIMENTS)


def register_experiment(experiment: Experiment) -> Experiment:
    """Register an Experiment from user code (a module loaded by `sweep run FILE.py:NAME` registers
    the Experiments it holds at module level by itself). Its plot names are checked here; its
    pairings and keys when a sweep is planned, like a built-in's.

    Raises:
        ConfigError: not an Experiment, an unknown plot, or the name is taken (built-in or another
            module's experiment).
    """
    return _register(experiment, registry.current_origin())


def _register(experiment: Experiment, origin: str) -> Experiment:
    if not isinstance(experiment, Experiment):
        raise ConfigError(f"expected a search_spaces.Experiment from {origin}, got {type(experiment).__name__}")
    experiment.check_plots()
    registry.register("experiment", experiment.name, experiment, origin)
    return experiment


def module_experiments(module) -> dict[str, Experiment]:
    """attribute name -> Experiment, for the Experiments a module holds at module level (in order)."""
    return {k: v for k, v in vars(module).items() if isinstance(v, Experiment) and not k.startswith("_")}


def _register_module(module, origin: str) -> None:
    """After a user module ran: its module-level Experiments (and Studies) become registry entries."""
    from search_spaces.studies import Study, register_study

    seen: dict[str, str] = {}
    for attr, exp in module_experiments(module).items():
        if exp.name in seen and EXPERIMENTS.get(exp.name) is not exp:
            raise ConfigError(f"{origin}: {attr} and {seen[exp.name]} are two experiments named {exp.name!r}")
        seen[exp.name] = attr
        if registry.origin_of("experiment", exp.name) != origin or EXPERIMENTS.get(exp.name) is not exp:
            _register(exp, origin)
    for value in list(vars(module).values()):
        if isinstance(value, Study):
            register_study(value, origin)


user_modules.after_load(_register_module)


def get_experiment(name: str) -> Experiment:
    """Look up an experiment by name; raises UnknownName with close matches."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownName("experiment", name, EXPERIMENTS) from None


__all__ = ["EXPERIMENTS", "Choice", "Experiment", "Hypothesis", "LogUniform", "RandInt", "Search", "Uniform",
           "get_experiment", "module_experiments", "register_experiment"]
