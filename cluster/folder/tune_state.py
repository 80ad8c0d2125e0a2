"""Guarding the Tune state `sweep resume` unpickles.

`Tuner.restore` unpickles `tuner.pkl` and cloudpickled fields of `experiment_state-*.json`
(and searcher/scheduler `.pkl` files): whoever can write a sweep folder can make `sweep resume`
run code as the user who resumes. Before Ray starts, `verify` refuses (ConfigError, exit 2):

1. any file or folder of the sweep that is owned by another user or writable by group/others
   (a shared folder where someone else could have planted state);
2. a `tuner.pkl` whose SHA-256 differs from the one recorded when the sweep started, in
   sweep.json and, out of the folder writer's reach, as a tag of the MLflow parent run;
3. when the previous driver ended cleanly (finished, Ctrl-C, SIGTERM), any Tune state file that
   differs from the hashes recorded at that moment (after a SIGKILL there is no such record and
   only 1 and 2 apply).

What remains (README "Limits"): someone who can write as the same user, or who can change
both the folder and the MLflow store, is not stopped; cloud storage URIs get no checks.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from core.errors import ConfigError

TUNER_PKL = "tuner.pkl"
TAG_TUNER_SHA = "tuner_pkl_sha256"
# Files Tune (or our schedulers) deserialize with pickle/cloudpickle on restore.
STATE_GLOBS = ("tuner.pkl", "experiment_state-*.json", "*.pkl", "*/error.pkl")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def state_files(folder: Path) -> list[Path]:
    out: set[Path] = set()
    for pattern in STATE_GLOBS:
        out |= {p for p in folder.glob(pattern) if p.is_file()}
    return sorted(out)


def state_hashes(folder: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every Tune state file in the sweep folder."""
    return {str(p.relative_to(folder)): sha256(p) for p in state_files(folder)}


def tuner_hash(folder: Path) -> str | None:
    path = Path(folder) / TUNER_PKL
    return sha256(path) if path.is_file() else None


def check_permissions(folder: Path) -> None:
    """Refuse a sweep folder (or anything in it) owned by someone else or writable by group/others."""
    uid = os.getuid()
    for path in [folder, *folder.rglob("*")]:
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            if path.name in (TUNER_PKL,) or path.suffix in (".pkl", ".json"):
                raise ConfigError(f"{path} is a symbolic link; Tune state must be a plain file of the sweep")
            continue
        if st.st_uid != uid:
            raise ConfigError(f"{path} belongs to another user (uid {st.st_uid}); `sweep resume` unpickles this "
                              "folder's Tune state, so it refuses folders others control")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                              f"`sweep resume` unpickles this folder's Tune state: chmod go-w -R {folder}")


def verify(folder: Path, tuner_sha: str | None, ended: dict[str, str] | None, parent_tags: dict[str, str]) -> None:
    """All three checks of the module docstring; ConfigError names the file that failed.

    Args:
        folder: the sweep folder.
        tuner_sha: tuner.pkl's SHA-256 as sweep.json records it (None: not recorded).
        ended: the state files' hashes as the last driver left them (None: it did not exit cleanly).
        parent_tags: the MLflow parent run's tags (its own record of tuner.pkl's hash).
    """
    check_permissions(folder)
    recorded = {tuner_sha, parent_tags.get(TAG_TUNER_SHA)} - {None}
    current = tuner_hash(folder)
    if len(recorded) > 1:
        raise ConfigError(f"the tuner.pkl hash in {folder}/sweep.json differs from the one in the MLflow parent "
                          "run: the sweep folder was changed; refusing to unpickle it")
    if recorded and current is not None and current not in recorded:
        raise ConfigError(f"{folder / TUNER_PKL} changed since the sweep started (SHA-256 {current[:12]}..., "
                          f"recorded {next(iter(recorded))[:12]}...); refusing to unpickle it")
    if ended:
        now = state_hashes(folder)
        for rel, digest in ended.items():
            if now.get(rel, digest) != digest:
                raise ConfigError(f"{folder / rel} changed after the sweep's driver exited; refusing to unpickle it")
        extra = sorted(set(now) - set(ended))
        if extra:
            raise ConfigError(f"{folder / extra[0]} appeared after the sweep's driver exited; refusing to unpickle it")
