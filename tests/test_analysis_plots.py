"""Every registered plot renders a non-empty PNG from fabricated frames (parametrized over PLOTS)."""
import io

import numpy as np
import pandas as pd
import pytest
from analysis_fakes import PAIRINGS, fake_sweep_data
from matplotlib.image import imread

from analysis.param_explosion import explosion_table, mlp_param_count
from analysis.plots import PLOTS, get_plot
from analysis.style import MODEL_COLOURS, colour, figure_png
from analysis.sweep_data import SweepData, empty_sweep
from core.errors import UnknownName

EXPERIMENT_PLOT_NAMES = ["accuracy_vs_data", "curves", "kernels", "confusion", "params_vs_accuracy",
                         "lr_kernel_heatmap", "accuracy_vs_epochs", "accuracy_vs_shift", "leaderboard",
                         "param_explosion", "samples", "iou_table", "search_scatter", "asha_rungs",
                         "best_configs"]


@pytest.fixture(scope="module")
def data() -> SweepData:
    return fake_sweep_data()


def test_registry_has_every_name_experiments_use():
    assert sorted(PLOTS) == sorted(EXPERIMENT_PLOT_NAMES)
    with pytest.raises(UnknownName, match="accuracy_vs_data"):
        get_plot("accuracy_vs_dat")


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_renders_png(name, data):
    figures = PLOTS[name](data)
    assert figures, f"{name} drew nothing from a sweep that has all it needs"
    for stem, fig in figures.items():
        png = figure_png(fig)
        img = imread(io.BytesIO(png))
        assert img.shape[0] > 100 and img.shape[1] > 200, stem
        assert img[..., :3].std() > 0.02, f"{stem} is blank"


@pytest.mark.parametrize("name", sorted(set(PLOTS) - {"param_explosion"}))
def test_plot_without_data_draws_nothing(name):
    assert PLOTS[name](empty_sweep("nothing")) == {}


def test_curves_one_figure_per_cell_and_kernels_per_model(data):
    assert sorted(PLOTS["curves"](data)) == ["curves_data_per_class_10", "curves_data_per_class_30"]
    assert list(PLOTS["kernels"](data)) == ["kernels_simple_cnn_edges"]  # the MLP has no kernels
    assert sorted(PLOTS["samples"](data)) == ["samples", "samples_unpermuted"]


def test_failed_runs_are_not_plotted_as_results(data):
    figure = PLOTS["accuracy_vs_data"](data)["accuracy_vs_data"]
    ys = [y for line in figure.axes[0].lines for y in line.get_ydata()]
    assert min(ys) > 50  # the failed trial logged val_acc=0 and must not pull a mean down


def test_compared_experiment_gets_its_own_series(data):
    merged = data.merge(fake_sweep_data())
    assert set(merged.runs["series"]) == set(PAIRINGS) | {f"{p} · fake-exp" for p in PAIRINGS}
    labels = [t.get_text() for t in PLOTS["accuracy_vs_data"](merged)["accuracy_vs_data"].axes[0].get_legend().get_texts()]
    assert len(labels) == 4


def test_colours_are_stable_and_distinct_for_the_compared_models():
    assert colour(PAIRINGS[0]) == MODEL_COLOURS["simple_cnn"] == colour("simple_cnn/edges")
    assert colour(PAIRINGS[0]) != colour(PAIRINGS[1])



UNKNOWN = ["unknown_model/edges", "other_net/cifar10", "x/y", "simple_cnn/edges · other-exp", "mlp7/mnist"]


def test_unknown_models_get_a_fallback_colour_that_survives_a_new_process():
    """Colours of unknown series come from a stable hash: a process with another PYTHONHASHSEED
    (Python's hash() would change) picks the same ones."""
    import json
    import os
    import subprocess
    import sys

    from analysis.style import FALLBACK

    here = [colour(s) for s in UNKNOWN]
    assert all(c in FALLBACK for c in here) and len(set(here)) > 1
    code = f"import json; from analysis.style import colour; print(json.dumps([colour(s) for s in {UNKNOWN!r}]))"
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": seed})
    assert json.loads(out.stdout) == here


def test_param_explosion_counts_match_spec():
    assert [p for _, _, p in explosion_table()] == [820_874, 50_366_090, 707_823_242, 6_370_133_642]
    assert mlp_param_count(784, (50, 10), 3) == 39_793  # ThreeLayerMLP, SPEC 2.1
    fig = PLOTS["param_explosion"](None)["param_explosion"]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.8M", "50.4M", "707.8M", "6,370.1M"]


def test_confusion_is_the_mean_over_seeds():
    runs = pd.DataFrame({"run_id": ["a", "b"], "pairing": ["m/d", "m/d"], "seed": [1, 2],
                         "status_reason": ["completed", "completed"]})
    conf = pd.DataFrame({"run_id": ["a", "b"], "labels": [["x", "y"]] * 2,
                         "matrix": [np.array([[2.0, 0], [1, 1]]), np.array([[1.0, 1], [0, 2]])]})
    data = SweepData(parent={"name": "c"}, runs=runs, confusion=conf)
    ax = PLOTS["confusion"](data)["confusion"].axes[0]
    assert [t.get_text() for t in ax.texts] == ["1.5", "0.5", "0.5", "1.5"]


def test_shift_plot_and_curves_show_every_seed_within_bounds(data):
    """Issue 20: seed points on every accuracy plot (shift included), curves with one line per seed,
    and bands bounded like the accuracies (never past 100%)."""
    from matplotlib.collections import PathCollection, PolyCollection

    fig = PLOTS["accuracy_vs_shift"](data)["accuracy_vs_shift"]
    ax = fig.axes[0]
    points = [y for c in ax.collections if isinstance(c, PathCollection) for _, y in c.get_offsets()]
    shift = data.history_of("shift_acc")
    shift = shift[shift["status_reason"] == "completed"] if "status_reason" in shift else shift
    assert sorted(points) == pytest.approx(sorted(100 * shift["value"]))
    for name, fig in PLOTS["curves"](data).items():
        acc = fig.axes[1]  # validation accuracy panel
        n_runs = data.completed.shape[0]
        seed_lines = [ln for ln in acc.lines if ln.get_linewidth() < 1]
        assert len(seed_lines) >= 1 and len(seed_lines) <= n_runs, name
        bands = [c for c in acc.collections if isinstance(c, PolyCollection)]
        assert all(p.get_extents().y1 <= 100.0 + 1e-9 and p.get_extents().y0 >= -1e-9
                   for b in bands for p in b.get_paths()), name


def test_accuracy_differences_are_not_accuracies_and_intervals_are_not_plus_minus():
    from analysis.style import fmt_mean_ci, is_accuracy

    assert is_accuracy("val_acc") and is_accuracy("shift_acc_at_max") and not is_accuracy("shift_acc_drop")
    assert fmt_mean_ci("val_acc", 0.9, 0.8, 0.95) == "90.0% [80.0, 95.0]"  # asymmetric: both ends
    assert fmt_mean_ci("val_loss", 0.4, 0.3, 0.5) == "0.4 ± 0.1"  # a symmetric t-interval keeps ±
    assert fmt_mean_ci("shift_acc_drop", -0.05, -0.1, 0.02) == "-0.05 [-0.1, 0.02]"
