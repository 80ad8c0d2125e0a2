"""Guarding the sweep folder `sweep resume` hands to Tune.

`Tuner.restore` unpickles `tuner.pkl`, cloudpickled fields of `experiment_state-*.json`, the
newest `basic-variant-state-*.json`, searcher/scheduler `.pkl` files, ...: whoever can write a
sweep folder can make `sweep resume` run code as the user who resumes. Before the lock is taken,
Ray starts or Tune opens anything, `verify` refuses (ConfigError, exit 2):

1. a symbolic link anywhere in the folder (sweep.lock, sweep.json, driver.log, trial folders
   included: nothing is followed, no link target is ever written), or anything that is not a
   plain file or folder (fifo, socket, device);
2. any file or folder owned by another user or writable by group/others (a shared folder where
   someone else could have planted state);
3. a Tune state file Tune would read (the newest `experiment_state-*.json`, searcher state, ...)
   that is cut short (a full disk), when the driver's last good copy of Tune's state
   (cluster.folder.tune_copy, checked against the parent run's tag) cannot replace it;
4. a `tuner.pkl` whose SHA-256 differs from the one recorded when the sweep started, in
   sweep.json and, out of the folder writer's reach, as a tag of the MLflow parent run;
5. when the previous driver ended cleanly (finished, failed, Ctrl-C, SIGTERM, a full disk...),
   any file that differs from the manifest recorded at that moment: every file of the folder by
   name and SHA-256, not a list of names Tune is known to read. A file added, removed or changed
   since is refused; the one exception is a change to a checkpoint's payload
   (`checkpoint_*/trial_state.pt`), which only the trainable reads, with
   `torch.load(weights_only=True)`, and which it treats as corrupt when it does not load
   (README "Corrupt checkpoints"). After a SIGKILL there is no manifest and 1-4 apply.

What remains (README "Limits"): someone who can write as the same user, or who can change
both the folder and the MLflow store, is not stopped; cloud storage URIs get no checks.
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from cluster.folder import tune_copy
from core.errors import ConfigError

TUNER_PKL = "tuner.pkl"
TAG_TUNER_SHA = "tuner_pkl_sha256"
# Files of the folder the driver itself writes and reads (never Tune): left out of the manifest.
DRIVER_FILES = frozenset({"sweep.json", ".sweep.json.tmp", "sweep.lock", "driver.log"})
MANIFEST_KIND = "every-file"  # sweep.json["tune_state_manifest"]; absent: an older driver's partial record
EXPERIMENT_STATE = "experiment_state-"
CHECKPOINT_PAYLOAD = "trial_state.pt"  # trainables.trainable.CHECKPOINT_FILE (weights_only loads)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", opener=_nofollow) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _nofollow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


def entries(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """(path, lstat) of the folder and everything under it, never following a link."""
    folder = Path(folder)
    yield folder, folder.lstat()
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            try:
                yield path, path.lstat()
            except FileNotFoundError:
                continue


def check_tree(folder: Path) -> None:
    """Checks 1 and 2 of the module docstring, on lstat data only (nothing opened)."""
    uid = os.getuid()
    folder = Path(folder)
    try:
        top = folder.lstat()
    except OSError as exc:
        raise ConfigError(f"sweep folder {folder} cannot be read: {exc.strerror}") from None
    if stat.S_ISLNK(top.st_mode):
        raise ConfigError(f"sweep folder {folder} is a symbolic link (to {os.path.realpath(folder)}); "
                          "`sweep resume` follows no link: pass --storage-path with the real folder")
    for path, st in entries(folder):
        if stat.S_ISLNK(st.st_mode):
            raise ConfigError(f"{path} is a symbolic link (to {os.readlink(path)!r}); a sweep folder holds only "
                              "files the driver and Tune wrote, so `sweep resume` refuses it. Remove the link")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise ConfigError(f"{path} is not a plain file or folder; `sweep resume` refuses it. Remove it")
        if st.st_uid != uid:
            raise ConfigError(f"{path} belongs to another user (uid {st.st_uid}); `sweep resume` unpickles this "
                              "folder's Tune state, so it refuses folders others control")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                              f"`sweep resume` unpickles this folder's Tune state: chmod go-w -R {folder}")


check_permissions = check_tree  # the name issue 16's tests know


def state_files(folder: Path) -> list[Path]:
    """Every plain file of the sweep folder except the driver's own (DRIVER_FILES at the top)."""
    folder = Path(folder)
    return [p for p, st in entries(folder) if stat.S_ISREG(st.st_mode)
            and not (p.parent == folder and driver_file(p.name))]


