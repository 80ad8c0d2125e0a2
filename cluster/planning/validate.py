"""The driver's last word on values that type-check but make no sense, before Ray or MLflow start.

`cluster.planning.plan.validate` resolves every cell with the trial's own config classes (types and the
rules each class knows). This module adds the checks that need the whole sweep in view or
knowledge of the machine, each raising ConfigError (exit 2) with the value and what is allowed:

- every number is finite (`--set lr=1e999` parses as inf; `nan`) and every integer fits 64 bits,
  in every fixed value, grid value, per-pairing value and sampled-domain bound, nested lists
  included (the bounds of each setting, lower and upper, are its config class's own rules:
  e.g. trainables.config.TrainConfig, lr in (0, 10]);
- resource flags are finite numbers (`--gpus-per-trial nan` would hang Ray's scheduler);
- the device a trial asks for exists (`device=cuda` on a machine without CUDA, or with
  `--gpus-per-trial 0`, or on a cluster whose Ray sees no GPU);
- the data one trial builds fits in memory (each dataset's `peak_bytes` in the dataset registry, against half of this machine's
  physical memory), so `data_per_class=1000000` is a message, not a MemoryError;
- sweep size: more than MAX_TRIALS trials needs `--yes`;
- no fake replicates or silent precedence: duplicated grid or choice values, the same key in
  two of --set/--grid/--sample/--data-root, and keys the driver sets itself (`threads`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from collections.abc import Collection, Iterator
from typing import Any

from search_spaces.domains import is_domain
from core.errors import ConfigError

MAX_TRIALS = 10_000  # larger sweeps need --yes (README "Limits")
MEMORY_FRACTION = 0.5  # one trial's data may use at most this share of the machine's physical memory
MEMORY_ENV = "SWEEP_MAX_TRIAL_MEMORY_GB"  # overrides the limit (e.g. for a driver smaller than the nodes)
INT64 = 2 ** 63
# Keys the driver sets for every trial; a --set of them would be silently overwritten.
DRIVER_KEYS = {"threads": "use --cpus-per-trial (each trial uses as many threads as CPUs it holds)"}


# ---- options (resource flags, sizes) ----------------------------------------------------------

def check_options(opts) -> None:
    """Resource flags are finite numbers, --address is usable; raises ConfigError. Runs first in
    RunOptions.__post_init__."""
    from cluster.infra.ray_setup import check_address

    if opts.address:
        check_address(opts.address)
    for flag, value in (("--cpus-per-trial", opts.cpus_per_trial), ("--gpus-per-trial", opts.gpus_per_trial)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, got {value!r}")
    for flag, value in (("--seeds", opts.seeds), ("--num-samples", opts.num_samples),
                        ("--max-concurrent", opts.max_concurrent), ("--grace-period", opts.grace_period),
                        ("--reduction-factor", opts.reduction_factor),
                        ("--max-seeds", opts.max_seeds)):
        if value is not None and abs(value) >= INT64:
            raise ConfigError(f"{flag} {value} is out of range")


# ---- contradictions and duplicates on the command line ---------------------------------------

def check_overrides(set_keys: Collection[str], grids: dict[str, list], samples: dict[str, Any],
                    data_root: str | None) -> None:
    """Each key is given once, grid values are distinct, driver-owned keys are not set.

    `set_keys` are the keys of --set (their values are the config classes' to check).
    (A key repeated within --set or --grid is refused while parsing: cluster.planning.values.)
    """
    sources = {"--set": set(set_keys), "--grid": set(grids), "--sample": set(samples)}
    if data_root is not None:
        sources["--data-root"] = {"data_root"}
    names = list(sources)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(sources[a] & sources[b])
            if both:
                raise ConfigError(f"{both[0]!r} is given by both {a} and {b}; give it once "
                                  "(a fixed value or a swept one, not both)")
    for key, hint in DRIVER_KEYS.items():
        if key in sources["--set"] or key in grids or key in samples:
            raise ConfigError(f"{key!r} is set by the driver for every trial; {hint}")
    for key, values in grids.items():
        check_distinct(f"--grid {key}", values)
    for key, domain in samples.items():
        check_distinct(f"--sample {key}", domain.listed())


def _canonical(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, bool) or value is None:
        return (type(value).__name__, value)
    return value


def check_distinct(what: str, values: list) -> None:
    """Refuse repeated values: a repeated grid value is a fake replicate (n doubles, the CI shrinks)."""
    seen: dict[Any, Any] = {}
    for v in values:
        c = _canonical(v)
        try:
            hash(c)
        except TypeError:
            c = repr(c)
        if c in seen:
            raise ConfigError(f"{what} repeats the value {v!r} (as {seen[c]!r}); repeated values would be "
                              "reported as extra replicates. Use --seeds for replicates")
        seen[c] = v


# ---- the plan: numbers, ranges, size, device, memory -------------------------------------------

def _numbers(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif is_domain(value):
        for i, v in enumerate(value.extremes()):
            yield from _numbers(v, f"{path}<{i}>")


def plan_values(plan) -> Iterator[tuple[str, Any]]:
    """(key, value) for every value a trial of the plan can get: fixed, each grid value, each
    per-pairing value, each sampled domain (as the domain)."""
    for k, v in plan.fixed.items():
        yield k, v
    for k, v in plan.axes.items():
        if isinstance(v, list):
            for x in v:
                yield k, x
        else:
            yield k, v
    for vals in plan.per_pairing.values():
        yield from vals.items()


def check_numbers(plan) -> None:
    """Every number finite, every int 64-bit (ranges are the config classes' rules)."""
    for key, value in plan_values(plan):
        for path, x in _numbers(value, key):
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{path}={x!r} is not a finite number (1e999 overflows to inf); "
                                  "give a finite value")
            if isinstance(x, int) and abs(x) >= INT64:
                raise ConfigError(f"{path}={x} does not fit a 64-bit integer")


PATH_KEYS = ("data_root", "weights", "feature_cache_dir")


def check_paths(plan) -> None:
    """Path settings can be looked at: no symlink loop, no NUL byte, data_root not a file."""
    import errno

    for key, value in plan_values(plan):
        if key not in PATH_KEYS or not isinstance(value, str) or "://" in value:
            continue
        try:
            os.stat(value)
            Path(value).resolve()
        except FileNotFoundError:
            continue  # the dataset's own preflight says what is missing and how to get it
        except ValueError as exc:  # embedded NUL byte
            raise ConfigError(f"{key}={value!r} is not a usable path ({exc})") from None
        except RuntimeError as exc:  # pathlib's symlink-loop error
            raise ConfigError(f"{key}={value!r} is a symbolic link loop ({exc})") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{key}={value!r} is a symbolic link loop") from None
            if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG, errno.EACCES):
                raise ConfigError(f"{key}={value!r} cannot be used: {exc.strerror}") from None
            raise ConfigError(f"{key}={value!r} cannot be read: {exc.strerror}") from None
        if key == "data_root" and not os.path.isdir(value):
            raise ConfigError(f"data_root={value!r} is a file, not a folder")


