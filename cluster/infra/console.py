"""What a sweep prints: its own progress on the console, Ray's and MLflow's chatter in a log file.

Unless `--verbose`, `route_library_logs(path)` sends the Python loggers of Ray, Tune, MLflow,
alembic and Python warnings to `<storage>/<sweep>/driver.log`, and `route_worker_output(path)`
(after `ray.init`) sends the trials' forwarded stdout/stderr there too. Tune's own console
tables are off (RAY_AIR_NEW_OUTPUT=0 with verbose=0); `cluster.tuner.callbacks.ProgressDisplay` is
the one progress display.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


DRIVER_LOG = "driver.log"
LIBRARY_LOGGERS = ("ray", "mlflow", "alembic", "py.warnings", "urllib3", "filelock", "torch")
_state: dict = {"stream": None, "path": None}


def driver_log_path(storage: str, name: str) -> Path:
    """<storage>/<sweep>/driver.log for a local storage path; ./.sweep/logs/<sweep>.log for a cloud URI."""
    if "://" in storage:
        return Path.cwd() / ".sweep" / "logs" / f"{name}.log"
    return Path(storage) / name / DRIVER_LOG


def _stream(path: Path):
    if _state["path"] != path or _state["stream"] is None or _state["stream"].closed:
        path.parent.mkdir(parents=True, exist_ok=True)
        _state["stream"] = open(path, "a", buffering=1, encoding="utf-8")
        _state["path"] = path
    return _state["stream"]


class _LogFileHandler(logging.StreamHandler):
    """The driver log's handler: a record it cannot write (the disk under the log is full) is
    dropped, never printed on the console as "--- Logging error ---" with a traceback; the sweep's
    own message says what stopped it."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def route_library_logs(path: Path) -> None:
    """Send the libraries' Python logging (and Python warnings) to `path` instead of the console."""
    handler = _LogFileHandler(_stream(path))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's tables and "View detailed results" lines: off


def route_worker_output(path: Path) -> None:
    """After `ray.init`: the trials' stdout/stderr, which Ray forwards to the driver, go to `path`."""
    try:
        from ray._private import worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # another Ray layout: leave Ray's forwarding as it is
        return
    stream = _stream(path)
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", lambda data: ray_worker.print_worker_logs(data, stream))


def is_tty(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def quiet_libraries(log_path: Path, verbose: bool) -> None:
    """Unless verbose: Ray's, Tune's and MLflow's loggers write to the sweep's driver.log."""
    if verbose:
        return
    import ray  # noqa: F401  (Ray sets up its logger on import; replace it after)

    if "mlflow" not in sys.modules:
        os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # keep our handler on its logger
    route_library_logs(log_path)
