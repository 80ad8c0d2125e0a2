"""The MLP parameter explosion bar chart (SPEC 4.3), computed without any run."""
from __future__ import annotations

from analysis.param_explosion import explosion_table
from analysis.plots.common import Figures
from analysis.style import new_figure, style_axes
from analysis.sweep_data import SweepData


def param_explosion(data: SweepData | None = None) -> Figures:
    """Parameters (millions, log scale) of a [256, 128] MLP with 10 outputs per image size.

    Each bar is annotated "x.xM"; the input size is in the tick label. `data` is unused: the
    counts are analytic.
    """
    rows = explosion_table()
    fig = new_figure(9, 5)
    ax = fig.subplots()
    millions = [p / 1e6 for _, _, p in rows]
    bars = ax.bar(range(len(rows)), millions, color=["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"])
    for bar, m in zip(bars, millions):
        ax.annotate(f"{m:,.1f}M", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=9)
    ax.set_xticks(range(len(rows)), [f"{label}\n{dim:,} inputs" for label, dim, _ in rows], fontsize=8)
    ax.set_yscale("log")  # 0.8M to 6,370M: a linear axis would hide the CIFAR bar
    style_axes(ax, xlabel="image size", ylabel="parameters (millions, log scale)",
               title="MLP [256, 128] → 10: parameters vs input resolution", legend=False)
    return {"param_explosion": fig}