def check_sweep_size(n_trials: int, allow_large: bool) -> None:
    if n_trials > MAX_TRIALS and not allow_large:
        raise ConfigError(f"this sweep has {n_trials:,} trials, more than the limit of {MAX_TRIALS:,}; "
                          "check --seeds/--grid/--num-samples, or pass --yes to run it anyway")


def plan_devices(plan) -> set[str]:
    """Every device value a trial of the plan can ask for (fixed, swept, per pairing, pairing default)."""
    from trainables.config import TrainConfig
    from trainables.pairings import get_pairing

    devices = {v for k, v in plan_values(plan) if k == "device" and isinstance(v, str)}
    for k, v in plan.axes.items():
        if k == "device" and is_domain(v):
            devices |= {x for x in v.extremes() if isinstance(x, str)}
    if "device" not in plan.fixed and "device" not in plan.axes:
        devices |= {get_pairing(p).defaults.get("device", TrainConfig.device) for p in plan.axes.get("pairing", [])}
    return devices


def cuda_setting(plan) -> str | None:
    """The setting that makes a trial need a GPU ("device='cuda'" or "cuda_graphs=true"), or None."""
    if "cuda" in plan_devices(plan):
        return "device='cuda'"
    if any(k == "cuda_graphs" and v is True for k, v in plan_values(plan)):
        return "cuda_graphs=true"
    return None


