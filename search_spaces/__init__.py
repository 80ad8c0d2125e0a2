"""Named experiments: one explicit dict, filled from the per-family lists below."""
from __future__ import annotations

from search_spaces.domains import Choice, LogUniform, RandInt, Uniform
from search_spaces.edge import EDGE_EXPERIMENTS
from search_spaces.experiment import Experiment, Hypothesis, Search
from search_spaces.hpo import HPO_EXPERIMENTS
from search_spaces.images import IMAGE_EXPERIMENTS
from core.errors import UnknownName

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [*EDGE_EXPERIMENTS, *IMAGE_EXPERIMENTS, *HPO_EXPERIMENTS]}


def get_experiment(name: str) -> Experiment:
    """Look up an experiment by name; raises UnknownName with close matches."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownName("experiment", name, EXPERIMENTS) from None


__all__ = ["EXPERIMENTS", "Choice", "Experiment", "Hypothesis", "LogUniform", "RandInt", "Search", "Uniform",
           "get_experiment"]
