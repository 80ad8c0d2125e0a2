"""First-layer kernels, initial (random or edge-detector init) beside trained, per cell."""
from __future__ import annotations

import numpy as np

from analysis.plots.common import Figures, other_keys, series_groups
from analysis.style import cell_label, new_figure, slug
from analysis.sweep_data import SweepData
from core.figures import draw_kernels

MAX_ROWS = 8


def kernels(data: SweepData) -> Figures:
    """For each series, rows = cells (lowest seed of each), columns = initial | trained.

    Kernels cannot be averaged across seeds (filters are permutation-symmetric), so one
    representative seed is drawn. The initial column is titled with the run's `init`
    (e.g. "edge_detector") when the config has one.
    """
    if data.kernels.empty:
        return {}
    cols = ["run_id"] + [c for c in data.cell_keys + ["seed", "init"] if c in data.runs]
    frame = data.kernels.merge(data.runs[list(dict.fromkeys(cols))], on="run_id", how="inner")
    figures: Figures = {}
    for series, s_cell, rows in series_groups(frame, ["series"]):
        cells = list(series_groups(rows, other_keys(data, "series")))
        for start in range(0, len(cells), MAX_ROWS):
            chunk = cells[start:start + MAX_ROWS]
            height = sum(min(int(np.shape(g.iloc[0]["final"])[0]) // 8 + 1, 8) for _, _, g in chunk)
            fig = new_figure(8, 1.2 + 1.3 * height)
            axes = np.atleast_2d(fig.subplots(len(chunk), 2, squeeze=False))
            for (ax0, ax1), (_, cell, g) in zip(axes, chunk):
                g = g.sort_values("seed") if "seed" in g else g
                run = g.iloc[0]
                where = cell_label({k: v for k, v in cell.items() if k != "series"})
                seed = f", seed {run['seed']}" if "seed" in run and run["seed"] == run["seed"] else ""
                init = run.get("init")
                init = f"initial ({init})" if isinstance(init, str) else "initial (untrained)"
                draw_kernels(ax0, run["initial"], f"{init}\n{where}{seed}")
                draw_kernels(ax1, run["final"], f"trained\n{where}{seed}")
            suffix = "" if len(cells) <= MAX_ROWS else f"_{start // MAX_ROWS + 1}"
            fig.suptitle(f"{series}: conv1 kernels", fontsize=11)
            figures[f"kernels_{slug(series)}{suffix}"] = fig
    return figures
