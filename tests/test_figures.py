"""Figure helpers (core.figures, drawn by `sweep report`): kernel grids and non-empty PNGs."""
import io

import numpy as np
import pytest
from matplotlib.image import imread

from core.errors import ConfigError
from core.figures import (draw_confusion, draw_kernels, figure_png, format_curve_axes, is_accuracy,
                          kernel_grid, new_figure, plot_curve)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("shape, expected", [
    ((3, 1, 7, 7), (9, 25, 3)),      # one row of 3 kernels: 1 + 3*(7+1) wide
    ((6, 6, 3, 3), (5, 25, 3)),      # C_in=6 -> channel 0 only
    ((16, 3, 3, 3), (9, 33, 3)),     # RGB kernels, two rows of 8
    ((20, 1, 5, 5), (19, 49, 3)),    # three rows: 1 + 3*(5+1)
])
def test_kernel_grid_shape(shape, expected):
    grid = kernel_grid(np.random.default_rng(0).normal(size=shape))
    assert grid.shape == expected
    assert grid.min() == pytest.approx(0.0) and grid.max() == pytest.approx(1.0)


def test_kernel_grid_selects_channel_zero_and_normalises_globally():
    w = np.zeros((2, 2, 3, 3), dtype=np.float32)
    w[0, 0] = 1.0      # channel 0 of kernel 0 is the only bright patch
    w[1, 1] = 5.0      # channel 1 is ignored (C_in != 3)
    grid = kernel_grid(w)
    assert np.allclose(grid[1:4, 1:4], 1.0)
    assert np.allclose(grid[1:4, 5:8], 0.0)


def test_kernel_grid_rejects_bad_shape():
    with pytest.raises(ConfigError, match="shape"):
        kernel_grid(np.zeros((3, 7, 7)))


def _decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_MAGIC)
    return imread(io.BytesIO(png))


def test_kernels_drawn_and_rendered():
    fig = new_figure(6, 3)
    ax0, ax1 = fig.subplots(1, 2)
    rng = np.random.default_rng(1)
    draw_kernels(ax0, rng.normal(size=(3, 1, 7, 7)), "untrained")
    draw_kernels(ax1, rng.normal(size=(3, 1, 7, 7)), "trained")
    img = _decode(figure_png(fig))
    assert img.shape[0] > 50 and img.shape[1] > 200
    assert img[..., :3].std() > 0.05  # something was drawn


def test_confusion_drawn_with_counts_and_shape_check():
    fig = new_figure(5, 4)
    ax = fig.subplots()
    draw_confusion(ax, np.array([[5, 1, 0], [0, 6, 0], [1, 0, 4.5]]), ["horizontal", "vertical", "none"], "cm")
    assert {t.get_text() for t in ax.texts} >= {"5.0", "6.0", "4.5"}
    assert _decode(figure_png(fig)).shape[0] > 200
    with pytest.raises(ConfigError, match="square"):
        draw_confusion(new_figure(4, 4).subplots(), np.ones((2, 3)), ["a", "b"], "bad")


def test_curve_axes_in_percent_with_integer_epochs():
    fig = new_figure(8, 3)
    ax_loss, ax_acc = fig.subplots(1, 2)
    plot_curve(ax_loss, [1, 2, 3], [1.0, 0.6, 0.4], label="train", low=[0.9, 0.5, 0.3], high=[1.1, 0.7, 0.5])
    plot_curve(ax_acc, [1, 2, 3], [30.0, 60.0, 80.0], label="val", linestyle="--")
    format_curve_axes(ax_loss, ax_acc)
    assert ax_acc.get_ylabel() == "accuracy (%)" and ax_loss.get_legend() is not None
    assert is_accuracy("val_acc") and not is_accuracy("val_loss")
    assert _decode(figure_png(fig)).shape[1] > 500


@pytest.mark.parametrize("shape", [(16, 1, 5, 5), (1, 1, 3, 3), (10, 3, 3, 3), (7, 2, 3, 3)])
def test_kernel_grid_matches_torchvision_make_grid(shape):
    """The NumPy grid (so the report needs no torch) is torchvision's make_grid, pixel for pixel."""
    torch = pytest.importorskip("torch")
    make_grid = pytest.importorskip("torchvision.utils").make_grid
    w = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    t = torch.from_numpy(w)
    ref = make_grid(t if shape[1] == 3 else t[:, :1], nrow=8, padding=1, normalize=True).permute(1, 2, 0).numpy()
    assert np.array_equal(kernel_grid(w), ref)
