"""Tables drawn as figures: the leaderboard and the best configurations of a search."""
from __future__ import annotations

import pandas as pd

from analysis.aggregate import aggregate
from analysis.plots.common import Figures, table_figure
from analysis.style import cell_label, fmt_mean_ci, fmt_value
from analysis.sweep_data import SweepData

TOP = 10


def leaderboard(data: SweepData) -> Figures:
    """Cells ranked by mean best validation accuracy, with last-epoch accuracy and parameters."""
    runs = data.completed
    rank_by = "best_val_acc" if "best_val_acc" in runs else "val_acc"
    if rank_by not in runs or runs.empty:
        return {}
    metrics = [m for m in ("best_val_acc", "val_acc", "n_params", "n_trainable_params") if m in runs]
    table = aggregate(runs, data.cell_keys, metrics).sort_values(f"{rank_by}_mean", ascending=False)
    rows = []
    for rank, (_, r) in enumerate(table.iterrows(), 1):
        row = {"#": rank, "model": r["series"],
               "cell": cell_label({k: r[k] for k in data.cell_keys if k != "series" and r[k] == r[k]})}
        for m, title in (("best_val_acc", "best val acc"), ("val_acc", "last val acc")):
            if m in metrics:
                row[title] = fmt_mean_ci(m, r[f"{m}_mean"], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
        for m, title in (("n_params", "params"), ("n_trainable_params", "trainable")):
            if m in metrics:
                row[title] = fmt_value(m, r[f"{m}_mean"])
        row["n"] = r["n"]
        rows.append(row)
    df = pd.DataFrame(rows)
    if (df["cell"] == "all runs").all():
        df = df.drop(columns="cell")
    return {"leaderboard": table_figure(df, f"{data.name}: leaderboard (mean [95% interval] over seeds)")}


def best_configs(data: SweepData, metric: str = "val_acc", top: int = TOP) -> Figures:
    """The `top` completed trials by `metric`, with the values of every swept key."""
    runs = data.completed
    if metric not in runs or runs.empty:
        return {}
    mode = (data.parent.get("declaration") or {}).get("search") or {}
    ascending = isinstance(mode, dict) and mode.get("mode") == "min"
    best = runs.sort_values(metric, ascending=ascending).head(top)
    keys = ["series"] + [k for k in data.swept_keys if k in runs and k not in ("pairing", "series")]
    rows = []
    for rank, (_, r) in enumerate(best.iterrows(), 1):
        row = {"#": rank, **{k: _short(r[k]) for k in keys}, metric: fmt_value(metric, r[metric])}
        for extra in ("best_val_acc", "epochs_completed"):
            if extra in r and extra != metric:
                row[extra] = fmt_value(extra, r[extra])
        if "seed" in r:
            row["seed"] = r["seed"]
        rows.append(row)
    return {"best_configs": table_figure(pd.DataFrame(rows), f"{data.name}: best {len(rows)} trials by {metric}")}


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
