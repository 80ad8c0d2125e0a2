"""Studies: named sets of experiments run as one resumable job (`sweep study NAME`).

Order matters: an experiment that compares with another (`compare_with`, `other_experiment`)
comes after it, so the study's report answers cross-experiment hypotheses from the study's own
sweeps. `offline` says whether the study runs without downloaded datasets or weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from search_spaces.edge import EDGE_EXPERIMENTS
from core import registry
from core.errors import ConfigError


@dataclass(frozen=True)
class Study:
    """A named, ordered set of experiment names.

    Attributes:
        name: id on the command line (`sweep study NAME`).
        description: one line for `sweep study --list`.
        experiments: experiment names in run order (compared-with experiments first).
        offline: True when every experiment runs on generated data (no downloads).
        origin: the source notebook(s) (SPEC 0 tags).
    """

    name: str
    description: str
    experiments: tuple[str, ...]
    offline: bool = True
    origin: str = ""

    def __post_init__(self):
        if not self.experiments:
            raise ConfigError(f"study {self.name!r} has no experiments")
        if len(set(self.experiments)) != len(self.experiments):
            raise ConfigError(f"study {self.name!r} lists an experiment twice")


STUDIES: dict[str, Study] = {s.name: s for s in [
    Study("edge", "the eleven edge-detection experiments (EDGE notebook; synthetic data)",
          tuple(e.name for e in EDGE_EXPERIMENTS), offline=True, origin="EDGE"),
    Study("lab-offline", "the LAB notebook's parts that need no download: box regression under shift and the "
          "MLP parameter explosion", ("object-localization", "mlp-param-explosion"), offline=True, origin="LAB"),
    Study("lab", "the LAB notebook: CIFAR-10 MLP vs CNN (with the BASE pairings), shift robustness, localisation, "
          "linear probes, parameter explosion (needs CIFAR-10, MNIST and backbone weights on disk)",
          ("cifar10-mlp-vs-cnn", "shift-robustness", "object-localization", "pretrained-linear-probe",
           "mlp-param-explosion"), offline=False, origin="LAB"),
    Study("base", "the BASE notebook: CIFAR-10 baseline MLP vs small CNN, 45k/5k split (needs CIFAR-10 on disk; "
          "the experiment also runs the LAB pairings)", ("cifar10-mlp-vs-cnn",), offline=False, origin="BASE"),
    Study("mnist", "the MNIST notebook: MLP vs LeNet-5 vs ResNet-18, and the shift test (needs MNIST and CIFAR-10 "
          "on disk)", ("mnist-mlp-lenet-resnet", "shift-robustness"), offline=False, origin="MNIST"),
    Study("param", "the PARAM notebook: small MLP vs three small ConvNets (needs CIFAR-10 on disk)",
          ("cifar10-param-efficiency",), offline=False, origin="PARAM"),
]}


registry.track("study", STUDIES)


def register_study(study: Study, origin: str | None = None) -> Study:
    """Register a Study from user code (a module's module-level Studies register themselves).

    Raises:
        ConfigError: the name is taken by a built-in study or another module's.
    """
    origin = origin or registry.current_origin()
    if registry.origin_of("study", study.name) != origin or STUDIES.get(study.name) is not study:
        registry.register("study", study.name, study, origin)
    return study


def get_study(name: str) -> Study:
    """Look up a study by name; raises UnknownName with close matches."""
    try:
        return STUDIES[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(str(name), sorted(STUDIES), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown study {name!r}.{hint} Known studies: {', '.join(sorted(STUDIES))}") from None


def check_studies() -> None:
    """Every study names known experiments, each after the experiments it compares with."""
    from search_spaces import get_experiment

    for study in STUDIES.values():
        seen: set[str] = set()
        for name in study.experiments:
            exp = get_experiment(name)
            needs = set(exp.compare_with) | {h.other_experiment for h in exp.hypotheses if h.other_experiment}
            late = sorted(n for n in needs & set(study.experiments) if n not in seen)
            if late:
                raise ConfigError(f"study {study.name!r}: {name!r} compares with {late}, which must come first")
            seen.add(name)
