"""Loading a trial's Tune checkpoint without trusting it.

A checkpoint is a folder holding one torch file (`trial_state.pt`), read with
`weights_only=True`: a planted pickle cannot run code. A checkpoint that does not load
(garbage, truncated, a pickle weights_only refuses, not a state dict) is *corrupt*; instead of
failing the trial on every retry, `restore_state` falls back, in order, to:

1. the newest older checkpoint of the same trial that loads (Tune keeps a few: num_to_keep);
2. no checkpoint at all: the trial starts from epoch 1, and its MLflow run decides the rest
   (a FINISHED run is reported back without retraining: trainables.lifecycle._finished_earlier;
   an unfinished one is retrained, steps already in MLflow are not logged twice).

Either way the fallback is printed to the trial's log and, through `tag_fallback`, recorded on
the trial's MLflow run as the tag `checkpoint_corrupt`.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from core import store_schema as S

log = logging.getLogger(__name__)
TAG_CORRUPT = S.TAG_CHECKPOINT_CORRUPT
_NOTES: dict[str, str] = {}  # trial id -> what was corrupt and what was used instead (this process)


class CorruptCheckpoint(Exception):
    """A checkpoint file that does not load as a trial state."""


def load_state_file(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load(weights_only=True) and the shape every trial state has (a dict with an int epoch,
    or a packed trial's dict of states).

    Raises:
        CorruptCheckpoint: missing, unreadable, refused by weights_only, or not a state dict.
    """
    import torch

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # UnpicklingError, RuntimeError (zip), EOFError, OSError
        raise CorruptCheckpoint(f"{path}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}") from None
    if not isinstance(state, dict) or not state:
        raise CorruptCheckpoint(f"{path}: holds a {type(state).__name__}, not a trial state")
    if "epoch" in state and (not isinstance(state["epoch"], int) or state["epoch"] < 0):
        raise CorruptCheckpoint(f"{path}: epoch {state['epoch']!r} is not a count of epochs")
    return state


def _index(folder: Path) -> int:
    m = re.search(r"checkpoint_(\d+)$", folder.name)
    return int(m.group(1)) if m else -1


def older_checkpoints(folder: Path) -> list[Path]:
    """The trial's other checkpoint folders older than `folder`, newest first."""
    mine = _index(folder)
    siblings = [p for p in folder.parent.glob("checkpoint_*") if p.is_dir() and -1 < _index(p) < mine]
    return sorted(siblings, key=_index, reverse=True)


def restore_state(checkpoint, filename: str, trial_id: str | None = None) -> dict[str, Any] | None:
    """The state to resume from: Tune's checkpoint if it loads, else an older one, else None.

    Args:
        checkpoint: a ray.tune.Checkpoint (from tune.get_checkpoint()).
        filename: the state file inside a checkpoint folder.
        trial_id: used to remember a fallback for `tag_fallback`.
    """
    local = _local_path(checkpoint)
    if local is None:  # cloud storage: only the checkpoint Tune hands over can be fetched
        with checkpoint.as_directory() as d:
            try:
                return load_state_file(os.path.join(d, filename))
            except CorruptCheckpoint as exc:
                return _fallback(trial_id, f"checkpoint {exc}", None)
    try:
        return load_state_file(local / filename)
    except CorruptCheckpoint as exc:
        first = str(exc)
    for older in older_checkpoints(local):
        try:
            state = load_state_file(older / filename)
        except CorruptCheckpoint:
            continue
        _fallback(trial_id, f"checkpoint {first}", f"the older checkpoint {older.name} (epoch {state.get('epoch')})")
        return state
    return _fallback(trial_id, f"checkpoint {first}", None)


def _local_path(checkpoint) -> Path | None:
    fs = getattr(checkpoint, "filesystem", None)
    if fs is not None and getattr(fs, "type_name", "local") != "local":
        return None
    return Path(checkpoint.path)


def _fallback(trial_id: str | None, what: str, used: str | None) -> None:
    note = f"corrupt {what}; resumed from {used or 'no checkpoint (epoch 1; a FINISHED MLflow run is kept as it is)'}"
    print(f"trial {trial_id or '?'}: {note}", file=sys.stderr, flush=True)
    if trial_id:
        _NOTES[trial_id] = note
    return None


def tag_fallback(tracking, trial_id: str | None) -> None:
    """Tag the trial's MLflow run with the fallback `restore_state` took (if any) for this trial."""
    note = _NOTES.pop(trial_id, None) if trial_id else None
    if note is None or tracking is None:
        return
    try:
        from trainables.tracking import trial_ops

        ops = trial_ops(tracking)
        run_id = ops.find_run(tracking.experiment_id, S.trial_filter(tracking.parent_run_id, trial_id))
        if run_id is not None:
            ops.log_batch(run_id, tags=((TAG_CORRUPT, note[:5000]),))
    except Exception as exc:  # the note is also in the trial's log; never fail the trial over it
        log.warning("could not tag trial %s with its checkpoint fallback: %s", trial_id, exc)
