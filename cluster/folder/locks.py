"""File locks for the driver: one process per sweep folder, one schema creation per sqlite store.

Locks are `fcntl.flock` locks on small files. The kernel drops them when the holding process
dies (also on SIGKILL), so a lock left by a dead driver is taken over by the next one without
any cleanup; the pid written in the file is only there for the message. flock works on local
file systems; on NFS it is local to each client on some setups, so two drivers on different
machines are not kept apart there (README "Limits").
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import ConfigError

LOCK_FILE = "sweep.lock"


def open_lock_file(path: Path, mine: bool = True) -> int:
    """Open (creating) a lock file without following a link: a planted `sweep.lock` symlink is
    refused, never written through; a directory or unwritable file is a message, not a traceback.

    Raises:
        ConfigError: naming the path and what to do.
    """
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link (to {os.readlink(path)!r}); a lock file is never "
                              "followed. Remove the link") from None
        if exc.errno == errno.EISDIR:
            raise ConfigError(f"{path} is a folder, not a lock file; remove it (nothing of the sweep is in it)") from None
        raise ConfigError(f"lock file {path} cannot be opened: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (mine and st.st_uid != os.getuid()):
        os.close(fd)
        raise ConfigError(f"{path} is not a plain file of yours (a fifo, a device, or another user's); remove it")
    return fd


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed), waiting up to `timeout` seconds.

    Raises:
        ConfigError: the lock could not be taken in time.
    """
    fd = open_lock_file(path, mine=False)  # a shared store's lock may be another user's
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"{path} has been locked by another process for {timeout:.0f} s") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing drops the lock


class SweepLock:
    """The lock a `sweep run` or `sweep resume` holds on its sweep folder until it exits."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name, self.fd = Path(folder), name, None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> SweepLock:
        """Take the lock or raise ConfigError naming the running pid (a dead holder's lock is taken over)."""
        fd = open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise ConfigError(f"sweep {self.name} is running ({holder or 'pid unknown'}); wait for it to end, "
                              f"or stop it (Ctrl-C) before `sweep resume {self.name}`") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""
