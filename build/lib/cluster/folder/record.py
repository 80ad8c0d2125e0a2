"""The sweep folder's record: sweep.json (written whole, found again by name), the claim on a fresh
folder, and the hashes of the Tune state that `sweep resume` verifies (cluster.folder.tune_state)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cluster.folder import tune_state
from cluster.folder.locks import LOCK_FILE, SweepLock
from cluster.folder.storage import NAME_RE, resolve_storage
from cluster.infra import console
from core.errors import ConfigError

SWEEP_FILE = "sweep.json"


def claim_sweep(storage: str, name: str | None, experiment: str) -> tuple[str, SweepLock | None]:
    """Create the sweep folder atomically and lock it; a default name gets a random suffix, so two
    `sweep run`s started in the same second never share a folder.

    Returns:
        (sweep name, the held lock; None for cloud storage, where no folder can be locked).
    """
    import secrets

    explicit = name is not None
    for _ in range(20):
        candidate = name if explicit else f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        if "://" in storage:
            return candidate, None
        try:
            (Path(storage) / candidate).mkdir()
        except FileExistsError:
            if explicit:
                raise ConfigError(f"a sweep named {candidate!r} already exists in {storage}; pick another --name "
                                  f"or `sweep resume {candidate}`") from None
            continue
        return candidate, SweepLock(Path(storage) / candidate, candidate).acquire()
    raise ConfigError(f"could not create a fresh sweep folder in {storage}")

def release_claim(storage: str, name: str, lock: SweepLock | None, remove: bool = False) -> None:
    """Drop the lock; with `remove`, also the folder if nothing but the lock (and the driver.log of
    the failed start) is in it."""
    if lock is None:
        return
    lock.release()
    folder = Path(storage) / name
    if remove and {p.name for p in folder.iterdir()} <= {LOCK_FILE, console.DRIVER_LOG}:
        (folder / LOCK_FILE).unlink(missing_ok=True)
        (folder / console.DRIVER_LOG).unlink(missing_ok=True)
        folder.rmdir()

def write_meta(folder: Path | None, meta: dict) -> None:
    """sweep.json, written whole to a temporary file and renamed (never half-written)."""
    if folder is None:
        return
    tmp = folder / f".{SWEEP_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, folder / SWEEP_FILE)

def record_tuner_hash(client, folder: Path | None, meta: dict) -> None:
    """The SHA-256 of tuner.pkl in sweep.json and as a parent-run tag (checked by `sweep resume`)."""
    digest = None if folder is None else tune_state.tuner_hash(folder)
    if digest is None:
        return
    meta[tune_state.TAG_TUNER_SHA] = digest
    meta["tune_state_at_exit"] = None  # fit running: the state files change until the driver exits
    write_meta(folder, meta)
    client.set_tag(meta["parent_run_id"], tune_state.TAG_TUNER_SHA, digest)

def record_exit_state(folder: Path | None, meta: dict) -> None:
    """Hashes of the Tune state files as the driver leaves them (verified by the next resume)."""
    if folder is None:
        return
    try:
        meta["tune_state_at_exit"] = tune_state.state_hashes(folder)
        write_meta(folder, meta)
    except OSError:
        pass  # a missing record only weakens the next resume's check to permissions + tuner.pkl

def load_meta(name: str, storage_path: str | None) -> dict:
    return find_sweep(name, storage_path)[0]

def find_sweep(name: str, storage_path: str | None) -> tuple[dict, Path]:
    """(sweep.json, the folder it was found in): --storage-path wins over the recorded path."""
    if not NAME_RE.match(name):
        raise ConfigError(f"sweep name {name!r} must be letters, digits, '_', '.', '-' (max 128 chars)")
    storage = resolve_storage(storage_path)
    if "://" in storage:
        raise ConfigError(f"`sweep resume` reads sweep.json from a local or shared folder; {storage} is a URI. "
                          "Resume from a machine where the storage is mounted")
    path = Path(storage) / name / SWEEP_FILE
    if not path.exists():
        known = sorted(p.parent.name for p in Path(storage).glob(f"*/{SWEEP_FILE}"))
        raise ConfigError(f"no sweep named {name!r} in {storage}; known sweeps: {', '.join(known) or 'none'}")
    try:
        meta = json.loads(path.read_text())
        for key in ("name", "tracking_uri", "parent_run_id", "experiment_id", "options", "resources", "storage_path"):
            meta[key]
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"{path} is damaged ({type(exc).__name__}: {exc}); the sweep cannot be resumed") from None
    return meta, path.parent
