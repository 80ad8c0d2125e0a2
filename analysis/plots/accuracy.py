"""Final accuracy against a swept quantity: data per class, epoch budget, parameter count."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.aggregate import aggregate, interval, sort_key
from analysis.plots.common import Figures, draw_mean_ci, other_keys, series_colour, series_groups
from analysis.results import fmt_interval
from analysis.style import clip_percent, marker, metric_label, new_figure, scale, style_axes
from analysis.sweep_data import SweepData


def metric_vs_key(data: SweepData, x: str, metric: str = "val_acc", *, logx: bool = False,
                  xlabel: str | None = None, title: str | None = None) -> Figures:
    """Mean of `metric` over seeds against `x`, one line (with its 95% interval) per series and
    cell, and every seed as a point (a bimodal cell shows as two clusters, not a wide band).

    Accuracies get the bounded bootstrap interval (analysis.stats), other metrics the t-interval.
    Returns {} when `x` or `metric` was not logged.
    """
    runs = data.completed
    if x not in runs or metric not in runs or runs[x].notna().sum() == 0:
        return {}
    fig = new_figure(7.5, 5)
    ax = fig.subplots()
    factor = scale(metric)
    groups = list(series_groups(runs, other_keys(data, x)))
    for i, (label, cell, g) in enumerate(groups):
        s = bounded_stats(g, x, metric, factor)
        if len(s):
            draw_mean_ci(ax, s, x, label=label, color=series_colour(cell), marker=marker(i))
            seed_points(ax, g, x, metric, factor, series_colour(cell), i, len(groups))
    if logx:
        ax.set_xscale("log")
    if factor == 100.0:
        clip_percent(ax)
    xs = sorted(v for v in runs[x].dropna().unique() if isinstance(v, (int, float, np.number)))
    if xs and len(xs) <= 12:
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
    style_axes(ax, xlabel=xlabel or x.replace("_", " "), ylabel=metric_label(metric),
               title=title or f"{metric_label(metric)} vs {x.replace('_', ' ')} (mean, 95% interval, seeds)")
    counts = runs.groupby(other_keys(data, x) + [x], dropna=False).size()
    ax.text(0.99, 0.01, f"{data.name}: " + (f"{counts.min()}" if counts.min() == counts.max()
                                      else f"{counts.min()}–{counts.max()}") + " seeds per point",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="grey")
    return {"accuracy_vs_" + x: fig}


def bounded_stats(frame: pd.DataFrame, x: str, y: str, factor: float = 1.0) -> pd.DataFrame:
    """Mean and 95% interval of `y` at each value of `x` (sorted), times `factor`; bounded
    bootstrap for accuracies (`analysis.aggregate.interval`)."""
    rows = []
    for xv, g in frame.groupby(x, dropna=True):
        mean, _, low, high = interval(pd.to_numeric(g[y], errors="coerce"), y)
        rows.append((xv, factor * mean, factor * low, factor * high, len(g)))
    out = pd.DataFrame(rows, columns=[x, "mean", "low", "high", "n"])
    return out.iloc[sorted(range(len(out)), key=lambda i: sort_key(out[x].iloc[i]))].reset_index(drop=True)


def seed_points(ax, frame: pd.DataFrame, x: str, y: str, factor: float, color: str, index: int, count: int) -> None:
    """One hollow point per seed, nudged sideways per series so overlapping series stay apart."""
    xs = pd.to_numeric(frame[x], errors="coerce").to_numpy(float)
    ys = factor * pd.to_numeric(frame[y], errors="coerce").to_numpy(float)
    ok = ~(np.isnan(xs) | np.isnan(ys))
    if not ok.any():
        return
    offset = 1.0 + 0.03 * (index - (count - 1) / 2)  # multiplicative: works on log and linear axes
    ax.scatter(xs[ok] * offset, ys[ok], s=14, facecolors="none", edgecolors=color, linewidths=0.9, alpha=0.8,
               zorder=3)


def accuracy_vs_data(data: SweepData) -> Figures:
    """Validation accuracy vs training images per class, one CI band per model (SPEC 4.3)."""
    return {"accuracy_vs_data": f for f in metric_vs_key(
        data, "data_per_class", xlabel="training images per class",
        title="Validation accuracy vs training images per class (mean, 95% interval, seeds)").values()}


def accuracy_vs_epochs(data: SweepData) -> Figures:
    """Validation accuracy vs the epoch budget, one line per model and data size."""
    return {"accuracy_vs_epochs": f for f in metric_vs_key(
        data, "epochs", logx=True, xlabel="epoch budget",
        title="Validation accuracy vs epoch budget (mean, 95% interval, seeds)").values()}


def params_vs_accuracy(data: SweepData) -> Figures:
    """Mean accuracy (95% CI bars) against the parameter count, log x, one point per cell."""
    runs = data.completed
    if "n_params" not in runs or "val_acc" not in runs or runs.empty:
        return {}
    table = aggregate(runs, data.cell_keys, ["n_params", "val_acc"])
    fig = new_figure(7.5, 5)
    ax = fig.subplots()
    for i, (label, cell, g) in enumerate(series_groups(table, data.cell_keys)):
        r = g.iloc[0]
        y, low, high = (100 * r[f"val_acc_{k}"] for k in ("mean", "ci_low", "ci_high"))
        yerr = None if np.isnan(low) else [[y - low], [high - y]]
        ax.errorbar([r["n_params_mean"]], [y], yerr=yerr, fmt=marker(i), color=series_colour(cell),
                    capsize=3, markersize=8, label=f"{label}: {fmt_interval('val_acc', *(r[f'val_acc_{k}'] for k in ('mean', 'ci_low', 'ci_high')))}")
        cell_runs = runs
        for k in data.cell_keys:
            cell_runs = cell_runs[cell_runs[k].apply(lambda v, want=r[k]: v == want or (v != v and want != want)).astype(bool)]
        ax.scatter(pd.to_numeric(cell_runs["n_params"], errors="coerce"), 100 * pd.to_numeric(cell_runs["val_acc"], errors="coerce"),
                   s=14, facecolors="none", edgecolors=series_colour(cell), linewidths=0.9, alpha=0.8, zorder=3)
        ax.annotate(f"{r['n_params_mean']:,.0f}", (r["n_params_mean"], y), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    ax.set_xscale("log")
    style_axes(ax, xlabel="parameters (log scale)", ylabel=metric_label("val_acc"),
               title="Accuracy vs parameter count (mean, 95% interval, seeds)")
    return {"params_vs_accuracy": fig}


def lr_kernel_heatmap(data: SweepData) -> Figures:
    """Mean validation accuracy on a learning-rate x kernel-size grid, one panel per series."""
    runs = data.completed
    if not {"lr", "kernel_size", "val_acc"} <= set(runs.columns):
        return {}
    runs = runs[runs["kernel_size"].notna() & runs["lr"].notna()].copy()
    if runs.empty:
        return {}
    if runs["lr"].nunique() > 8:  # sampled lr (HPO): bin on a log scale
        bins = np.logspace(np.log10(runs["lr"].min()), np.log10(runs["lr"].max()) + 1e-9, 7)
        runs["lr"] = pd.cut(runs["lr"], bins, include_lowest=True).map(
            lambda iv: f"{iv.left:.1e}–{iv.right:.1e}").astype(str)
    series = sorted(runs["series"].unique())
    fig = new_figure(5.5 * len(series), 4.5)
    axes = np.atleast_1d(fig.subplots(1, len(series)))
    for ax, name in zip(axes, series):
        table = aggregate(runs[runs["series"] == name], ["lr", "kernel_size"], ["val_acc"])
        mean = table.pivot(index="lr", columns="kernel_size", values="val_acc_mean") * 100
        low = table.pivot(index="lr", columns="kernel_size", values="val_acc_ci_low") * 100
        high = table.pivot(index="lr", columns="kernel_size", values="val_acc_ci_high") * 100
        im = ax.imshow(mean.to_numpy(float), cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(mean.columns)), [_tick(c) for c in mean.columns])
        ax.set_yticks(range(len(mean.index)), [_tick(v) for v in mean.index])
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                m, lo, hi = mean.iat[i, j], low.iat[i, j], high.iat[i, j]
                if m == m:  # the bounded interval is asymmetric: both ends, never "±"
                    ax.text(j, i, f"{m:.1f}" + (f"\n[{lo:.0f}, {hi:.0f}]" if lo == lo else ""), ha="center",
                            va="center", fontsize=8, color="white" if m < 60 else "black")
        ax.set_xlabel("kernel size")
        ax.set_ylabel("learning rate")
        ax.set_title(f"{name}: val acc (%)", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return {"lr_kernel_heatmap": fig}


def _tick(v) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)
