"""Training and validation curves: mean, 95% band and each seed's curve, per cell."""
from __future__ import annotations

from analysis.plots.common import Figures, draw_seeds, other_keys, series_colour, series_groups, stats_by
from analysis.style import cell_label, clip_percent, new_figure, scale, slug
from analysis.sweep_data import SweepData
from core.figures import format_curve_axes, plot_curve

PANELS = (("train", "loss"), ("val", "loss"), ("train", "acc"), ("val", "acc"))


def curves(data: SweepData) -> Figures:
    """One figure per cell (all swept values except the series): train/val loss and accuracy.

    Each series (model) is a line through the per-epoch mean with a band for the 95% interval over
    its completed seeds (bounded percentile bootstrap for accuracies, never past 0-100%; t-interval
    for losses) and a thin line per seed. Figures are named curves_<cell>.
    """
    keys = [f"{split}_{kind}" for split, kind in PANELS]
    hist = data.history[data.history["key"].isin(keys)]
    if hist.empty:
        return {}
    cols = ["run_id"] + [k for k in data.cell_keys if k in data.runs]
    frame = hist.merge(data.completed[cols], on="run_id", how="inner")
    if frame.empty:
        return {}
    figures: Figures = {}
    outer = other_keys(data, "series")
    groups = list(series_groups(frame, outer)) if outer else [("", {}, frame)]
    for _, cell, rows in groups:
        cell = {k: v for k, v in cell.items() if k != "series"}
        fig = new_figure(11, 7.5)
        axes = fig.subplots(2, 2)
        for (split, kind), ax in zip(PANELS, [axes[0, 0], axes[1, 0], axes[0, 1], axes[1, 1]]):
            key = f"{split}_{kind}"
            sub = rows[rows["key"] == key]
            for label, scell, g in series_groups(sub, ["series"]):
                s = stats_by(g, "step", "value", scale(key), key)
                band = s["low"].notna().any()
                draw_seeds(ax, g, "step", "value", scale(key), series_colour(scell), lines=True)
                plot_curve(ax, s["step"], s["mean"], label=f"{label} (n={g['run_id'].nunique()})",
                           color=series_colour(scell), low=s["low"] if band else None,
                           high=s["high"] if band else None)
            ax.set_title(f"{'training' if split == 'train' else 'validation'} {kind}", fontsize=10)
        clip_percent(axes[0, 1])
        clip_percent(axes[1, 1])
        format_curve_axes(axes[0, 0], axes[0, 1])
        format_curve_axes(axes[1, 0], axes[1, 1])
        label = cell_label(cell)
        fig.suptitle(f"{data.name}: curves, {label} (mean, 95% interval and each seed)", fontsize=11)
        figures["curves" if not cell else f"curves_{slug(label)}"] = fig
    return figures
