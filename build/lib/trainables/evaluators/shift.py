"""Shift robustness (SPEC 3.6): accuracy and true-class confidence as held-out images are translated.

Images are translated in [0, 1] pixel space with zero (black) fill, then go through the
bundle's own normalisation (the fix of SPEC 2.6), so every model sees its training statistics.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from core.config_base import ConfigBase, check
from trainables.data.bundle import DataBundle
from core.errors import ConfigError
from trainables.evaluators import EvalOutput  # defined before __init__ imports this module

DIRECTIONS = {"right": (1, 0), "down": (0, 1), "diagonal": (1, 1)}
CAT_SHIFTS = ((0, 0), (2, 0), (4, 0), (6, 0), (0, 2), (0, 4), (2, 2), (4, 4))
# Single-image probes of the sources: the CIFAR cat (LAB) and MNIST test image 0 moved 5 px right.
PROBES = {"cifar10": {"label": 3, "min_confidence": 60.0, "shifts": CAT_SHIFTS},
          "mnist": {"index": 0, "shifts": ((0, 0), (5, 0))}}


@dataclass(frozen=True)
class ShiftConfig(ConfigBase):
    """Trial-config keys of the shift_robustness evaluator.

    Attributes:
        shift_eval_images: first N held-out images used for the accuracy/confidence curve.
        shift_max / shift_step: shifts 0, step, ..., shift_max pixels.
        shift_direction: "right" (+dx), "down" (+dy) or "diagonal" (both).
        shift_probe_candidates: first N images of the probe class kept in the probe table, so the
            report can pick the first cat that every model classifies confidently (SPEC 3.6).
        eval_batch_size: forward batch.
    """

    shift_eval_images: int = 1000
    shift_max: int = 8
    shift_step: int = 1
    shift_direction: str = "right"
    shift_probe_candidates: int = 100
    eval_batch_size: int = 256

    def __post_init__(self):
        super().__post_init__()
        for key in ("shift_eval_images", "shift_step", "shift_probe_candidates", "eval_batch_size"):
            check(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        check(self.shift_max >= 0, f"shift_max must be >= 0, got {self.shift_max}")
        check(self.shift_direction in DIRECTIONS,
              f"shift_direction={self.shift_direction!r} not allowed; use one of {tuple(DIRECTIONS)}")


def translate(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Move the content of (N, C, H, W) images dx px right and dy px down; zero fill, content pushed out is lost."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Stored images -> float in [0, 1] pixel space (uint8 / 255; float images are already there)."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def _predict(model, bundle: DataBundle, x01: torch.Tensor, batch: int) -> torch.Tensor:
    """Softmax probabilities of [0, 1] images, normalised the way the bundle's training batches are."""
    out = [F.softmax(model(bundle.prepare(x01[i:i + batch])).float(), dim=1)
           for i in range(0, len(x01), batch)]
    return torch.cat(out)


def _probe_table(model, bundle: DataBundle, c: ShiftConfig, device) -> dict[str, Any]:
    """SPEC 3.6 single-image probe: per candidate and shift, cosine similarity, top-1 class, confidence."""
    dataset = bundle.meta.get("dataset")
    proto = PROBES[dataset]
    if "label" in proto:
        idx = (bundle.y_val == proto["label"]).nonzero().flatten()[: c.shift_probe_candidates].tolist()
    else:
        idx = [proto["index"]] if len(bundle.y_val) > proto["index"] else []
    rows, chosen, first_correct = [], None, None
    if idx:
        x01 = to_unit(bundle.x_val[idx].to(device))
        shifted = {s: translate(x01, *s) for s in proto["shifts"]}
        probs = {s: _predict(model, bundle, v, c.eval_batch_size) for s, v in shifted.items()}
        for j, i in enumerate(idx):
            label = int(bundle.y_val[i])
            table = []
            for s in proto["shifts"]:
                cos = F.cosine_similarity(x01[j].flatten(), shifted[s][j].flatten(), dim=0)
                conf, pred = probs[s][j].max(0)
                table.append({"dx": s[0], "dy": s[1], "cosine": float(cos), "pred": int(pred),
                              "confidence": 100.0 * float(conf)})
            base = table[0]
            if chosen is None and base["pred"] == label and base["confidence"] > proto.get("min_confidence", -1):
                chosen = i
            if first_correct is None and base["pred"] == label:
                first_correct = i
            rows.append({"index": i, "label": label, "shifts": table})
    pick = chosen if chosen is not None else first_correct if first_correct is not None else (idx or [None])[0]
    return {"dataset": dataset, "eval_split": bundle.eval_split, "class_names": bundle.class_names,
            "rule": proto | {"shifts": [list(s) for s in proto["shifts"]]}, "chosen_index": pick,
            "candidates": rows}


def shift_robustness(model, bundle: DataBundle, cfg: Mapping[str, Any], device) -> EvalOutput:
    """Accuracy, true-class confidence and input cosine similarity vs shift, plus the SPEC probe table.

    Returns:
        EvalOutput with histories shift_acc, shift_confidence, shift_cosine (step = shift in px),
        metrics shift_acc_at_max, shift_acc_drop, shift_confidence_drop, and artifacts
        shift_curve.json and shift_probes.json.

    Raises:
        ConfigError: bad evaluator keys, or a dataset that is not a CIFAR-10/MNIST image bundle.
    """
    c = ShiftConfig.from_config(cfg)
    if bundle.task != "classification" or bundle.meta.get("dataset") not in PROBES:
        raise ConfigError(f"evaluator 'shift_robustness' needs an image classification dataset "
                          f"({sorted(PROBES)}), got {bundle.meta.get('dataset')!r}")
    was_training = model.training
    model.eval()
    x01 = to_unit(bundle.x_val[: c.shift_eval_images].to(device))
    y = bundle.y_val[: c.shift_eval_images].to(device)
    ux, uy = DIRECTIONS[c.shift_direction]
    curve = []
    for s in range(0, c.shift_max + 1, c.shift_step):
        shifted = translate(x01, ux * s, uy * s)
        probs = _predict(model, bundle, shifted, c.eval_batch_size)
        acc = float((probs.argmax(1) == y).float().mean())
        conf = float(probs.gather(1, y[:, None]).mean())
        cos = float(F.cosine_similarity(x01.flatten(1), shifted.flatten(1), dim=1).nan_to_num(0.0).mean())
        curve.append({"shift": s, "acc": acc, "confidence": conf, "cosine": cos})
    probes = _probe_table(model, bundle, c, device)
    model.train(was_training)
    first, last = curve[0], curve[-1]
    return EvalOutput(
        metrics={"shift_acc_at_max": last["acc"], "shift_acc_drop": first["acc"] - last["acc"],
                 "shift_confidence_drop": first["confidence"] - last["confidence"]},
        histories={"shift_acc": [(r["shift"], r["acc"]) for r in curve],
                   "shift_confidence": [(r["shift"], r["confidence"]) for r in curve],
                   "shift_cosine": [(r["shift"], r["cosine"]) for r in curve]},
        artifacts={"shift_curve.json": json.dumps({"direction": c.shift_direction, "images": len(y),
                                                   "curve": curve}, indent=1),
                   "shift_probes.json": json.dumps(probes, indent=1)})
