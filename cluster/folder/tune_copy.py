"""The driver's last good copy of Tune's experiment state, and the repair of a cut-short one.

Ray's Tune writes `experiment_state-<session>.json` in place (a plain `open("w")`, then a copy
from its driver staging folder into the sweep folder): a disk that fills meanwhile leaves it cut
short, and Tune cannot continue the sweep from it. So, each time Tune has saved its state (in its
driver staging folder, synchronously, just before `on_step_end`), `TuneStateKeeper` (a Tune
callback of the driver, cluster.tuner.callbacks) copies Tune's driver state files (experiment
state, searcher and callback states: the top-level files of that staging folder, one consistent
set) into a fresh folder `tune-state-copy/<id>/` of the sweep folder, with an `index.json` of
their SHA-256s, and only then records `<id> <SHA-256 of index.json>` as the MLflow parent run's
tag `tune_state_copy` (out of the folder writer's reach, like tuner.pkl's hash). Older copies are
removed only after that. A write that fails (a full disk) removes its own half-written folder
and leaves the previous copy and tag as they were.

`sweep resume` of a sweep whose newest experiment state is cut short (`cut_short`) restores the
copy the tag names (`repair`): every file's hash is checked against the index, the index's
against the tag, the experiment state must be whole JSON; the session's files newer than the copy
(the cut-short one among them) are removed, and the copy's files are put back (temporary file +
rename). Tune then continues from that state: trials that went on after the copy continue from
the checkpoint the copy names (steps already in MLflow are not logged again, a FINISHED child run
is reported back without retraining: trainables.lifecycle), and trials the searcher created after
it are created again with the same trial ids and continue their own child runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from core.errors import ConfigError

COPY_ROOT = "tune-state-copy"
INDEX = "index.json"
TAG_COPY = "tune_state_copy"  # MLflow parent run tag: "<copy id> <SHA-256 of its index.json>"
TUNER_PKL = "tuner.pkl"  # written once by the Tuner into the sweep folder; never copied back
EXPERIMENT_STATE = re.compile(r"experiment_state-(.+)\.json$")
SESSION = re.compile(r"-(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)\.(json|pkl)$")  # Tune's session_str in its state files


def _sha256(path: Path) -> str:
    from cluster.folder.tune_state import sha256

    return sha256(path)


def newest_state(folder: Path) -> Path | None:
    """The experiment state Tune restores: the newest `experiment_state-*.json` by name."""
    return max(Path(folder).glob("experiment_state-*.json"), key=lambda p: p.name, default=None)


def cut_short(folder: Path) -> tuple[Path, str] | None:
    """(path, why) of a Tune state file that Tune would read and that is cut short: the newest of each
    kind (`experiment_state-*.json`, `basic-variant-state-*.json`, `searcher-state-*.pkl`, ...: the
    top-level files named by a session) that is not whole JSON, or not a whole pickle stream (read
    opcode by opcode, never unpickled; `basic-variant-state-*.json` is a pickle despite its name). None when all are whole (links and odd files are left to
    the trust checks)."""
    newest: dict[str, Path] = {}
    if not Path(folder).is_dir():
        return None
    for p in Path(folder).iterdir():
        m = SESSION.search(p.name)
        if m and not p.is_symlink() and p.is_file() and not _temporary(p.name):
            kind = p.name[:m.start()] + "." + m.group(2)
            if kind not in newest or p.name > newest[kind].name:
                newest[kind] = p
    for kind in sorted(newest, key=lambda k: (not k.startswith("experiment_state"), k)):
        why = _not_whole(newest[kind])
        if why is not None:
            return newest[kind], why
    return None


def no_copy(path: Path, why: str) -> str:
    """The refusal of a cut-short state the driver holds no good copy of."""
    return (f"{path} is cut short or damaged ({why}; a disk that filled while Ray's Tune wrote it does this), and "
            f"the driver holds no good copy of it (sweeps started before this version kept none): Tune cannot "
            f"continue this sweep. Run the experiment again under a new name (sweep run EXPERIMENT --name NEW); "
            f"the runs already in MLflow are kept")


def _not_whole(path: Path) -> str | None:
    import pickletools

    try:
        data = path.read_bytes()
        if data.lstrip()[:1] in (b"{", b"["):  # JSON, ".pkl" names included (the adaptive searcher's state)
            json.loads(data)
        elif data[:1] == b"\x80" or path.suffix == ".pkl":  # a pickle (Tune's searcher states, ".json" names included)
            for _ in pickletools.genops(data):
                pass
        else:
            json.loads(data)
    except Exception as exc:  # ValueError (JSON, a pickle cut short), OSError
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    return None


# -- the driver's copy ------------------------------------------------------------------------------
def _temporary(name: str) -> bool:
    """Tune writes its state to `.{uuid}-tmp-NAME` and renames it (ray.tune.utils.util._atomic_save): an
    interrupt between the two leaves a temporary that Tune never reads."""
    return name.startswith(("tmp", "."))


def staged_files(staging: Path) -> list[Path] | None:
    """Tune's driver state files in its staging folder (top-level plain files but tuner.pkl and
    temporaries), or None when their experiment state is not whole JSON (nothing to copy)."""
    files = sorted(p for p in Path(staging).iterdir()
                   if p.is_file() and not p.is_symlink() and p.name != TUNER_PKL and not _temporary(p.name))
    states = [p for p in files if EXPERIMENT_STATE.match(p.name)]
    if not states:
        return None
    try:
        json.loads(max(states, key=lambda p: p.name).read_bytes())
    except (ValueError, OSError):
        return None
    return files


def write_copy(folder: Path, files: list[Path]) -> tuple[str, str]:
    """Copy `files` into a fresh `tune-state-copy/<id>/` with their index; (id, index SHA-256).
    On any error the half-written folder is removed and the error raised."""
    root = Path(folder) / COPY_ROOT
    root.mkdir(mode=0o755, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="copy-", dir=root))
    try:
        index = {}
        for src in files:
            dst = target / src.name
            with open(src, "rb") as fi, open(dst, "xb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
                fo.flush()
                os.fsync(fo.fileno())
            index[src.name] = _sha256(dst)
        states = sorted(n for n in index if EXPERIMENT_STATE.match(n))
        json.loads((target / states[-1]).read_bytes())  # the copy itself is whole
        with open(target / INDEX, "x", encoding="utf-8") as f:
            json.dump({"files": index, "experiment_state": states[-1]}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        return target.name, _sha256(target / INDEX)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def drop_copies(folder: Path, keep: str) -> None:
    """Remove every copy but `keep` (best effort)."""
    root = Path(folder) / COPY_ROOT
    for p in root.iterdir() if root.is_dir() else ():
        if p.name != keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


# -- the repair -------------------------------------------------------------------------------------
def good_copy(folder: Path, tags: dict[str, str]) -> tuple[Path, dict] | None:
    """The copy the parent run's tag names, checked (index hash, file hashes, whole JSON); None
    when there is no tag or no such copy. ConfigError when it exists but does not match."""
    value = tags.get(TAG_COPY)
    if not value or len(value.split()) != 2:
        return None
    name, digest = value.split()
    copy = Path(folder) / COPY_ROOT / name
    index_path = copy / INDEX
    if "/" in name or name in (".", "..") or not index_path.is_file() or index_path.is_symlink():
        return None
    if _sha256(index_path) != digest:
        raise ConfigError(f"{index_path} changed since the driver wrote it (its SHA-256 differs from the MLflow "
                          "parent run's tag tune_state_copy); refusing to restore Tune's state from it")
    try:
        index = json.loads(index_path.read_bytes())
        files, state = dict(index["files"]), str(index["experiment_state"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{index_path} is damaged ({type(exc).__name__}); refusing to restore from it") from None
    for fname, fdigest in files.items():
        path = copy / fname
        if "/" in fname or not path.is_file() or _sha256(path) != fdigest:
            raise ConfigError(f"{path} is missing or changed since the driver copied it; refusing to restore from it")
    if state not in files or not EXPERIMENT_STATE.match(state):
        raise ConfigError(f"{index_path} names no experiment state; refusing to restore from it")
    json.loads((copy / state).read_bytes())  # whole when written, and unchanged since (its hash)
    return copy, {"files": files, "experiment_state": state}


def repair(folder: Path, tags: dict[str, str]) -> str | None:
    """Restore the driver's last good copy over a cut-short experiment state. Returns the sentence
    saying what was repaired (None: nothing was cut short). ConfigError when it is cut short and
    no good copy can be restored (the refusal names the file and what to do)."""
    cut = cut_short(folder)
    if cut is None:
        return None
    path, why = cut
    found = good_copy(folder, tags)
    if found is None:
        raise ConfigError(no_copy(path, why))
    copy, index = found
    session = EXPERIMENT_STATE.match(index["experiment_state"]).group(1)
    removed = []
    for p in sorted(Path(folder).iterdir()):
        m = SESSION.search(p.name)
        if p.is_file() and m and m.group(1) >= session and p.name not in index["files"]:
            p.unlink()
            removed.append(p.name)
    for fname in sorted(index["files"]):
        _put(copy / fname, Path(folder) / fname)
    return (f"repaired {path.name} (cut short: {why}): Tune's state restored from the driver's last good copy "
            f"{copy.relative_to(folder)} ({', '.join(sorted(index['files']))})"
            + (f"; removed the newer, partial {', '.join(removed)}" if removed else ""))


def _put(src: Path, dst: Path) -> None:
    """`src` copied over `dst` whole: a temporary file beside it, then a rename."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fo, open(src, "rb") as fi:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fsync(fo.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
