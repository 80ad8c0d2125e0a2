"""Pure generator of the synthetic edge images (SPEC 1.1), draw for draw as the source.

Every random draw goes through `rng`, which has NumPy's legacy API (`uniform`, `randint`,
`choice`, `shuffle`): a `np.random.RandomState` for an isolated stream, or the `np.random`
module itself to consume the global legacy stream as the notebook does. The two give the same
numbers for the same seed, so the calls below (shapes, bounds and order) are the contract.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from trainables.data.edges import EdgeDataConfig

CLASS_TYPES = ("horizontal", "vertical", "diagonal", "both", "none")
MODES = ("train", "valid", "test")
DIAGONAL_ANGLES = [30, 45, 120, 135]


def make_permutation(spatial_resolution: int, rng: Any = np.random) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle arange(S*S) with `rng.shuffle`; return (perm, unperm = argsort(perm)), int32/int64."""
    perm = np.arange(spatial_resolution * spatial_resolution, dtype=np.int32)
    rng.shuffle(perm)
    return perm, np.argsort(perm)


def _background(cfg: EdgeDataConfig, n: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
    s = cfg.spatial_resolution
    b = rng.uniform(cfg.min_background_intensity, cfg.max_background_intensity, (n, 1, 1, 1))
    return np.ones((n, s, s, 1)) * b, b


def _bands(cfg: EdgeDataConfig, mode: str, n: int, m: int, diagonal: bool, rng: Any):
    """Widths then starts, shape (n, m); returns (start, end) with end exclusive (SPEC table)."""
    s = cfg.spatial_resolution
    if diagonal:  # exclusive upper bound int(max/sqrt 2): width 1 with the defaults, as in the source
        w = rng.randint(cfg.min_edge_width, int(cfg.max_edge_width / np.sqrt(2)), (n, m))
    else:
        w = rng.randint(cfg.min_edge_width, cfg.max_edge_width + 1, (n, m))
    r = cfg.possible_edge_location_ratio
    if r == 1.0 or mode == "test":
        lo, hi, start = 0, s - 1, rng.randint(0, s - w, (n, m))
    elif mode == "train":
        p = int(r * s)
        lo, hi, start = 0, p - 1, rng.randint(0, p - w, (n, m))
    else:
        p = int(r * s)
        lo, hi, start = p, s - 1, rng.randint(p, s - w, (n, m))
    return start, np.clip(start + w, lo, hi)


def _intensity(cfg: EdgeDataConfig, n: int, m: int, rng: Any) -> np.ndarray:
    return rng.uniform(cfg.min_edge_intensity, cfg.max_edge_intensity, (n, m))


def _horizontal(cfg, mode, n, rng):
    x, _ = _background(cfg, n, rng)
    m = cfg.num_horizontal_edge
    start, end = _bands(cfg, mode, n, m, False, rng)
    u = _intensity(cfg, n, m, rng)
    for i in range(n):
        for j in range(m):
            x[i, start[i, j]:end[i, j], :, 0] = u[i, j]
    return x


def _vertical(cfg, mode, n, rng):
    x, _ = _background(cfg, n, rng)
    m = cfg.num_vertical_edge
    start, end = _bands(cfg, mode, n, m, False, rng)
    # Source quirk: intensities are drawn with the horizontal count (fixed by vertical_intensity_fix).
    u = _intensity(cfg, n, m if cfg.vertical_intensity_fix else cfg.num_horizontal_edge, rng)
    for i in range(n):
        for j in range(m):
            x[i, :, start[i, j]:end[i, j], 0] = u[i, j]
    return x


def _both(cfg, mode, n, rng):
    x, _ = _background(cfg, n, rng)
    nh, nv = cfg.num_horizontal_edge, cfg.num_vertical_edge
    start, end = _bands(cfg, mode, n, nh + nv, False, rng)
    u = _intensity(cfg, n, nh + nv, rng)
    for i in range(n):
        for j in range(nh):
            x[i, start[i, j]:end[i, j], :, 0] = u[i, j]
        for j in range(nv):
            # Source quirk: the vertical band reuses location column j (columns nh+j go unused).
            loc = nh + j if cfg.both_independent_locations else j
            x[i, :, start[i, loc]:end[i, loc], 0] = u[i, nh + j]
    return x


def _diagonal(cfg, mode, n, rng):
    x, b = _background(cfg, n, rng)
    m = cfg.num_diagonal_edge
    start, end = _bands(cfg, mode, n, m, True, rng)
    u = _intensity(cfg, n, m, rng)
    theta = rng.choice(DIAGONAL_ANGLES, (n, m))
    from scipy import ndimage  # only diagonal edges rotate: every other process skips scipy's import

    for i in range(n):
        img = x[i]
        for j in range(m):
            if i % 2 == 0:
                img[start[i, j]:end[i, j], :, 0] = u[i, j]
            else:
                img[:, start[i, j]:end[i, j], 0] = u[i, j]
            # Rotates the whole image, bands painted earlier included (as in the source).
            img = ndimage.rotate(img, theta[i, j], reshape=False, mode="constant", cval=b[i, 0, 0, 0])
        x[i] = img
    return x


def _none(cfg, mode, n, rng):
    return _background(cfg, n, rng)[0]


GENERATORS = {"horizontal": _horizontal, "vertical": _vertical, "diagonal": _diagonal,
              "both": _both, "none": _none}


def generate_edge_floats(cfg: EdgeDataConfig, mode: str, n_per_class: int,
                         permutation: np.ndarray | None = None, rng: Any = np.random
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Float images before quantisation, grouped by class in `class_type` order.

    Args:
        cfg: validated dataset config (class types, sizes, ranges, fidelity flags).
        mode: "train", "valid" or "test" (only matters when possible_edge_location_ratio < 1).
        n_per_class: images per class.
        permutation: pixel permutation of length S*S, applied as x'[k] = x[perm[k]], or None.
        rng: legacy-API random source (np.random for the global stream).

    Returns:
        (X float64 of shape (K*n, S, S, 1), labels int64 of shape (K*n,)).
    """
    assert mode in MODES, f"mode must be one of {MODES}, got {mode!r}"
    s, k = cfg.spatial_resolution, len(cfg.class_type)
    x = np.zeros((k * n_per_class, s, s, 1))
    y = np.zeros(k * n_per_class, dtype=np.int64)
    for c, kind in enumerate(cfg.class_type):
        block = GENERATORS[kind](cfg, mode, n_per_class, rng)
        if permutation is not None:
            block = block.reshape(n_per_class, s * s, 1)[:, permutation, :].reshape(n_per_class, s, s, 1)
        x[c * n_per_class:(c + 1) * n_per_class] = block
        y[c * n_per_class:(c + 1) * n_per_class] = c
    return x, y


def quantise(x: np.ndarray, clip: bool = False) -> np.ndarray:
    """uint8(x*255) by truncation, dropping a trailing channel axis of size 1.

    Without `clip` out-of-range values wrap modulo 256 (x86-64 NumPy's unclipped cast, e.g.
    -12.75 -> 244); the wrap is computed explicitly so the result does not depend on the
    platform's float-to-uint8 conversion.
    """
    scaled = np.clip(x, 0.0, 1.0) * 255 if clip else x * 255
    out = (np.trunc(scaled).astype(np.int64) % 256).astype(np.uint8)
    return out[..., 0] if out.ndim == 4 and out.shape[-1] == 1 else out


def generate_edge_arrays(cfg: EdgeDataConfig, mode: str, n_per_class: int,
                         permutation: np.ndarray | None = None, rng: Any = np.random
                         ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Generate, permute, measure and quantise one split (SPEC 1.1 output pipeline, steps 1-2).

    Args:
        cfg, mode, n_per_class, permutation, rng: as for `generate_edge_floats`.

    Returns:
        (uint8 images (K*n, S, S), int64 labels (K*n,), (mean, std) of the float images after
        permutation and before quantisation).
    """
    x, y = generate_edge_floats(cfg, mode, n_per_class, permutation, rng)
    stats = (float(x.mean()), float(x.std()))
    return quantise(x, cfg.clip_before_quantise), y, stats
