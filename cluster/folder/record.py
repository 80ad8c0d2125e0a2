"""The sweep folder's record: `SweepRecord` owns sweep.json (saved whole, loaded and checked, found
again by name), the hashes of the Tune state that `sweep resume` verifies
(cluster.folder.tune_state), the folder's lock, and the claim on a fresh folder."""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.folder import tune_state
from cluster.folder.locks import LOCK_FILE, SweepLock
from cluster.folder.storage import NAME_RE, resolve_storage
from cluster.infra import console
from core.errors import ConfigError
from core.state_json import load_state_json
from search_spaces.experiment import DEFAULT_METRIC, DEFAULT_MODE
from trainables.tracking import TrackingInfo


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


def write_meta(folder: Path | None, data: dict) -> None:
    """sweep.json, written whole to a fresh temporary file (O_EXCL: a planted name or link there is
    never written through) and renamed over the old one (never half-written)."""
    if folder is None:
        return
    text = json.dumps(data, indent=2, default=str).encode()
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


# Keys a sweep.json must hold to be resumed (every version of the driver wrote them).
REQUIRED = ("name", "tracking_uri", "parent_run_id", "experiment_id", "options", "resources", "storage_path")


@dataclass
class SweepRecord:
    """A sweep's state as its folder's sweep.json holds it: where its runs are, what it asked for,
    and the hashes that guard its Tune state.

    Attributes:
        name, experiment: the sweep and its experiment.
        tracking_uri, experiment_id, parent_run_id: the MLflow store, experiment and parent run.
        resources: Ray's request per trial ({"cpu": ..., "gpu": ...}).
        storage_path: the folder holding the sweep's folder (or a cloud URI).
        options: the RunOptions the sweep was started with, as stored (`sweep resume` rebuilds them).
        git_sha, swept_keys, n_trials, metric, driver_log: what the trials and the display need.
        tuner_sha: SHA-256 of tuner.pkl once the Tuner exists (JSON key `tuner_pkl_sha256`).
        tune_state_at_exit: relative path -> SHA-256 of each Tune state file as the driver left it;
            None while a driver runs (or after one was killed).
        extra: keys of sweep.json this version does not know, kept as they were.
        relay: while this driver runs the sweep, its MLflow relay's endpoint (cluster.infra.tracking.
            trial_relay), handed to the trials with their TrackingInfo; never written to sweep.json.
    """

    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    resources: dict[str, float]
    storage_path: str
    options: dict[str, Any]
    experiment: str = ""
    git_sha: str = ""
    swept_keys: list[str] = field(default_factory=list)
    n_trials: int = 0
    metric: tuple[str, str] = (DEFAULT_METRIC, DEFAULT_MODE)
    driver_log: str | None = None
    tuner_sha: str | None = None
    tune_state_at_exit: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    relay: tuple[str, bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def folder(self) -> Path | None:
        """The sweep's folder; None on cloud storage (nothing local to write or lock)."""
        return None if "://" in self.storage_path else Path(self.storage_path) / self.name

    # -- sweep.json ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The file's content (the keys and layout every earlier driver wrote)."""
        data = {"name": self.name, "experiment": self.experiment, "tracking_uri": self.tracking_uri,
                "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id,
                "resources": self.resources, "storage_path": self.storage_path, "git_sha": self.git_sha,
                "swept_keys": list(self.swept_keys), "n_trials": self.n_trials, "options": self.options,
                "metric": list(self.metric), "driver_log": self.driver_log, **self.extra}
        if self.tuner_sha is not None:
            data[tune_state.TAG_TUNER_SHA] = self.tuner_sha
        if self.tuner_sha is not None or self.tune_state_at_exit is not None:
            data["tune_state_at_exit"] = self.tune_state_at_exit
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepRecord:
        """A record from sweep.json's content; KeyError/TypeError/ValueError when it is not one."""
        if not isinstance(data, dict):
            raise TypeError(f"sweep.json holds a {type(data).__name__}, not an object")
        for key in REQUIRED:
            data[key]
        known = {"name", "experiment", "tracking_uri", "experiment_id", "parent_run_id", "resources",
                 "storage_path", "git_sha", "swept_keys", "n_trials", "options", "metric", "driver_log",
                 tune_state.TAG_TUNER_SHA, "tune_state_at_exit"}
        if not isinstance(data["options"], dict) or not isinstance(data["resources"], dict):
            raise TypeError("options and resources must be objects")
        metric = data.get("metric") or (DEFAULT_METRIC, DEFAULT_MODE)
        return cls(name=str(data["name"]), tracking_uri=str(data["tracking_uri"]),
                   experiment_id=str(data["experiment_id"]), parent_run_id=str(data["parent_run_id"]),
                   resources=data["resources"], storage_path=str(data["storage_path"]), options=data["options"],
                   experiment=data.get("experiment", ""), git_sha=data.get("git_sha", ""),
                   swept_keys=list(data.get("swept_keys") or []), n_trials=int(data.get("n_trials") or 0),
                   metric=(str(metric[0]), str(metric[1])), driver_log=data.get("driver_log"),
                   tuner_sha=data.get(tune_state.TAG_TUNER_SHA), tune_state_at_exit=data.get("tune_state_at_exit"),
                   extra={k: v for k, v in data.items() if k not in known})

    def save(self) -> None:
        """Write sweep.json whole (nothing on cloud storage)."""
        write_meta(self.folder, self.to_json())

    @classmethod
    def load(cls, folder: Path) -> SweepRecord:
        """The record in `folder`/sweep.json, through the checked loader (a link is not followed,
        size bounded, keys typed); ConfigError naming the path and what to do when it is damaged."""
        path = Path(folder) / SWEEP_FILE
        what = ("the sweep cannot be resumed from it. Restore the file from a backup, or start the sweep "
                "again under a new --name")
        data = load_state_json(path, {"name": str, "tracking_uri": str, "parent_run_id": str, "experiment_id": str,
                                      "options": dict, "resources": dict, "storage_path": str}, what)
        if not NAME_RE.match(data["name"]):
            raise ConfigError(f"{path} is damaged (name {data['name']!r} is not a sweep name); {what}")
        if data.get("tune_state_at_exit") is not None and not isinstance(data["tune_state_at_exit"], dict):
            raise ConfigError(f"{path} is damaged (tune_state_at_exit is not a map of file hashes); {what}")
        try:
            return cls.from_json(data)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigError(f"{path} is damaged ({type(exc).__name__}: {exc}); {what}") from None

    # -- the Tune state's hashes, the lock --------------------------------------------------------
    def record_tuner_hash(self, client) -> None:
        """The SHA-256 of tuner.pkl in sweep.json and as a parent-run tag (checked by `sweep resume`)."""
        digest = None if self.folder is None else tune_state.tuner_hash(self.folder)
        if digest is None:
            return
        self.tuner_sha = digest
        self.tune_state_at_exit = None  # fit running: the state files change until the driver exits
        self.save()
        client.set_tag(self.parent_run_id, tune_state.TAG_TUNER_SHA, digest)

    def record_exit_state(self) -> None:
        """Hashes of the Tune state files as the driver leaves them (verified by the next resume)."""
        if self.folder is None:
            return
        try:
            self.tune_state_at_exit = tune_state.state_hashes(self.folder)
            self.extra["tune_state_manifest"] = tune_state.MANIFEST_KIND  # every file, not a list of names
            self.save()
        except OSError:
            pass  # a missing record only weakens the next resume's check to permissions + tuner.pkl

    def verify(self, parent_tags: dict[str, str]) -> None:
        """Refuse Tune state that someone else could have changed (cluster.folder.tune_state)."""
        tune_state.verify(self.folder, self.tuner_sha, self.tune_state_at_exit, parent_tags,
                          self.extra.get("tune_state_manifest"))

    def lock(self) -> SweepLock:
        """The folder's lock (a context manager): one driver per sweep."""
        return SweepLock(self.folder, self.name)

    def tracking_info(self) -> TrackingInfo:
        """What each trial needs to log into this sweep's MLflow runs."""
        return TrackingInfo(self.tracking_uri, self.experiment_id, self.parent_run_id, self.name,
                            self.experiment, self.git_sha, tuple(self.swept_keys), relay=self.relay)


def find_sweep(name: str, storage_path: str | None) -> SweepRecord:
    """The record of sweep `name`: --storage-path wins over the recorded path (a moved sweep's
    record then names the folder it was found in)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"sweep name {name!r} must be letters, digits, '_', '.', '-' (max 128 chars)")
    storage = resolve_storage(storage_path)
    if "://" in storage:
        raise ConfigError(f"`sweep resume` reads sweep.json from a local or shared folder; {storage} is a URI. "
                          "Resume from a machine where the storage is mounted")
    path = Path(storage) / name / SWEEP_FILE
    if not os.path.lexists(path):
        known = sorted(p.parent.name for p in Path(storage).glob(f"*/{SWEEP_FILE}"))
        raise ConfigError(f"no sweep named {name!r} in {storage}; known sweeps: {', '.join(known) or 'none'}")
    tune_state.check_tree(path.parent)  # no link followed, nobody else's file read, before anything is opened
    record = SweepRecord.load(path.parent)
    if str(path.parent.parent) != str(record.storage_path) or record.name != name:
        print(f"sweep {name}: using the sweep folder {path.parent} (recorded: {record.storage_path}/{record.name})",
              flush=True)
        record.storage_path, record.name = str(path.parent.parent), name
    return record
