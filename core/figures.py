"""Figure helpers for `sweep report`: conv1 kernel grids, confusion matrices, training curves.

Only the analysis draws: trials log the arrays (kernels .npy, confusion matrix JSON, history
JSON) and never import matplotlib. Figures are `matplotlib.figure.Figure`s on the Agg canvas
(no pyplot global state: headless, thread-safe, and an importing notebook's backend is left
alone); `analysis.plots` lays the `draw_*` helpers out and `figure_png` renders the result.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigError

if TYPE_CHECKING:  # matplotlib (~0.4 s) is imported by the functions that draw, not by `sweep results`
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """A Figure bound to an Agg canvas (headless)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render `fig` to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def kernel_grid(weights: np.ndarray) -> np.ndarray:
    """Tile first-layer conv kernels into one image (SPEC 3.3).

    Args:
        weights: conv weights of shape (F, C_in, k, k). When C_in != 3 only input channel 0
            is shown (greyscale); with C_in == 3 the kernels are drawn as RGB.

    Returns:
        float array (H, W, 3) in [0, 1], laid out as torchvision's
        `make_grid(nrow=8, padding=1, normalize=True)` (NumPy only, so drawing needs no torch):
        min-max scaled over all kernels, so kernels are comparable with each other.

    Raises:
        ConfigError: `weights` is not 4-D.
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 4:
        raise ConfigError(f"kernel weights must have shape (F, C_in, k, k), got shape {w.shape}")
    if w.shape[1] != 3:
        w = np.repeat(w[:, :1], 3, axis=1)  # greyscale drawn as RGB, as make_grid does
    low, high = float(w.min()), float(w.max())
    w = (np.clip(w, low, high) - low) / max(high - low, 1e-5)
    n, _, h, wd = w.shape
    if n == 1:
        return np.moveaxis(w[0], 0, -1)
    cols, pad = min(8, n), 1
    rows = -(-n // cols)
    grid = np.zeros((3, rows * (h + pad) + pad, cols * (wd + pad) + pad), dtype=np.float32)
    for i in range(n):
        y, x = divmod(i, cols)
        grid[:, y * (h + pad) + pad:y * (h + pad) + pad + h, x * (wd + pad) + pad:x * (wd + pad) + pad + wd] = w[i]
    return np.moveaxis(grid, 0, -1)


def draw_kernels(ax: Axes, weights: np.ndarray, title: str) -> None:
    """Draw the kernel grid of `weights` on `ax` with axes off."""
    ax.imshow(kernel_grid(weights), interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def draw_confusion(ax: Axes, matrix: np.ndarray, labels: Sequence[str], title: str) -> None:
    """Confusion matrix in the SPEC 4.3 style: Blues, colour bar, counts with one decimal.

    Rows are true classes, columns predicted; "Predicted" is on top, "True" on the left.
    Counts are written with one decimal so means over seeds read the same as raw counts.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ConfigError(f"confusion matrix must be square with one row per label "
                          f"({len(labels)} labels), got shape {m.shape}")
    im = ax.imshow(m, cmap="Blues", vmin=0)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45 if max(map(len, labels), default=0) > 6 else 0)
    ax.set_yticks(ticks, labels)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    threshold = m.max() / 2 if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center",
                    color="white" if m[i, j] > threshold else "black", fontsize=9)
    ax.set_title(title, fontsize=10, pad=8)


# A key naming a change of accuracy ("shift_acc_drop") is a signed difference, not an accuracy.
DIFFERENCE_WORDS = ("drop", "delta", "diff", "gap", "gain", "change")


def is_accuracy(key: str) -> bool:
    """Accuracy metrics are logged as fractions in [0, 1] and drawn in percent (not their differences)."""
    return "acc" in key and not any(w in key for w in DIFFERENCE_WORDS)


def plot_curve(ax: Axes, epochs: Sequence[float], mean: Sequence[float], *, label: str,
               color: str | None = None, linestyle: str = "-",
               low: Sequence[float] | None = None, high: Sequence[float] | None = None) -> None:
    """One curve with an optional shaded band (e.g. a 95% CI over seeds)."""
    ax.plot(epochs, mean, linestyle=linestyle, color=color, label=label, linewidth=1.5)
    if low is not None and high is not None:
        ax.fill_between(epochs, low, high, color=ax.lines[-1].get_color(), alpha=0.18, linewidth=0)


def format_curve_axes(ax_loss: Axes, ax_acc: Axes) -> None:
    """Shared labels for a loss panel and an accuracy (%) panel against epoch."""
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=8)