def check_device_local(plan, gpus_per_trial: float | None, local: bool) -> None:
    """device=cuda or cuda_graphs=true needs a GPU for the trial: on this machine when local; never
    with --gpus-per-trial 0."""
    setting = cuda_setting(plan)
    if setting is None:
        return
    if gpus_per_trial is not None and gpus_per_trial == 0:
        raise ConfigError(f"{setting} with --gpus-per-trial 0: the trial would see no GPU; "
                          "give --gpus-per-trial > 0 or device=auto/cpu")
    if local:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{setting} but this machine has no CUDA device; use device=auto or cpu "
                              "(and cuda_graphs=false), or --address a Ray cluster with GPUs")


def check_device_cluster(plan, cluster_gpus: float) -> None:
    """After joining a cluster: device=cuda or cuda_graphs=true needs Ray to see at least one GPU."""
    setting = cuda_setting(plan)
    if setting is not None and cluster_gpus <= 0:
        raise ConfigError(f"{setting} but the Ray cluster has no GPUs; use device=auto or cpu")


# ---- memory ------------------------------------------------------------------------------------

def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit() -> int:
    """Bytes one trial's data may take: $SWEEP_MAX_TRIAL_MEMORY_GB, else half the physical memory."""
    text = os.environ.get(MEMORY_ENV)
    if text:
        try:
            gb = float(text)
        except ValueError:
            gb = float("nan")
        if not math.isfinite(gb) or gb <= 0:
            raise ConfigError(f"${MEMORY_ENV}={text!r} must be a positive number of GB")
        return int(gb * 1e9)
    return int(physical_memory() * MEMORY_FRACTION)


def check_memory(plan) -> None:
    """The largest trial's data estimate (the dataset registry's `peak_bytes`) must fit memory_limit()."""
    from trainables.data import get_dataset
    from trainables.pairings import get_pairing

    limit = memory_limit()
    seen: set[str] = set()
    for pairing_name in plan.grid_axes.get("pairing", []):
        pairing = get_pairing(pairing_name)
        dataset = get_dataset(pairing.dataset)
        if dataset.peak_bytes is None:
            continue
        keys = dataset.config.keys()  # the data's own settings: nothing else is handed to it
        cfg = _extreme_cell(plan, pairing_name, keys)
        data = dataset.config.from_config({**{k: v for k, v in pairing.defaults.items() if k in keys}, **cfg})
        key = repr(data)
        if key in seen:
            continue
        seen.add(key)
        need = dataset.peak_bytes(data)
        if need > limit:
            raise ConfigError(
                f"one {pairing.dataset} trial would need about {need / 1e9:.1f} GB of memory for its data "
                f"({_describe(data)}), more than the limit of {limit / 1e9:.1f} GB "
                f"(half of this machine's memory; ${MEMORY_ENV} sets another); use smaller sizes")


def _describe(data) -> str:
    keys = [k for k in ("data_per_class", "valid_per_class", "n_samples", "spatial_resolution")
            if hasattr(data, k)]
    return ", ".join(f"{k}={getattr(data, k)}" for k in keys) or "its defaults"


def _extreme_cell(plan, pairing: str, keys: set[str]) -> dict[str, Any]:
    """The settings among `keys` of `pairing`'s cell with every numeric grid axis and sampled domain
    at its largest value (unset ones left out)."""
    cfg = {k: v for k, v in plan.fixed.items() if k in keys}
    for k, v in plan.grid_axes.items():
        if k not in keys:
            continue
        nums = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
        cfg[k] = max(nums) if nums and len(nums) == len(v) else v[0]
    for k, v in {**plan.axes, **plan.per_pairing.get(pairing, {})}.items():
        if k not in keys:
            continue
        if is_domain(v):
            cfg[k] = v.largest()
        elif not isinstance(v, list):
            cfg[k] = v
    return {k: v for k, v in cfg.items() if v is not None}


# ---- entry points ------------------------------------------------------------------------------

def check_plan(plan, opts) -> None:
    """The cheap whole-plan checks (numbers, size, device), run by make_plan before it resolves every
    cell; `check_memory` runs after (it builds each distinct data config)."""
    check_numbers(plan)
    check_paths(plan)
    check_sweep_size(plan.n_trials(), opts.allow_large)
    check_device_local(plan, opts.gpus_per_trial, opts.address is None)
