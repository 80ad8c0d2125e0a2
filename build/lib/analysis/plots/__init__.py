"""Plot registry: name (as experiments list it in `plots`) -> function(SweepData) -> {stem: Figure}.

Every function takes DataFrames only (a SweepData) and returns {} when the sweep logged
nothing it can draw, so a report lists what is missing instead of failing.
"""
from __future__ import annotations

from collections.abc import Callable

from analysis.plots.accuracy import accuracy_vs_data, accuracy_vs_epochs, lr_kernel_heatmap, params_vs_accuracy
from analysis.plots.common import Figures
from analysis.plots.confusion import confusion
from analysis.plots.curves import curves
from analysis.plots.explosion import param_explosion
from analysis.plots.kernels import kernels
from analysis.plots.samples import samples
from analysis.plots.search import asha_rungs, search_scatter
from analysis.plots.shift import accuracy_vs_shift, iou_table
from analysis.plots.tables import best_configs, leaderboard
from analysis.sweep_data import SweepData
from core.errors import UnknownName

PLOTS: dict[str, Callable[[SweepData], Figures]] = {
    "accuracy_vs_data": accuracy_vs_data,
    "curves": curves,
    "kernels": kernels,
    "confusion": confusion,
    "params_vs_accuracy": params_vs_accuracy,
    "lr_kernel_heatmap": lr_kernel_heatmap,
    "accuracy_vs_epochs": accuracy_vs_epochs,
    "accuracy_vs_shift": accuracy_vs_shift,
    "leaderboard": leaderboard,
    "param_explosion": param_explosion,
    "samples": samples,
    "iou_table": iou_table,
    "search_scatter": search_scatter,
    "asha_rungs": asha_rungs,
    "best_configs": best_configs,
}

# What a plot needs, said in the report when it has nothing to draw.
NEEDS: dict[str, str] = {
    "accuracy_vs_data": "completed runs with a data_per_class param and val_acc",
    "curves": "per-epoch train/val loss and accuracy histories",
    "kernels": "kernels/conv1_initial.npy and conv1_final.npy artifacts (CNN runs)",
    "confusion": "confusion_matrix.json artifacts",
    "params_vs_accuracy": "n_params and val_acc metrics",
    "lr_kernel_heatmap": "lr and kernel_size params with val_acc",
    "accuracy_vs_epochs": "an epochs param and val_acc",
    "accuracy_vs_shift": "shift_acc/shift_confidence histories or iou_original/iou_shifted",
    "leaderboard": "completed runs with best_val_acc or val_acc",
    "param_explosion": "nothing (computed)",
    "samples": "a samples.npz artifact (example inputs) logged by a trial",
    "iou_table": "iou_original and iou_shifted metrics",
    "search_scatter": "numeric swept params that vary between trials",
    "asha_rungs": "epochs_completed or val_acc histories",
    "best_configs": "completed runs with val_acc",
}


def get_plot(name: str) -> Callable[[SweepData], Figures]:
    """Look up a plot function; raises UnknownName with close matches."""
    try:
        return PLOTS[name]
    except KeyError:
        raise UnknownName("plot", name, PLOTS) from None


__all__ = ["NEEDS", "PLOTS", "get_plot"]
