"""Where sweep folders live: the storage path (local folder or a URI Tune accepts) and sweep names."""
from __future__ import annotations

import os
from pathlib import Path

from core.errors import ConfigError
from core.safe_paths import NAME_RE  # noqa: F401 - re-exported for the driver

# URI schemes pyarrow's file systems (used by Tune's storage) understand.
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def resolve_storage(path: str | None) -> str:
    """Absolute local path (created and checked writable) or a URI Tune accepts (s3://, gs://, ...)."""
    if path and "://" in path:
        scheme = path.split("://", 1)[0].lower()
        if scheme == "file":
            path = path[len("file://"):]
        elif scheme not in STORAGE_SCHEMES:
            raise ConfigError(f"--storage-path {path!r} has unsupported scheme {scheme!r}; use a local or shared "
                              f"path or one of {', '.join(s + '://' for s in STORAGE_SCHEMES)}")
        else:
            return path
    try:
        p = Path(path or "ray_results").expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ConfigError(f"--storage-path {path!r} cannot be resolved: {exc}") from None
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--storage-path {p} cannot be created: {exc.strerror}") from None
    if not os.access(p, os.W_OK):
        raise ConfigError(f"--storage-path {p} is not writable")
    return str(p)
