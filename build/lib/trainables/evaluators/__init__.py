"""Post-training evaluations a trial can run (shift robustness, IoU on probes).

Each evaluator is `fn(model, bundle, cfg, device) -> EvalOutput`; `cfg` is the flat trial
config. Histories are logged to MLflow as metrics with `step` = the swept quantity (e.g. shift
in pixels), so the analysis package can plot them across seeds.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import UnknownName


@dataclass
class EvalOutput:
    """What an evaluator returns.

    Attributes:
        metrics: final scalar metrics, e.g. {"iou_original": 0.71}.
        histories: metric name -> [(step, value), ...], e.g. {"shift_acc": [(0, .9), (2, .8)]}.
        artifacts: file name -> bytes or str content, written under the run's artifacts.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: dict[str, bytes | str] = field(default_factory=dict)


# Imported here, after EvalOutput exists, because the evaluator modules import it from this package.
from trainables.evaluators.iou import iou_probes  # noqa: E402
from trainables.evaluators.shift import ShiftConfig, shift_robustness  # noqa: E402

EVALUATORS: dict[str, Callable[..., EvalOutput]] = {
    "shift_robustness": shift_robustness,  # SPEC 3.6: accuracy/confidence vs pixel shift
    "iou_probes": iou_probes,  # SPEC 3.5: IoU on the 4 localisation probes, original vs shifted
}
# Config dataclasses of the evaluators' own trial-config keys (validated before a trial runs).
EVALUATOR_CONFIGS: dict[str, type] = {"shift_robustness": ShiftConfig}


def get_evaluator(name: str) -> Callable[..., EvalOutput]:
    try:
        return EVALUATORS[name]
    except KeyError:
        raise UnknownName("evaluator", name, EVALUATORS) from None
