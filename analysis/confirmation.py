"""A search's best trial per model, beside its confirmation over fresh seeds (`sweep confirm`).

The search's parent run names its confirmation sweeps in the tag `confirmed_by`; each
confirmation's parent run stores the search trial it reruns in the tag `search_best`.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from analysis.aggregate import aggregate
from analysis.style import cell_label, fmt_mean_ci, fmt_value
from analysis.sweep_data import SweepData
from core.errors import ConfigError
from core import store_schema as S
from search_spaces.experiment import DEFAULT_METRIC, objective as declared_objective

COLUMNS = ["model", "rank", "config", "search_best", "confirmed_mean", "confirmed_ci_low", "confirmed_ci_high",
           "n", "seeds", "confirmation"]


def objective(data: SweepData) -> tuple[str, str]:
    """(metric, mode) the search optimised: its stored declaration, else the default."""
    return declared_objective((data.parent.get("declaration") or {}).get("search"))


def is_search(data: SweepData) -> bool:
    """A sweep that sampled its configurations (not a grid), or one that has been confirmed."""
    tags = data.parent.get("tags", {})
    return tags.get(S.TAG_SEARCH, "grid") not in ("grid", "") or bool(tags.get(S.TAG_CONFIRMED_BY))


def best_per_model(data: SweepData, metric: str | None = None, mode: str | None = None) -> pd.DataFrame:
    """The best completed trial of each model (ties: lower val_loss), with its searched values.

    Returns:
        DataFrame with model, config ("lr=0.01, kernel_size=5"), search_best, run_id.
    """
    d_metric, d_mode = objective(data)
    metric, mode = metric or d_metric, mode or d_mode
    runs = data.completed
    if runs.empty or metric not in runs:
        return pd.DataFrame(columns=["model", "config", "search_best", "run_id"])
    keys = [k for k in data.swept_keys if k not in ("pairing", "seed") and k in runs]
    rows = []
    for pairing, group in runs.groupby("pairing", sort=True):
        group = group[pd.to_numeric(group[metric], errors="coerce").notna()]
        if group.empty:
            continue
        order = [metric] + (["val_loss"] if "val_loss" in group and metric != "val_loss" else [])
        top = group.sort_values(order, ascending=[mode != "max"] + [True] * (len(order) - 1)).iloc[0]
        cfg = {k: top[k] for k in keys if not _missing(top[k])}
        rows.append({"model": pairing, "config": cell_label(cfg), "search_best": float(top[metric]),
                     "run_id": top["run_id"]})
    return pd.DataFrame(rows, columns=["model", "config", "search_best", "run_id"])


def confirmation_sweeps(tracking_uri: str, data: SweepData) -> list[str]:
    """Names of the sweeps confirming this search: its `confirmed_by` tag, else a tag search."""
    names = [n for n in data.parent.get("tags", {}).get(S.TAG_CONFIRMED_BY, "").split(",") if n]
    if names:
        return names
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, f"tags.{S.TAG_ROLE} = '{S.ROLE_SWEEP}' and tags.{S.TAG_CONFIRMS} = '{data.name}'") if ids else []
    return sorted({r.data.tags[S.TAG_SWEEP] for r in runs})


def confirmation_table(tracking_uri: str, search: str | SweepData) -> pd.DataFrame:
    """One row per confirmed configuration (and per unconfirmed model): search best vs confirmed mean ± CI.

    Args:
        tracking_uri: MLflow store holding the search and its confirmations.
        search: the search sweep's name, or its loaded SweepData.

    Returns:
        DataFrame with COLUMNS; confirmed_* are NaN for models nobody confirmed yet.
    """
    from analysis.load import load_sweep

    data = load_sweep(tracking_uri, sweep=search) if isinstance(search, str) else search
    metric, _ = objective(data)
    rows, confirmed = [], set()
    for name in confirmation_sweeps(tracking_uri, data):
        try:
            conf = load_sweep(tracking_uri, sweep=name)
        except ConfigError:
            continue  # the tag names a sweep whose runs were deleted
        tags = conf.parent.get("tags", {})
        m = tags.get(S.TAG_CONFIRM_METRIC, metric)
        best = json.loads(tags.get(S.TAG_SEARCH_BEST, "{}"))
        agg = aggregate(conf.runs, ["pairing"], [m]) if len(conf.runs) else pd.DataFrame()
        done = conf.completed
        for _, r in agg.iterrows():
            b = best.get(r["pairing"], {})
            seeds = sorted(int(s) for s in done.loc[done["pairing"] == r["pairing"], "seed"]) if "seed" in done else []
            rows.append({"model": r["pairing"], "rank": int(tags.get(S.TAG_CONFIRM_RANK, 1)),
                         "config": cell_label(b.get("searched") or {}), "search_best": b.get("value", math.nan),
                         "confirmed_mean": r[f"{m}_mean"], "confirmed_ci_low": r[f"{m}_ci_low"],
                         "confirmed_ci_high": r[f"{m}_ci_high"], "n": int(r["n"]),
                         "seeds": ",".join(map(str, seeds)), "confirmation": name})
            confirmed.add(r["pairing"])
    for _, b in best_per_model(data, metric).iterrows():
        if b["model"] not in confirmed:
            rows.append({"model": b["model"], "rank": 1, "config": b["config"], "search_best": b["search_best"],
                         "confirmed_mean": math.nan, "confirmed_ci_low": math.nan, "confirmed_ci_high": math.nan,
                         "n": 0, "seeds": "", "confirmation": ""})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["metric"] = metric
    return table.sort_values(["model", "rank"], ignore_index=True)


def display_confirmation(table: pd.DataFrame) -> pd.DataFrame:
    """Readable strings: the search's single best trial and the confirmed mean ± CI."""
    metric = table.attrs.get("metric", DEFAULT_METRIC)
    out = table[["model", "rank", "config"]].copy()
    out[f"search best {metric}"] = [fmt_value(metric, v) for v in table["search_best"]]
    out[f"confirmed {metric} (mean [95% interval])"] = [
        fmt_mean_ci(metric, r.confirmed_mean, r.confirmed_ci_low, r.confirmed_ci_high) if r.n else
        "not confirmed yet (sweep confirm)" for r in table.itertuples()]
    out["n"], out["seeds"], out["confirmation"] = table["n"], table["seeds"], table["confirmation"]
    return out


def format_confirmation(table: pd.DataFrame) -> str:
    """Aligned text of `display_confirmation`."""
    return "(no completed trials)" if table.empty else display_confirmation(table).to_string(index=False)


def confirmation_html(data: SweepData) -> str:
    """The report section of a search: best configuration per model beside its confirmation; "" otherwise."""
    if not is_search(data) or not data.parent.get("tracking_uri"):
        return ""
    from analysis import html as H

    table = confirmation_table(data.parent["tracking_uri"], data)
    if table.empty:
        return ""
    note = ("<p class=\"muted\">A search's best trial is an optimistic estimate (the best of many noisy "
            "draws); the confirmation reruns that configuration with fresh seeds.</p>")
    return note + H.table_html(display_confirmation(table))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)
