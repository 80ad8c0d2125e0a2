"""The per-cell results table that `sweep results` prints and the report embeds."""
from __future__ import annotations

import pandas as pd

from analysis.aggregate import aggregate, group_cells, sort_cells
from analysis.load import load_sweep
from analysis.stats import COLLAPSE_MARGIN, INTERVAL_NOTE
from analysis.style import fmt_mean_ci, fmt_value, is_accuracy
from analysis.sweep_data import NOT_CELL_KEYS, SweepData
from core.errors import ConfigError
from core import store_schema as S

FORMATS = ("table", "csv", "json")
TABLE_NOTE = (f"(accuracies: mean [{INTERVAL_NOTE}]; other metrics: mean ± half-width of the 95% t-interval; "
              f"at chance: seeds at most {COLLAPSE_MARGIN * 100:.0f} points above 1/classes; learned: seeds that lost "
              "no class (classes_lost = 0; without it, above chance + 5 points) with the exact 95% interval of the "
              "rate; learned seeds median: their median accuracy with the order-statistic 95% interval)")
# Columns shown (when present) in the text table and the HTML report; the CSV has them all.
HEADLINE = ("val_acc", "best_val_acc", "val_loss", "iou_original", "iou_shifted", "n_params",
            "train_time_s")
# `val_loss` is on the source notebook's scale (sum of the batches' mean losses / number of samples,
# about the per-sample loss / batch size); the table shows the per-sample mean where the trials
# logged it, and says which one a column holds.
LOSS_LABELS = {"val_loss_mean": "val_loss (per-sample mean)", "val_loss": "val_loss (notebook scale)"}


def result_keys(data: SweepData) -> list[str]:
    """Cell keys of the results table: pairing, then the other swept keys present."""
    return ["pairing"] + [k for k in data.swept_keys
                          if k not in NOT_CELL_KEYS and k != "pairing" and k in data.runs.columns]


def sweep_results(data: SweepData) -> pd.DataFrame:
    """Aggregate a loaded sweep: one row per cell, every final metric with mean/std/CI.

    Besides `n` (completed trials) the table counts `n_stopped` and `n_failed` trials, which
    are not part of the statistics.
    """
    runs = data.runs
    metrics = [m for m in data.metrics if m in runs.columns and pd.api.types.is_numeric_dtype(runs[m])]
    keys = result_keys(data)
    table = aggregate(runs, keys, metrics) if len(runs) else pd.DataFrame(columns=keys + ["n"])
    table = _with_empty_cells(table, runs, keys)
    for i, (reason, col) in enumerate(((S.STATUS_STOPPED_EARLY, "n_stopped"), (S.STATUS_FAILED, "n_failed"))):
        table.insert(len(keys) + 1 + i, col, [_count(runs, keys, row, reason) for _, row in table.iterrows()])
    acc = collapse_metric(table)
    if acc:
        table.insert(len(keys) + 3, "n_collapsed", [_collapsed(runs, keys, row, acc) for _, row in table.iterrows()])
        learned = pd.DataFrame([_learned(runs, keys, row, acc) for _, row in table.iterrows()], columns=LEARNED_COLUMNS,
                               index=table.index)
        for i, col in enumerate(LEARNED_COLUMNS):
            table.insert(len(keys) + 4 + i, col, learned[col])
    return table


# Collapse as an outcome: seeds that learned every class (k of n, Clopper-Pearson 95%) and the median
# accuracy of those seeds with its order-statistic interval (analysis.side).
LEARNED_COLUMNS = ("n_learned", "learned_low", "learned_high", "learned_median", "learned_median_low",
                   "learned_median_high")


