"""What a trial stores besides metrics: arrays and JSON only (store schema `ART_*` names).

No figure is drawn in a trial (no matplotlib import, no PNG rendering time per trial):
`sweep report` draws curves, confusion matrices, kernel grids and the sample grid from these.
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core import store_schema as S
from trainables.data.bundle import DataBundle
from trainables.tracking import redact

SAMPLES_PER_CLASS = 10  # the report's sample grid shows this many images per class


def npy(array: np.ndarray) -> bytes:
    """`array` in NumPy's .npy format."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def sample_inputs(bundle: DataBundle, per_class: int = SAMPLES_PER_CLASS) -> bytes | None:
    """The first `per_class` training inputs of each class as a compressed .npz, or None.

    Keys: x (N, C, H, W, as stored: uint8 or float), y (N,), class_names, and unpermutation
    (the inverse pixel permutation) when the data is pixel-permuted. None when the inputs are
    not images (cached features) or there are no classes (regression).
    """
    x_all = bundle.x_train
    if x_all.ndim != 4 or bundle.task != "classification":
        return None
    y_all = bundle.y_train.detach().cpu().numpy().astype(np.int64)
    idx = np.concatenate([np.flatnonzero(y_all == c)[:per_class] for c in np.unique(y_all)])
    x = x_all[torch.as_tensor(idx, device=x_all.device)].detach().cpu().numpy()
    names = list(bundle.class_names) or [str(i) for i in range(int(y_all.max()) + 1)]
    arrays: dict[str, Any] = {"x": x, "y": y_all[idx], "class_names": np.asarray(names, dtype=str)}
    unperm = bundle.meta.get("unpermutation")
    if unperm is not None:
        arrays["unpermutation"] = np.asarray(unperm)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def trial_artifacts(config: dict[str, Any], history: Sequence[dict[str, float]], bundle: DataBundle,
                    confusion: list | None, initial_kernels: np.ndarray | None,
                    final_kernels: np.ndarray | None) -> dict[str, bytes | str]:
    """The artifacts of a finished trial: config, per-epoch history, confusion matrix, first-layer
    kernels before/after training, and example inputs (path -> content)."""
    art: dict[str, bytes | str] = {
        S.ART_CONFIG: json.dumps(redact(config), indent=2, default=str, sort_keys=True),
        S.ART_HISTORY: json.dumps({k: [row[k] for row in history] for k in history[0]}),
    }
    if confusion is not None:
        labels = bundle.class_names or [str(i) for i in range(bundle.num_classes)]
        art[S.ART_CONFUSION] = json.dumps({"labels": labels, "matrix": confusion})
    if initial_kernels is not None and final_kernels is not None:
        art[S.ART_KERNELS_INITIAL] = npy(initial_kernels)
        art[S.ART_KERNELS_FINAL] = npy(final_kernels)
    samples = sample_inputs(bundle)
    if samples is not None:
        art[S.ART_SAMPLES] = samples
    return art
