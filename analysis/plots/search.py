"""Hyper-parameter search views: metric vs each searched param, ASHA rung survival."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis.plots.common import Figures
from analysis.style import colour, metric_label, new_figure, scale, style_axes
from analysis.sweep_data import SweepData
from core import store_schema as S
from search_spaces.experiment import Search


def searched_params(data: SweepData) -> list[str]:
    """Swept keys (not the pairing) with numeric values that vary between trials."""
    runs = data.runs
    out = []
    for k in data.swept_keys:
        if k in ("pairing", "series", "seed") or k not in runs:
            continue
        values = pd.to_numeric(runs[k], errors="coerce").dropna()
        if values.nunique() > 1:
            out.append(k)
    return out


def search_scatter(data: SweepData, metric: str = "val_acc") -> Figures:
    """One panel per searched param: each trial's final `metric`, coloured by model.

    Completed trials are filled markers, early-stopped trials hollow. Params spanning more
    than a decade on the positive axis get a log x-axis (lr, weight decay).
    """
    params = searched_params(data)
    runs = data.runs
    if not params or metric not in runs:
        return {}
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig = new_figure(5.2 * ncols, 4.2 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    done = runs.get(S.TAG_STATUS_REASON, pd.Series(S.STATUS_COMPLETED, index=runs.index)) == S.STATUS_COMPLETED
    for ax, p in zip(axes, params):
        x = pd.to_numeric(runs[p], errors="coerce")
        y = runs[metric] * scale(metric)
        for series in sorted(runs["series"].astype(str).unique()):
            m = runs["series"].astype(str) == series
            c = colour(series)
            ax.scatter(x[m & done], y[m & done], color=c, label=series, s=28)
            ax.scatter(x[m & ~done], y[m & ~done], facecolors="none", edgecolors=c, s=28,
                       label=f"{series} (stopped early)" if (m & ~done).any() else None)
        positive = x.dropna()
        if len(positive) and positive.min() > 0 and positive.max() / positive.min() > 10:
            ax.set_xscale("log")
        style_axes(ax, xlabel=p, ylabel=metric_label(metric), title=f"{metric_label(metric)} vs {p}")
    for ax in axes[len(params):]:
        ax.axis("off")
    fig.suptitle(f"{data.name}: search results ({len(runs)} trials)", fontsize=11)
    return {"search_scatter": fig}


def asha_rungs(data: SweepData) -> Figures:
    """Trials still running at each epoch (ASHA survival), per model, with rung milestones."""
    runs = data.runs
    if runs.empty:
        return {}
    # Epochs reached: completed trials log epochs_completed, stopped ones the stopped_epoch tag;
    # the val_acc history covers runs that have neither. The largest known value wins.
    h = data.history[data.history["key"] == "val_acc"]
    sources = [runs["run_id"].map(h.groupby("run_id")["step"].max())]
    sources += [pd.to_numeric(runs[c], errors="coerce") for c in (S.METRIC_EPOCHS_COMPLETED, S.TAG_STOPPED_EPOCH) if c in runs]
    reached = pd.concat(sources, axis=1).max(axis=1)
    if reached.isna().all():
        return {}
    runs = runs.assign(reached=reached.fillna(0).astype(float))
    top = int(runs["reached"].max())
    if top < 1:
        return {}
    epochs = np.arange(1, top + 1)
    fig = new_figure(8, 4.8)
    ax = fig.subplots()
    for series in sorted(runs["series"].astype(str).unique()):
        r = runs.loc[runs["series"].astype(str) == series, "reached"].to_numpy()
        alive = [(r >= e).sum() for e in epochs]
        ax.step(epochs, alive, where="post", color=colour(series), label=f"{series} ({len(r)} trials)")
    ax.set_ylim(0, runs.groupby("series").size().max() + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    search = (data.parent.get("declaration") or {}).get("search") or {}
    try:  # the scheduler that actually ran (CLI overrides included), logged by the runner
        search = json.loads(data.parent.get("tags", {}).get(S.TAG_ASHA, "")) or search
    except ValueError:
        pass
    if isinstance(search, dict) and search.get("grace_period"):
        rung, rf = int(search["grace_period"]), max(2, int(search.get("reduction_factor", Search.reduction_factor)))
        while rung <= top:
            ax.axvline(rung, color="grey", linestyle=":", linewidth=1)
            ax.text(rung, ax.get_ylim()[1] * 0.98, f" rung {rung}", fontsize=7, color="grey", va="top")
            rung *= rf
    style_axes(ax, xlabel="epoch", ylabel="trials still training",
               title=f"{data.name}: trials alive per epoch (early stopping)")
    return {"asha_rungs": fig}
