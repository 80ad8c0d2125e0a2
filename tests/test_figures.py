"""Figure helpers (core.figures, drawn by `sweep report`): kernel grids and non-empty PNGs."""
import io

import numpy as np
import pytest
from matplotlib.image import imread

from core.errors import ConfigError
from core.figures import confusion_matrix_png, curves_png, kernel_grid, kernels_png

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


def test_kernels_png():
    rng = np.random.default_rng(1)
    img = _decode(kernels_png(rng.normal(size=(3, 1, 7, 7)), rng.normal(size=(3, 1, 7, 7)), "k"))
    assert img.shape[0] > 50 and img.shape[1] > 200
    assert img[..., :3].std() > 0.05  # something was drawn


def test_confusion_matrix_png_and_shape_check():
    img = _decode(confusion_matrix_png(np.array([[5, 1, 0], [0, 6, 0], [1, 0, 4.5]]),
                                       ["horizontal", "vertical", "none"], "cm"))
    assert img.shape[0] > 200
    with pytest.raises(ConfigError, match="square"):
        confusion_matrix_png(np.ones((2, 3)), ["a", "b"], "bad")


def test_curves_png_ignores_missing_keys():
    img = _decode(curves_png({"train_loss": [1.0, 0.5], "val_acc": [0.3, 0.6], "lr": [0.1, 0.1]}, "c"))
    assert img.shape[1] > 500


@pytest.mark.parametrize("shape", [(16, 1, 5, 5), (1, 1, 3, 3), (10, 3, 3, 3), (7, 2, 3, 3)])
def test_kernel_grid_matches_torchvision_make_grid(shape):
    """The NumPy grid (so the report needs no torch) is torchvision's make_grid, pixel for pixel."""
    torch = pytest.importorskip("torch")
    make_grid = pytest.importorskip("torchvision.utils").make_grid
    w = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    t = torch.from_numpy(w)
    ref = make_grid(t if shape[1] == 3 else t[:, :1], nrow=8, padding=1, normalize=True).permute(1, 2, 0).numpy()
    assert np.array_equal(kernel_grid(w), ref)
