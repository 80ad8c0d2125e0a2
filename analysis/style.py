"""One look for every analysis plot: stable model colours, labels, percent formatting."""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

# Figures are drawn on Agg canvases directly (no pyplot), so this works headless and leaves
# the backend of an importing notebook alone.
from core.figures import figure_png, is_accuracy, new_figure  # re-exported

# Fixed model -> colour map, so a model has the same colour in every plot and every report.
# CNN family in blues/greens/purples, MLP family in reds/oranges, probes in greys/browns.
MODEL_COLOURS: dict[str, str] = {
    "simple_cnn": "#1f77b4",
    "simple_cnn_avgpool": "#17becf",
    "wider_cnn": "#2ca02c",
    "deeper_cnn": "#9467bd",
    "three_layer_cnn": "#393b79",
    "two_layer_mlp": "#ff7f0e",
    "three_layer_mlp": "#d62728",
    "lab_mlp": "#d62728",
    "lab_cnn": "#1f77b4",
    "mlp_baseline": "#d62728",
    "base_cnn": "#1f77b4",
    "simple_mlp": "#d62728",
    "convnet": "#1f77b4",
    "convnet_small": "#2ca02c",
    "convnet_tiny": "#9467bd",
    "mnist_mlp": "#d62728",
    "lenet5": "#1f77b4",
    "modified_resnet18": "#2ca02c",
    "mlp_detector": "#d62728",
    "cnn_detector": "#1f77b4",
    "linear_probe": "#8c564b",
}
FALLBACK = ["#e377c2", "#7f7f7f", "#bcbd22", "#8c564b", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def colour(series: str) -> str:
    """Colour of a series ("model/dataset", "model/dataset · other-experiment" or a model name).

    Known models get their fixed colour; anything else a colour picked from a stable hash of
    its name (not Python's `hash`, which changes between processes).
    """
    model = str(series).split("/")[0].split(" ")[0]
    if model in MODEL_COLOURS and "·" not in str(series):
        return MODEL_COLOURS[model]
    return FALLBACK[zlib.crc32(str(series).encode()) % len(FALLBACK)]


def linestyle(i: int) -> str:
    return LINESTYLES[i % len(LINESTYLES)]


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]


def metric_label(metric: str) -> str:
    """Axis label: "val acc (%)" for accuracies, "val loss" otherwise."""
    text = metric.replace("_", " ")
    return f"{text} (%)" if is_accuracy(metric) else text


def scale(metric: str) -> float:
    """Factor from the logged value to the plotted one (accuracies are logged as fractions)."""
    return 100.0 if is_accuracy(metric) else 1.0


def fmt_value(metric: str, value: float, digits: int = 1) -> str:
    """One value in the unit the reader expects: "96.0%" for accuracies, 4 significant digits else."""
    if value is None or value != value:
        return "n/a"
    if is_accuracy(metric):
        return f"{100 * value:.{digits}f}%"
    if metric.startswith("n_") or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.4g}"


def fmt_mean_ci(metric: str, mean: float, low: float, high: float) -> str:
    """"96.0% [93.0, 98.0]" for accuracies (their bounded interval is asymmetric); "0.41 ± 0.02"
    (half-width) for a symmetric interval; "[n/a]" when n < 2."""
    if mean != mean:
        return "n/a"
    half = (high - low) / 2 if high == high and low == low else float("nan")
    if half != half:
        return f"{fmt_value(metric, mean)} [n/a]"
    if is_accuracy(metric):
        return f"{100 * mean:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    if abs((mean - low) - (high - mean)) > 1e-9 * max(1.0, abs(mean)):
        return f"{fmt_value(metric, mean)} [{low:.4g}, {high:.4g}]"
    if half == 0:
        return fmt_value(metric, mean)
    if metric.startswith("n_"):
        return f"{mean:,.0f} ± {half:,.0f}"
    return f"{mean:.4g} ± {half:.2g}"


def cell_label(cell: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    """"data_per_class=10, lr=0.01" for a cell's key -> value mapping."""
    parts = [f"{k}={_short(v)}" for k, v in cell.items() if k not in skip]
    return ", ".join(parts) if parts else "all runs"


def slug(text: str) -> str:
    """File-name-safe form of a cell label."""
    out = "".join(c if c.isalnum() or c in "-." else "_" for c in str(text))
    return "_".join(p for p in out.split("_") if p)[:80] or "all"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_short(x) for x in v) + "]"
    return str(v)


def clip_percent(ax) -> None:
    """Keep a percent axis within [0, 100] (a wide CI band with 2 seeds would stretch it)."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -1.0), min(high, 101.0))


def style_axes(ax, *, xlabel: str, ylabel: str, title: str | None = None, legend: bool = True) -> None:
    """Grid, labels, legend (when there is something to label)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


__all__ = ["MODEL_COLOURS", "cell_label", "clip_percent", "colour", "figure_png", "fmt_mean_ci", "fmt_value",
           "linestyle", "marker", "metric_label", "new_figure", "scale", "slug", "style_axes"]
