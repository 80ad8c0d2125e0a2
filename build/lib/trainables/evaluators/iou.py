"""IoU of predicted boxes on the four localisation probes, original vs shifted 16 px (SPEC 3.5, 3.6)."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from trainables.data.bundle import DataBundle
from core.errors import ConfigError
from trainables.evaluators import EvalOutput  # defined before __init__ imports this module

CANVAS = 64


def box_iou(pred: Sequence[float], gt: Sequence[float]) -> float:
    """IoU of two normalised (cx, cy, w, h) boxes, computed in pixels of the 64-px canvas (SPEC 3.5)."""
    def corners(b):
        cx, cy, w, h = (float(v) for v in b)
        return ((cx - w / 2) * CANVAS, (cy - h / 2) * CANVAS, (cx + w / 2) * CANVAS, (cy + h / 2) * CANVAS)

    px1, py1, px2, py2 = corners(pred)
    gx1, gy1, gx2, gy2 = corners(gt)
    inter = max(0.0, min(px2, gx2) - max(px1, gx1)) * max(0.0, min(py2, gy2) - max(py1, gy1))
    union = (px2 - px1) * (py2 - py1) + (gx2 - gx1) * (gy2 - gy1) - inter
    return inter / union if union > 0 else 0.0


@torch.no_grad()
def iou_probes(model, bundle: DataBundle, cfg: Mapping[str, Any], device) -> EvalOutput:
    """Mean IoU over the 4 probes, original and shifted; one image at a time in eval mode, as the source.

    Returns:
        EvalOutput with metrics iou_original, iou_shifted, iou_drop and the artifact iou_probes.json
        (per probe: position, predicted and ground-truth boxes, IoU).

    Raises:
        ConfigError: the bundle carries no probes (not the localisation dataset).
    """
    needed = ("probes", "probes_shifted", "boxes", "boxes_shifted")
    if any(k not in bundle.meta for k in needed):
        raise ConfigError(f"evaluator 'iou_probes' needs the localization dataset (meta {needed}), "
                          f"got {bundle.meta.get('dataset')!r}")
    was_training = model.training
    model.eval()
    report, means = {"probe_ground_truth": bundle.meta.get("probe_ground_truth"), "probes": []}, {}
    positions = bundle.meta.get("probe_positions") or [None] * len(bundle.meta["probes"])
    for kind, images, boxes in (("original", bundle.meta["probes"], bundle.meta["boxes"]),
                                ("shifted", bundle.meta["probes_shifted"], bundle.meta["boxes_shifted"])):
        ious = []
        for i, (img, gt) in enumerate(zip(images, boxes)):
            pred = model(bundle.prepare(img[None].to(device)))[0].float().cpu()
            iou = box_iou(pred.tolist(), gt.tolist())
            ious.append(iou)
            report["probes"].append({"probe": i, "kind": kind, "position": positions[i],
                                     "pred": [round(v, 6) for v in pred.tolist()],
                                     "gt": [round(v, 6) for v in gt.tolist()], "iou": iou})
        means[kind] = sum(ious) / len(ious)
    model.train(was_training)
    return EvalOutput(
        metrics={"iou_original": means["original"], "iou_shifted": means["shifted"],
                 "iou_drop": means["original"] - means["shifted"]},
        artifacts={"iou_probes.json": json.dumps(report, indent=1)})