def driver_file(name: str) -> bool:
    """A top-level file of the driver's own: DRIVER_FILES or write_meta's temporary sweep.json."""
    return name in DRIVER_FILES or (name.startswith(".sweep.json.") and name.endswith(".tmp"))


def state_hashes(folder: Path) -> dict[str, str]:
    """The manifest: relative path -> SHA-256 of every file `state_files` lists."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256(p) for p in state_files(folder)}


def tuner_hash(folder: Path) -> str | None:
    path = Path(folder) / TUNER_PKL
    return sha256(path) if path.is_file() and not path.is_symlink() else None


def _payload(rel: str) -> bool:
    parts = Path(rel).parts
    return len(parts) >= 2 and parts[-1] == CHECKPOINT_PAYLOAD and parts[-2].startswith("checkpoint_")


def check_manifest(folder: Path, recorded: dict[str, str]) -> None:
    """Check 5 of the module docstring: the folder holds exactly the files recorded at exit."""
    if not isinstance(recorded, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in recorded.items()):
        raise ConfigError(f"{folder}/sweep.json: tune_state_at_exit is damaged (not a map of file hashes); "
                          "the sweep's files cannot be checked, so it is not resumed")
    now = state_hashes(folder)
    extra = sorted(set(now) - set(recorded))
    if extra:
        raise ConfigError(f"{folder / extra[0]} appeared after the sweep's driver exited; refusing to unpickle it "
                          f"({len(extra)} unexpected file(s)). Remove what you added, or start a new sweep")
    for rel, digest in sorted(recorded.items()):
        if rel not in now:
            if not _payload(rel):
                raise ConfigError(f"{folder / rel} was removed after the sweep's driver exited; the Tune state "
                                  "no longer matches what was recorded, so it is not resumed")
        elif now[rel] != digest and not _payload(rel):
            raise ConfigError(f"{folder / rel} changed after the sweep's driver exited; refusing to unpickle it")


def check_experiment_state(folder: Path) -> None:
    """The newest `experiment_state-*.json` (the one Tune restores) must be whole JSON. Ray writes
    it in place, so a disk that filled while it was written leaves it cut short: Tune would then
    start the sweep's search over with empty trial configs. Refused, saying so, before Ray starts,
    unless the driver holds a good copy to restore (`verify`; cluster.folder.tune_copy)."""
    cut = tune_copy.cut_short(folder)
    if cut is not None and EXPERIMENT_STATE in cut[0].name:
        raise ConfigError(tune_copy.no_copy(*cut))


def verify(folder: Path, tuner_sha: str | None, ended: dict[str, str] | None, parent_tags: dict[str, str],
           manifest: str | None = MANIFEST_KIND) -> None:
    """All five checks of the module docstring; ConfigError names the file that failed.

    Args:
        folder: the sweep folder.
        tuner_sha: tuner.pkl's SHA-256 as sweep.json records it (None: not recorded).
        ended: the exit manifest as the last driver left it (None: it did not exit cleanly).
        parent_tags: the MLflow parent run's tags (its own record of tuner.pkl's hash).
        manifest: sweep.json's `tune_state_manifest` (MANIFEST_KIND: every file; None: an older
            driver's record of its state files only).
    """
    check_tree(folder)
    cut = tune_copy.cut_short(folder)
    if cut is not None and tune_copy.good_copy(folder, parent_tags) is None:
        raise ConfigError(tune_copy.no_copy(*cut))  # no good copy to restore (tune_copy.repair): refused
    recorded = {tuner_sha, parent_tags.get(TAG_TUNER_SHA)} - {None}
    current = tuner_hash(folder)
    if len(recorded) > 1:
        raise ConfigError(f"the tuner.pkl hash in {folder}/sweep.json differs from the one in the MLflow parent "
                          "run: the sweep folder was changed; refusing to unpickle it")
    if recorded and current is not None and current not in recorded:
        raise ConfigError(f"{folder / TUNER_PKL} changed since the sweep started (SHA-256 {current[:12]}..., "
                          f"recorded {next(iter(recorded))[:12]}...); refusing to unpickle it")
    if ended is None:
        return
    if manifest == MANIFEST_KIND:
        check_manifest(folder, ended)
        return
    for rel, digest in dict(ended).items():  # recorded by an older driver: its own files only
        path = Path(folder) / rel
        if path.is_file() and sha256(path) != digest:
            raise ConfigError(f"{path} changed after the sweep's driver exited; refusing to unpickle it")