def _learned(runs: pd.DataFrame, keys: list[str], row: pd.Series, metric: str) -> tuple:
    from analysis.side import summarise

    cell = _cell_rows(runs, keys, row)
    if S.TAG_STATUS_REASON in cell:
        cell = cell[cell[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED]
    side = summarise(cell, metric, intervals=False) if len(cell) else None
    if side is None or side.learned is None:
        return (float("nan"),) * len(LEARNED_COLUMNS)
    med, low, high, cover = side.learned_median
    return (side.learned, side.learned_low, side.learned_high, med, low if cover < 1 else float("nan"),
            high if cover < 1 else float("nan"))


def collapse_metric(table: pd.DataFrame) -> str | None:
    """The accuracy whose seeds at chance level are counted: val_acc, else best_val_acc."""
    return next((m for m in ("val_acc", "best_val_acc") if f"{m}_mean" in table), None)


def _collapsed(runs: pd.DataFrame, keys: list[str], row: pd.Series, metric: str) -> float:
    """Completed seeds of the cell whose `metric` is at chance (analysis.stats.collapsed)."""
    from analysis.side import num_classes
    from analysis.stats import collapsed

    cell = _cell_rows(runs, keys, row)
    if S.TAG_STATUS_REASON in cell:
        cell = cell[cell[S.TAG_STATUS_REASON] == S.STATUS_COMPLETED]
    if cell.empty:
        return 0
    return collapsed(pd.to_numeric(cell[metric], errors="coerce"), num_classes(cell))


def _cell_rows(runs: pd.DataFrame, keys: list[str], row: pd.Series) -> pd.DataFrame:
    mask = pd.Series(True, index=runs.index)
    for k in keys:
        v = row[k]
        mask &= runs[k].isna() if _missing(v) else runs[k].apply(lambda x, v=v: x == v)
    return runs[mask]


def _with_empty_cells(table: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Add a row (n = 0) for every cell without a completed trial, so its failures are counted."""
    if not len(runs) or not keys:
        return table

    def cell(values) -> tuple:
        return tuple("<missing>" if _missing(v) else str(v) for v in values)

    seen = {cell(row[k] for k in keys) for _, row in table.iterrows()}
    extra = []
    for key, _ in group_cells(runs, keys):
        key = key if isinstance(key, tuple) else (key,)
        if cell(key) not in seen:
            seen.add(cell(key))
            extra.append({**dict(zip(keys, key)), "n": 0})
    if not extra:
        return table
    added = pd.DataFrame(extra, columns=table.columns)
    return sort_cells(added if table.empty else pd.concat([table, added], ignore_index=True), keys)


def _count(runs: pd.DataFrame, keys: list[str], row: pd.Series, reason: str) -> int:
    if S.TAG_STATUS_REASON not in runs:
        return 0
    mask = runs[S.TAG_STATUS_REASON] == reason
    for k in keys:
        v = row[k]
        mask &= runs[k].isna() if _missing(v) else runs[k].apply(lambda x, v=v: x == v)
    return int(mask.sum())


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def results_table(tracking_uri: str, experiment: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """Load a sweep (an experiment's newest, or a named one) and aggregate it per cell.

    Raises:
        ConfigError: the experiment or sweep is not in the store.
    """
    return sweep_results(load_sweep(tracking_uri, experiment=experiment, sweep=sweep, histories=False))


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Readable form: cell keys, counts, "mean [low, high]" for the headline metrics, and the
    median of the collapse-counted accuracy next to its seeds at chance."""
    means = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    shown = [m for m in HEADLINE if m in means]
    if "val_loss" in shown and "val_loss_mean" in means:
        shown[shown.index("val_loss")] = "val_loss_mean"
    first = [c for c in table.columns if not any(c.startswith(f"{m}_") for m in means) and c != "n_collapsed"
             and c not in LEARNED_COLUMNS]
    out = table[first].copy()
    acc = collapse_metric(table)
    for m in shown:
        out[LOSS_LABELS.get(m, m)] = [fmt_interval(m, r[f"{m}_mean"], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
                                      for _, r in table.iterrows()]
        if m == acc:
            out[f"{m} median"] = [fmt_value(m, v) for v in table[f"{m}_median"]]
            if "n_collapsed" in table:
                out["at chance"] = [("n/a" if v != v else f"{int(v)}/{n}") for v, n in zip(table["n_collapsed"], table["n"])]
            if "n_learned" in table:
                out["learned"] = [_fmt_learned(r) for _, r in table.iterrows()]
                out["learned seeds median"] = [fmt_interval(m, r["learned_median"], r["learned_median_low"],
                                                            r["learned_median_high"]) for _, r in table.iterrows()]
    return out


def _fmt_learned(r: pd.Series) -> str:
    """"2/3 [9-99%]": seeds that learned every class, with the exact 95% interval of the rate."""
    k = r["n_learned"]
    if k != k:
        return "n/a"
    return f"{int(k)}/{int(r['n'])} [{100 * r['learned_low']:.0f}-{100 * r['learned_high']:.0f}%]"


def fmt_interval(metric: str, mean: float, low: float, high: float) -> str:
    """"92.0% [90.0, 94.0]" for accuracies (bounded bootstrap); "mean ± half" (t) for the rest."""
    if not is_accuracy(metric):
        return fmt_mean_ci(metric, mean, low, high)
    if mean != mean:
        return "n/a"
    if low != low:
        return f"{100 * mean:.1f}% [n/a]"
    return f"{100 * mean:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def format_results(df: pd.DataFrame, fmt: str = "table") -> str:
    """Render a results table.

    Args:
        df: output of `results_table` / `sweep_results`.
        fmt: "table" (aligned text with mean ± 95% CI), "csv" or "json" (every column).

    Raises:
        ConfigError: unknown format.
    """
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2)
    if fmt == "table":
        if df.empty:
            return "(no trials)"
        return display_table(df).to_string(index=False) + "\n" + TABLE_NOTE
    raise ConfigError(f"results format {fmt!r} is not known; use one of {', '.join(FORMATS)}")
