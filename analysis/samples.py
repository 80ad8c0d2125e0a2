"""Dataset images for the report's sample grid (data only: no model is built)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analysis.sweep_data import SampleImages

PER_CLASS = 10
# Only these keys of a run's config are changed: a small training set is enough to show.
SMALL = {"edges": {"data_per_class": PER_CLASS}}


def _display(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 or float -> (N, H, W) grey or (N, H, W, 3) RGB in [0, 1]."""
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else np.clip(x.astype(np.float32), 0, 1)
    if x.shape[1] == 1:
        return x[:, 0]
    return np.moveaxis(x[:, :3], 1, -1)


def sample_images(dataset: str, cfg: Mapping[str, Any], per_class: int = PER_CLASS) -> SampleImages | None:
    """Build the first `per_class` training images of each class for the sample grid.

    Args:
        dataset: a trainables.data.DATASETS key (e.g. "edges").
        cfg: a trial's config (its dataset keys are used; the training size is shrunk).
        per_class: images per class.

    Returns:
        SampleImages (with the un-permuted view when the data is pixel-permuted), or None when
        the dataset has no images (cached features) or no class labels (regression).
    """
    from trainables.data import build_data

    bundle = build_data(dataset, {**dict(cfg), **SMALL.get(dataset, {})})
    x = bundle.x_train.detach().cpu().numpy()
    if x.ndim != 4 or bundle.task != "classification":
        return None
    y = bundle.y_train.detach().cpu().numpy().astype(int)
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])
    x, y = x[idx], y[idx]
    unperm = bundle.meta.get("unpermutation")
    restored = None
    if unperm is not None:
        n, c, h, w = x.shape
        restored = _display(x.reshape(n, c, h * w)[:, :, np.asarray(unperm)].reshape(n, c, h, w))
    names = list(bundle.class_names) or [str(i) for i in range(int(y.max()) + 1)]
    keys = [k for k in ("class_type", "possible_edge_location_ratio", "use_permutation")
            if k in cfg]
    title = f"{dataset} (" + ", ".join(f"{k}={cfg[k]}" for k in keys) + ")" if keys else dataset
    return SampleImages(images=_display(x), labels=y, class_names=names, unpermuted=restored, title=title)
