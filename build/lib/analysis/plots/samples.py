"""Dataset sample grid: classes (rows) x 10 samples (columns), SPEC 4.3."""
from __future__ import annotations

import numpy as np

from analysis.plots.common import Figures
from analysis.style import new_figure
from analysis.sweep_data import SampleImages, SweepData

PER_CLASS = 10


def sample_grid(samples: SampleImages, images: np.ndarray, title: str):
    """Figure with one row per class ("Class: label") and up to 10 images each."""
    classes = sorted(set(int(c) for c in samples.labels))
    fig = new_figure(PER_CLASS * 1.0 + 0.5, 1.15 * len(classes) + 0.6)
    axes = np.atleast_2d(fig.subplots(len(classes), PER_CLASS, squeeze=False))
    for row, c in zip(axes, classes):
        idx = np.flatnonzero(samples.labels == c)[:PER_CLASS]
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(idx):
                img = np.asarray(images[idx[j]], float)
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                          interpolation="nearest")
        name = samples.class_names[c] if c < len(samples.class_names) else str(c)
        row[0].set_title(f"Class: {name}", fontsize=9, loc="left")
    fig.suptitle(title, fontsize=11)
    return fig


def samples(data: SweepData) -> Figures:
    """The sample grid; for permuted data also the same samples un-permuted."""
    s = data.samples
    if s is None or len(s.images) == 0:
        return {}
    if s.unpermuted is None:
        return {"samples": sample_grid(s, s.images, f"samples: {s.title}")}
    return {"samples": sample_grid(s, s.images, f"samples as the model sees them (permuted): {s.title}"),
            "samples_unpermuted": sample_grid(s, s.unpermuted, f"the same samples un-permuted: {s.title}")}
