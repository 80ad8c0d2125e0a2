"""Robustness to translation: accuracy/confidence vs pixel shift, IoU before and after a shift."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.aggregate import aggregate
from analysis.plots.common import (Figures, draw_mean_ci, draw_seeds, series_colour, series_groups, stats_by,
                                   table_figure)
from analysis.style import clip_percent, fmt_mean_ci, marker, new_figure, style_axes
from core import store_schema as S
from analysis.sweep_data import SweepData

SHIFT_KEYS = (("shift_acc", "accuracy (%)", 100.0), ("shift_confidence", "confidence (%)", 100.0))
IOU = ("iou_original", "iou_shifted")


def _has_iou(data: SweepData) -> bool:
    runs = data.completed
    return all(k in runs and runs[k].notna().any() for k in IOU)


def accuracy_vs_shift(data: SweepData) -> Figures:
    """Panels for whichever of shift accuracy, shift confidence and IoU were logged.

    Shift histories have step = shift in pixels; each series is drawn as its mean with the bounded
    95% bootstrap interval over seeds, and every seed's value as a point. IoU is drawn as original vs
    shifted bars with interval error bars and the seeds' values.
    """
    present = [(k, lab, f) for k, lab, f in SHIFT_KEYS if (data.history["key"] == k).any()]
    iou = _has_iou(data)
    if not present and not iou:
        return {}
    panels = len(present) + int(iou)
    fig = new_figure(6 * panels, 4.5)
    axes = np.atleast_1d(fig.subplots(1, panels))
    for ax, (key, label, factor) in zip(axes, present):
        frame = data.history_of(key)
        if S.TAG_STATUS_REASON in frame:
            frame = frame[frame[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED]
        for i, (name, cell, g) in enumerate(series_groups(frame, data.cell_keys)):
            draw_mean_ci(ax, stats_by(g, "step", "value", factor, key), "step", label=name,
                         color=series_colour(cell), marker=marker(i))
            draw_seeds(ax, g, "step", "value", factor, series_colour(cell))
        clip_percent(ax)
        style_axes(ax, xlabel="shift (pixels)", ylabel=label, title=f"{label.split(' ')[0]} vs shift")
    if iou:
        ax = axes[-1]
        table = aggregate(data.completed, data.cell_keys, list(IOU))
        width = 0.8 / max(len(table), 1)
        for i, (label, cell, rows) in enumerate(series_groups(table, data.cell_keys)):
            r = rows.iloc[0]
            means = [r[f"{k}_mean"] for k in IOU]
            err = [[m - r[f"{k}_ci_low"] for m, k in zip(means, IOU)],
                   [r[f"{k}_ci_high"] - m for m, k in zip(means, IOU)]]
            err = None if np.isnan(err[0]).any() else err
            ax.bar(np.arange(2) + i * width, means, width, yerr=err, capsize=3, color=series_colour(cell),
                   label=label, alpha=1.0 - 0.6 * (i % 2) / 1.5, edgecolor="black", linewidth=0.5)
            seeds = data.completed
            for k, key in enumerate(IOU):
                mask = np.ones(len(seeds), bool)
                for ck, cv in cell.items():
                    if ck in seeds:
                        mask &= (seeds[ck] == cv).to_numpy()
                ys = pd.to_numeric(seeds.loc[mask, key], errors="coerce").dropna().to_numpy(float)
                ax.scatter(np.full(len(ys), k + i * width), ys, s=12, facecolors="none", edgecolors="black",
                           linewidths=0.8, zorder=3)
        ax.set_xticks(np.arange(2) + 0.4 - width / 2, ["original", "shifted"])
        ax.set_ylim(0, 1)
        style_axes(ax, xlabel="probe images", ylabel="mean IoU", title="IoU before and after the shift")
    fig.suptitle(f"{data.name}: robustness to translation (mean, 95% interval and each seed)", fontsize=11)
    return {"accuracy_vs_shift": fig}


def iou_table(data: SweepData) -> Figures:
    """Table of mean IoU on the original and shifted probes, and the drop, per cell."""
    if not _has_iou(data):
        return {}
    table = aggregate(data.completed, data.cell_keys, list(IOU))
    runs = data.completed.assign(iou_drop=lambda d: d["iou_original"] - d["iou_shifted"])
    drop = aggregate(runs, data.cell_keys, ["iou_drop"])
    rows = []
    for (_, r), (_, d) in zip(table.iterrows(), drop.iterrows()):
        row = {k: r[k] for k in data.cell_keys}
        for k in IOU + ("iou_drop",):
            src = d if k == "iou_drop" else r
            row[k.replace("_", " ")] = fmt_mean_ci(k, src[f"{k}_mean"], src[f"{k}_ci_low"], src[f"{k}_ci_high"])
        row["n"] = r["n"]
        rows.append(row)
    return {"iou_table": table_figure(pd.DataFrame(rows), f"{data.name}: mean IoU [95% interval]")}
