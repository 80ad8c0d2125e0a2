"""Helpers shared by the plot families: per-x statistics, CI bands, cell iteration, tables."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.aggregate import group_cells, sort_key, t_interval
from analysis.style import cell_label, colour, new_figure
from analysis.sweep_data import SweepData

Figures = dict[str, Figure]


def stats_by(frame: pd.DataFrame, x: str, y: str, factor: float = 1.0, metric: str | None = None) -> pd.DataFrame:
    """Mean and 95% interval of `y` at each value of `x` (sorted), times `factor`: for an accuracy
    `metric` the bounded percentile bootstrap (analysis.stats.band_interval, never past [0, 100]%),
    else the t-interval."""
    from analysis.stats import band_interval
    from analysis.style import is_accuracy

    rows = []
    for xv, g in frame.groupby(x, dropna=True):
        values = pd.to_numeric(g[y], errors="coerce")
        if metric is not None and is_accuracy(metric):
            mean, low, high = band_interval(values)
        else:
            mean, _, low, high = t_interval(values)
        rows.append((xv, factor * mean, factor * low, factor * high, len(g)))
    out = pd.DataFrame(rows, columns=[x, "mean", "low", "high", "n"])
    return out.iloc[sorted(range(len(out)), key=lambda i: sort_key(out[x].iloc[i]))].reset_index(drop=True)


def draw_mean_ci(ax: Axes, s: pd.DataFrame, x: str, *, label: str, color: str, marker: str = "o",
                 linestyle: str = "-") -> None:
    """Line with markers through the means, a shaded CI band and CI error bars."""
    xs = s[x].to_numpy(dtype=float)
    low, high = s["low"].to_numpy(float), s["high"].to_numpy(float)
    ax.plot(xs, s["mean"], marker=marker, linestyle=linestyle, color=color, label=label, linewidth=1.6)
    ok = ~np.isnan(low)
    if ok.any():
        ax.errorbar(xs[ok], s["mean"].to_numpy(float)[ok],
                    yerr=[s["mean"].to_numpy(float)[ok] - low[ok], high[ok] - s["mean"].to_numpy(float)[ok]],
                    fmt="none", ecolor=color, capsize=3, linewidth=1)
        if ok.sum() > 1:
            ax.fill_between(xs[ok], low[ok], high[ok], color=color, alpha=0.15, linewidth=0)


def draw_seeds(ax: Axes, frame: pd.DataFrame, x: str, y: str, factor: float, color: str, lines: bool = False) -> None:
    """Every seed's value: hollow points (or, with `lines`, one thin line per run) in the series' colour."""
    if frame.empty:
        return
    if lines and "run_id" in frame:
        for _, g in frame.groupby("run_id"):
            g = g.sort_values(x)
            ax.plot(g[x].to_numpy(float), factor * pd.to_numeric(g[y], errors="coerce").to_numpy(float), color=color,
                    linewidth=0.6, alpha=0.35, zorder=1)
        return
    ax.scatter(frame[x].to_numpy(float), factor * pd.to_numeric(frame[y], errors="coerce").to_numpy(float), s=12,
               facecolors="none", edgecolors=color, linewidths=0.8, alpha=0.7, zorder=3)


def series_groups(frame: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[str, dict[str, Any], pd.DataFrame]]:
    """(label, cell, rows) per combination of `keys`; the label leads with the series."""
    keys = [k for k in keys if k in frame.columns and frame[k].notna().any()]
    groups = []
    for key, g in group_cells(frame, keys):
        cell = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        groups.append((cell, g))
    groups.sort(key=lambda cg: tuple(sort_key(v) for v in cg[0].values()))
    for cell, g in groups:
        series = cell.get("series", "")
        rest = {k: v for k, v in cell.items() if k != "series" and v == v and v is not None}
        label = f"{series} ({cell_label(rest)})" if rest else str(series)
        yield label, cell, g


def other_keys(data: SweepData, *exclude: str) -> list[str]:
    """Cell keys without `exclude` (e.g. without the x axis of a plot)."""
    return [k for k in data.cell_keys if k not in exclude]


def series_colour(cell: dict[str, Any]) -> str:
    return colour(cell.get("series", ""))


def table_figure(df: pd.DataFrame, title: str, col_widths: Sequence[float] | None = None) -> Figure:
    """A table rendered as a figure (leaderboards, best configurations, IoU)."""
    nrows = max(len(df), 1)
    width = sum(max([len(str(c))] + [len(str(v)) for v in df[c]]) for c in df.columns) if len(df) else 40
    fig = new_figure(min(0.5 + 0.08 * width + 0.25 * len(df.columns), 18), 0.6 + 0.3 * (nrows + 1))
    ax = fig.subplots()
    ax.axis("off")
    cells = [[f" {v} " for v in row] for row in df.astype(str).values.tolist()] if len(df) else [["(no completed trials)"] + [""] * (len(df.columns) - 1)]
    table = ax.table(cellText=cells, colLabels=[f" {c} " for c in df.columns], loc="center", cellLoc="center",
                     colWidths=col_widths)
    table.auto_set_font_size(False)
    if col_widths is None:
        table.auto_set_column_width(list(range(len(df.columns))))
    table.set_fontsize(9)
    table.scale(1, 1.35)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8eef7")
    ax.set_title(title, fontsize=11)
    return fig
