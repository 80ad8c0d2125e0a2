"""Synthetic edge-detection dataset (SPEC 1.1): generator, notebook Dataset, fast builder."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torchvision.transforms import ToTensor

from trainables.data.edge_patterns import generate_edge_floats, make_permutation, quantise
from trainables.data.edges import EdgeDataConfig, EdgeDetectionDataset, build_edges
from core.errors import ConfigError

FIVE = ["horizontal", "vertical", "diagonal", "both", "none"]


def _imgs(x: torch.Tensor) -> np.ndarray:
    return x[:, 0].numpy()


def test_shapes_range_balance_and_grouping():
    b = build_edges({"data_per_class": 20})
    assert b.x_train.shape == (60, 1, 28, 28) and b.x_train.dtype == torch.float32
    assert b.x_val.shape == (150, 1, 28, 28) and b.y_val.dtype == torch.int64
    for x in (b.x_train, b.x_val):
        assert x.min() >= 0 and x.max() <= 1
        assert torch.equal(x * 255, (x * 255).round())  # exactly uint8 / 255
    assert b.y_train.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert b.y_val.tolist() == [0] * 50 + [1] * 50 + [2] * 50
    assert b.num_classes == 3 and b.class_names == ["horizontal", "vertical", "none"]
    assert b.meta["permutation"] is None and 0 < b.meta["mean"] < 1 and b.meta["std"] > 0
    # Class patterns: "none" is flat, horizontal bands are constant along rows, vertical along columns.
    x = _imgs(b.x_train)
    assert np.all(np.ptp(x[40:], axis=(1, 2)) == 0)
    assert np.all(np.ptp(x[:20], axis=2) == 0) and np.all(np.ptp(x[:20], axis=1).max(axis=1) > 0)
    assert np.all(np.ptp(x[20:40], axis=1) == 0) and np.all(np.ptp(x[20:40], axis=2).max(axis=1) > 0)


def test_generation_is_fast():
    start = time.perf_counter()
    build_edges({"data_per_class": 100})
    assert time.perf_counter() - start < 1.0


def test_seed_determinism_and_data_seed_override():
    a = build_edges({"data_per_class": 10, "seed": 3})
    b = build_edges({"data_per_class": 10, "seed": 3})
    c = build_edges({"data_per_class": 10, "seed": 4})
    d = build_edges({"data_per_class": 10, "seed": 4, "data_seed": 3})
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_train, d.x_train)
    assert torch.equal(build_edges({"data_per_class": 10}).x_train,
                       build_edges({"data_per_class": 10, "seed": 10}).x_train)


def test_validation_identical_across_sizes_and_seeds_and_disjoint_from_train():
    runs = [build_edges({"data_per_class": n, "seed": s}) for n, s in ((10, 10), (50, 10), (30, 11))]
    for r in runs[1:]:
        assert torch.equal(r.x_val, runs[0].x_val)
    # The validation stream never coincides with a training stream of the same size.
    assert not torch.equal(runs[1].x_train, runs[1].x_val)
    other = build_edges({"data_per_class": 10, "valid_seed": 11})
    assert not torch.equal(other.x_val, runs[0].x_val)


def test_global_numpy_rng_untouched():
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    build_edges({"data_per_class": 5, "class_type": FIVE, "use_permutation": True})
    assert np.array_equal(np.random.get_state()[1], state)


def _band_indices(imgs, axis: int) -> set[int]:
    """Rows (axis=0) or columns (axis=1) painted differently from the background.

    Row and column S-1 are never painted, so column S-1 shows only horizontal bands, row S-1
    only vertical ones, and pixel (S-1, S-1) is the background.
    """
    found = set()
    for img in imgs:
        line = img[:, -1] if axis == 0 else img[-1, :]
        found |= set(np.flatnonzero(line != img[-1, -1]).tolist())
    return found


def test_domain_shift_half_split():
    b = build_edges({"data_per_class": 40, "possible_edge_location_ratio": 0.5})
    x, xv = _imgs(b.x_train), _imgs(b.x_val)
    assert _band_indices(x[:40], 0) <= set(range(0, 13))
    assert _band_indices(x[40:80], 1) <= set(range(0, 13))
    assert _band_indices(xv[:50], 0) <= set(range(14, 27))
    assert _band_indices(xv[50:100], 1) <= set(range(14, 27))
    assert min(_band_indices(xv[:50], 0)) >= 14 and max(_band_indices(x[:40], 0)) >= 8
    # Without the shift bands reach both halves.
    rows = _band_indices(_imgs(build_edges({"data_per_class": 40}).x_train)[:40], 0)
    assert min(rows) < 13 and max(rows) > 14


def test_permutation_is_bijection_and_unperm_undoes_it():
    perm, unperm = make_permutation(28, np.random.RandomState(10))
    assert sorted(perm.tolist()) == list(range(784)) and np.array_equal(perm[unperm], np.arange(784))
    plain = build_edges({"data_per_class": 10})
    permuted = build_edges({"data_per_class": 10, "use_permutation": True})
    assert np.array_equal(permuted.meta["permutation"], perm)
    flat = permuted.x_train.flatten(1)
    assert torch.equal(flat[:, torch.from_numpy(unperm)].reshape(-1, 1, 28, 28), plain.x_train)
    assert torch.equal(plain.x_train.flatten(1)[:, torch.from_numpy(perm).long()], flat)
    assert torch.equal(permuted.x_val.flatten(1)[:, torch.from_numpy(unperm)],
                       plain.x_val.flatten(1))  # same permutation object for valid


def test_five_class_generation():
    b = build_edges({"data_per_class": 12, "class_type": FIVE})
    assert b.x_train.shape == (60, 1, 28, 28) and b.num_classes == 5
    assert b.y_train.tolist() == sum(([c] * 12 for c in range(5)), [])
    assert b.y_val.shape == (250,)
    x = _imgs(b.x_train)
    both = x[36:48]  # crosses: some row and some column differ from the background
    assert all((np.ptp(img, axis=0) > 0).any() and (np.ptp(img, axis=1) > 0).any() for img in both)
    diagonal = x[24:36]  # rotated bands are neither row- nor column-constant
    assert all((np.ptp(img, axis=0) > 0).any() and (np.ptp(img, axis=1) > 0).any() for img in diagonal)


def test_diagonal_wraparound_speckles_faithful_and_clipped():
    cfg = EdgeDataConfig(class_type=("diagonal",), data_per_class=30)
    x, _ = generate_edge_floats(cfg, "train", 30, None, np.random.RandomState(1))
    negative = x[..., 0] < 0
    assert negative.any()  # cubic-spline overshoot
    faithful, clipped = quantise(x), quantise(x, clip=True)
    assert (faithful[negative & (x[..., 0] * 255 <= -1)] > 200).all()  # wrapped to bright speckles
    assert (clipped[negative] == 0).all()
    assert quantise(np.array([-12.75 / 255])).tolist() == [244]
    a = build_edges({"data_per_class": 10, "class_type": ["diagonal"]})
    b = build_edges({"data_per_class": 10, "class_type": ["diagonal"], "clip_before_quantise": True})
    assert (a.x_train - b.x_train).max() > 0.75


def test_fix_options_change_only_their_quirk():
    cfg = {"data_per_class": 10, "class_type": ["both"]}
    cross = _imgs(build_edges(cfg).x_train)
    for img in cross:  # faithful: row band and column band cover the same index range
        assert _band_indices([img], 0) == _band_indices([img], 1) != set()
    indep = _imgs(build_edges({**cfg, "both_independent_locations": True}).x_train)
    assert any(_band_indices([i], 0) != _band_indices([i], 1) for i in indep)
    with pytest.raises(ConfigError, match="vertical_intensity_fix"):
        EdgeDataConfig(num_vertical_edge=2)
    b = build_edges({"data_per_class": 5, "num_vertical_edge": 2, "vertical_intensity_fix": True})
    assert b.x_train.shape == (15, 1, 28, 28)


def test_notebook_stream_matches_global_dataset_sequence():
    """The notebook way: set the global seed, permutation, train sets 10..100, then valid."""
    np.random.seed(10)
    perm = np.arange(784)
    np.random.shuffle(perm)
    unperm = np.argsort(perm)
    base = {"use_permutation": True, "permutater": perm, "unpermutater": unperm}
    train = {n: EdgeDetectionDataset({**base, "data_per_class": n}, "train") for n in (10, 30, 50, 100)}
    valid = EdgeDetectionDataset({**base, "data_per_class": 50}, "valid", transform=ToTensor())
    b = build_edges({"data_per_class": 30, "use_permutation": True, "data_stream": "notebook"})
    assert np.array_equal(b.meta["permutation"], perm)
    assert np.array_equal((b.x_train[:, 0] * 255).round().byte().numpy(),
                          np.stack([np.asarray(img) for img in train[30].images]))
    assert torch.equal(b.x_val, torch.stack([valid[i][0] for i in range(len(valid))]))
    # Framework stream, same seed, no permutation: the first training set of the notebook.
    np.random.seed(10)
    first = EdgeDetectionDataset({"data_per_class": 10}, "train")
    fw = build_edges({"data_per_class": 10})
    assert np.array_equal(_imgs(fw.x_train * 255).round().astype(np.uint8),
                          np.stack([np.asarray(img) for img in first.images]))


def test_edge_detection_dataset_contract():
    np.random.seed(10)
    ds = EdgeDetectionDataset({"data_per_class": 4, "num_classes": 3}, "valid", transform=ToTensor())
    assert len(ds) == 12
    img, label = ds[torch.tensor(5)]
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1 and label.dtype == np.int64 and label == 1
    mean, std = ds.get_image_statistics()
    assert 0 < mean < 1 and std > 0
    assert ds.get_permutater() is None and ds.get_unpermutater() is None
    pil, _ = EdgeDetectionDataset({"data_per_class": 2}, "test")[0]
    assert pil.mode == "L" and pil.size == (28, 28)
    with pytest.raises(AssertionError):
        EdgeDetectionDataset({"data_per_class": 2}, "validation")
    with pytest.raises(AssertionError):
        EdgeDetectionDataset({"data_per_class": 2, "num_classes": 5}, "train")
    with pytest.raises(AssertionError):
        EdgeDetectionDataset({"data_per_class": 2, "use_permutation": True}, "train")


@pytest.mark.parametrize("cfg,needle", [
    ({"class_type": ["horizontal", "curvy"]}, "curvy"),
    ({"class_type": ["none", "none"]}, "repeats"),
    ({"class_type": []}, "class_type"),
    ({"data_per_class": 0}, "data_per_class=0"),
    ({"valid_per_class": -1}, "valid_per_class=-1"),
    ({"min_edge_width": 5}, "min_edge_width=5"),
    ({"min_edge_intensity": 0.9, "max_edge_intensity": 0.5}, "min_edge_intensity=0.9"),
    ({"max_background_intensity": 1.5}, "max_background_intensity=1.5"),
    ({"possible_edge_location_ratio": 0.0}, "possible_edge_location_ratio=0.0"),
    ({"possible_edge_location_ratio": 1.5}, "possible_edge_location_ratio=1.5"),
    ({"possible_edge_location_ratio": 0.1}, "training half"),
    ({"spatial_resolution": 4}, "spatial_resolution=4"),
    ({"class_type": ["diagonal"], "max_edge_width": 2}, "max_edge_width=2"),
    ({"data_stream": "fast"}, "fast"),
    ({"data_per_class": "10"}, "data_per_class"),
    ({"permutation_seed": -1}, "permutation_seed=-1"),
    ({"num_classes": 5}, "num_classes=5"),
    ({"seed": 1.5}, "seed=1.5"),
])
def test_bad_config_raises_config_error(cfg, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        build_edges(cfg)
