"""Confusion matrices averaged over seeds, one panel per cell (SPEC 4.3 style)."""
from __future__ import annotations

import math

import numpy as np

from analysis.plots.common import Figures, series_groups
from analysis.style import cell_label, new_figure
from analysis.sweep_data import SweepData
from core.figures import draw_confusion

MAX_COLS = 4


def confusion(data: SweepData) -> Figures:
    """Mean confusion matrix over the completed seeds of each cell (counts with one decimal).

    Panels are ordered by series then the other swept keys, up to four per row.
    """
    if data.confusion.empty:
        return {}
    cols = ["run_id"] + [c for c in data.cell_keys if c in data.runs]
    frame = data.confusion.merge(data.completed[cols], on="run_id", how="inner")
    if frame.empty:
        return {}
    cells = []
    for label, cell, g in series_groups(frame, data.cell_keys):
        labels = list(g.iloc[0]["labels"])
        mats = [np.asarray(m, float) for m, lab in zip(g["matrix"], g["labels"]) if list(lab) == labels]
        cells.append((cell, labels, np.mean(mats, axis=0), len(mats)))
    n_series = len({str(c[0].get("series")) for c in cells})
    ncols = min(MAX_COLS, math.ceil(len(cells) / n_series))  # one row per model when it fits
    nrows = math.ceil(len(cells) / ncols)
    size = max(len(c[1]) for c in cells)
    fig = new_figure(ncols * (1.1 * size + 2.2), nrows * (1.1 * size + 2.0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (cell, labels, matrix, n) in zip(axes, cells):
        rest = cell_label({k: v for k, v in cell.items() if k != "series"})
        draw_confusion(ax, matrix, labels, f"{cell.get('series', '')}\n{rest} (mean of {n} seeds)")
    for ax in axes[len(cells):]:
        ax.axis("off")
    fig.suptitle(f"{data.name}: confusion matrices (rows true, columns predicted)", fontsize=11)
    return {"confusion": fig}
