"""The sweep folder's record: sweep.json (written whole, found again by name), the claim on a fresh
folder, and the hashes of the Tune state that `sweep resume` verifies (cluster.folder.tune_state)."""
from __future__ import annotations

import json
import os
import tempfile
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
    """sweep.json, written whole to a fresh temporary file (O_EXCL: a planted name or link there is
    never written through) and renamed over the old one (never half-written)."""
    if folder is None:
        return
    text = json.dumps(meta, indent=2, default=str).encode()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{SWEEP_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / SWEEP_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

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
        meta["tune_state_manifest"] = tune_state.MANIFEST_KIND
        write_meta(folder, meta)
    except OSError:
        pass  # a missing record only weakens the next resume's check to permissions + tuner.pkl

def load_meta(name: str, storage_path: str | None) -> dict:
    return find_sweep(name, storage_path)[0]

def find_sweep(name: str, storage_path: str | None) -> tuple[dict, Path]:
    """(sweep.json, the folder it was found in): --storage-path wins over the recorded path."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"sweep name {name!r} must be letters, digits, '_', '.', '-' (max 128 chars)")
    storage = resolve_storage(storage_path)
    if "://" in storage:
        raise ConfigError(f"`sweep resume` reads sweep.json from a local or shared folder; {storage} is a URI. "
                          "Resume from a machine where the storage is mounted")
    folder = Path(storage) / name
    path = folder / SWEEP_FILE
    if not os.path.lexists(path):
        known = sorted(p.parent.name for p in Path(storage).glob(f"*/{SWEEP_FILE}"))
        raise ConfigError(f"no sweep named {name!r} in {storage}; known sweeps: {', '.join(known) or 'none'}")
    tune_state.check_tree(folder)  # no link followed, nobody else's file read, before anything is opened
    return load_sweep_json(path), folder


MAX_SWEEP_JSON = 64 << 20  # the manifest of a 100,000-trial sweep is a few tens of MB
REQUIRED = {"name": str, "tracking_uri": str, "parent_run_id": str, "experiment_id": str, "options": dict,
            "resources": dict, "storage_path": str}


def load_sweep_json(path: Path) -> dict:
    """sweep.json, checked: a plain file of bounded size holding an object with the keys and types
    the driver writes. Raises ConfigError naming the path, what is wrong and what to do."""
    def damaged(why: str) -> ConfigError:
        return ConfigError(f"{path} is damaged ({why}); the sweep cannot be resumed from it. Restore the file "
                           "from a backup, or start the sweep again under a new --name")

    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as f:
            raw = f.read(MAX_SWEEP_JSON + 1)
    except OSError as exc:
        raise damaged(exc.strerror or type(exc).__name__) from None
    if len(raw) > MAX_SWEEP_JSON:
        raise damaged(f"over {MAX_SWEEP_JSON >> 20} MB")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise damaged(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(meta, dict):
        raise damaged(f"a JSON {type(meta).__name__}, not an object")
    for key, kind in REQUIRED.items():
        if key not in meta:
            raise damaged(f"KeyError: {key!r} missing")
        if not isinstance(meta[key], kind):
            raise damaged(f"{key} is a {type(meta[key]).__name__}, not a {kind.__name__}")
    if not NAME_RE.fullmatch(meta["name"]):
        raise damaged(f"name {meta['name']!r} is not a sweep name")
    for key in ("tune_state_at_exit",):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise damaged(f"{key} is a {type(meta[key]).__name__}, not a map")
    return meta
