"""What `sweep` checks of its own process before a command runs: argv parsed in one linear pass,
the console's descriptors open, and MLflow's HTTP client bounded (issue 24)."""
from __future__ import annotations

import argparse


# Repeatable flags taken out of argv before argparse sees it: argparse copies an `append` list on
# every occurrence and rescans the remaining arguments per option, so 60,000 `--set` flags took
# minutes (quadratic); collected here in one pass.
REPEATED = {"--set": "sets", "--grid": "grids", "--sample": "samples"}


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parser.parse_args(argv), with the REPEATED flags collected in one linear pass."""
    rest: list[str] = []
    found: dict[str, list[str]] = {dest: [] for dest in REPEATED.values()}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        flag, eq, value = arg.partition("=")
        if flag in REPEATED and (eq or i + 1 < len(argv)):
            found[REPEATED[flag]].append(value if eq else argv[i + 1])
            i += 1 if eq else 2
            continue
        rest.append(arg)
        i += 1
    args = parser.parse_args(rest)
    for flag, dest in REPEATED.items():
        if found[dest]:
            if not hasattr(args, dest):
                parser.error(f"unrecognized arguments: {flag} (sweep {args.command} takes no {flag})")
            setattr(args, dest, (getattr(args, dest) or []) + found[dest])
    return args


# MLflow's REST client waits 120 s per request and retries 7 times with backoff by default: a
# tracking server that stops answering held a sweep for a quarter of an hour. The driver's
# defaults (README "Tracking server timeouts"); an explicit environment value wins.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def closed_console() -> str | None:
    """'stdout'/'stderr' when that descriptor is closed (`>&-`), after pointing it at /dev/null so
    no file opened later takes its number (a print would then write into that file)."""
    import os

    closed = None
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            if name != "stdin" and closed is None:
                closed = name
    return closed


# Every `sweep` command sets these (an explicit environment value wins): no progress bars when
# artifacts move, and MLFLOW_HTTP_DEFAULTS. `sweep up`'s warm driver starts with them, as its commands run.
NO_PROGRESS_BAR = ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
PROGRAM_ENV_DEFAULTS = dict([NO_PROGRESS_BAR], **MLFLOW_HTTP_DEFAULTS)


def end_process(code) -> None:
    """Flush stdout and stderr, then end the process at once with `code` mapped as `sys.exit` maps
    it (an int or bool as its int; None 0; anything else 1, an empty string too): the last step of a
    `sweep` command run as the program (cluster.cli) and of a command run by the warm driver."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(int(code) if isinstance(code, int) else (0 if code is None else 1))
