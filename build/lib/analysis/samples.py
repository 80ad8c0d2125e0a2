"""Example inputs for the report's sample grid, read from the store (no dataset is rebuilt).

Every trial that logs artifacts stores the first few training inputs of each class as
`samples.npz` (core.store_schema.ART_SAMPLES; see trainables.artifacts.sample_inputs).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import download_artifact
from analysis.sweep_data import SampleImages, SweepData
from core import store_schema as S

# Config keys shown in the grid's title when the run has them.
TITLE_KEYS = ("class_type", "possible_edge_location_ratio", "use_permutation")


def _display(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 or float -> (N, H, W) grey or (N, H, W, 3) RGB in [0, 1]."""
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else np.clip(x.astype(np.float32), 0, 1)
    if x.shape[1] == 1:
        return x[:, 0]
    return np.moveaxis(x[:, :3], 1, -1)


def samples_from_npz(path: str | Path, title: str = "") -> SampleImages:
    """SampleImages from a stored samples.npz (x, y, class_names[, unpermutation])."""
    with np.load(path, allow_pickle=False) as z:
        x, y, names = z["x"], z["y"].astype(int), [str(n) for n in z["class_names"]]
        unperm = z["unpermutation"] if "unpermutation" in z.files else None
    restored = None
    if unperm is not None:
        n, c, h, w = x.shape
        restored = _display(x.reshape(n, c, h * w)[:, :, unperm].reshape(n, c, h, w))
    return SampleImages(images=_display(x), labels=y, class_names=names, unpermuted=restored, title=title)


def _title(run: pd.Series) -> str:
    dataset = run.get(S.TAG_DATASET)
    if not isinstance(dataset, str):
        dataset = str(run.get(S.TAG_PAIRING, "")).split("/")[-1]
    keys = [k for k in TITLE_KEYS if k in run and not _missing(run[k])]
    return f"{dataset} (" + ", ".join(f"{k}={run[k]}" for k in keys) + ")" if keys else dataset


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def load_samples(data: SweepData, notes: list[str] | None = None) -> SampleImages | None:
    """The example inputs logged by the sweep's first trial that has them, or None.

    Completed trials are tried first, one per pairing (the trials of a pairing all log samples
    or all do not); a note says why there is no grid when none logged any (trials on cached
    features or a regression task, or run with log_artifacts=False).
    """
    runs = data.runs
    if S.TAG_STATUS_REASON in runs:
        runs = runs.sort_values(S.TAG_STATUS_REASON, key=lambda s: s != S.STATUS_COMPLETED, kind="stable")
    if S.TAG_PAIRING in runs:
        runs = runs.drop_duplicates(S.TAG_PAIRING)
    uri = data.parent.get("tracking_uri", "")
    with tempfile.TemporaryDirectory(prefix="sweep-samples-") as tmp:
        for i, (_, run) in enumerate(runs.iterrows()):
            path = download_artifact(uri, run["run_id"], S.ART_SAMPLES, str(Path(tmp) / str(i)))
            if path is not None:
                return samples_from_npz(path, _title(run))
    if notes is not None:
        notes.append(f"sample grid skipped: no trial of this sweep logged {S.ART_SAMPLES} "
                     "(trials on cached features, regression tasks or with log_artifacts=False log none)")
    return None
