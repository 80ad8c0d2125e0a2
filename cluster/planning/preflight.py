"""Driver-side checks after the plan and before Ray or MLflow start: nonsense costs no compute.

`cluster.planning.plan.validate` already resolves every cell (and the ends of every sampled domain) into
specs and checks that data files exist. This module reuses those specs and goes further, once per
distinct (pairing, model, dataset) combination:

- the search options build (scheduler/searcher) and $SWEEP_MLFLOW_RETRY_S parses, so typos
  fail before a parent run exists;
- for a local run, the per-trial CPU/GPU request fits this machine (Ray need not start to know);
- the model is built and one forward pass plus the loss run on two real samples, so a kernel
  that leaves no room after pooling fails here, not in every trial;
- for a local run, datasets read from files are decoded (truncated or corrupt files fail; the
  decoded copy lands in the on-disk uint8 cache the trials read anyway) and local weights
  files are loaded with `weights_only=True` into their backbone (wrong architecture or not a
  checkpoint fails).

On a remote cluster (`--address`) data and weights live on the nodes, so only the checks that
need no files run here.
"""
from __future__ import annotations

import os

from trainables.data import get_dataset
from core.errors import ConfigError
from trainables.models import model_config_keys
from trainables.spec import TrialSpec

MAX_DRY_RUNS = 64  # distinct combinations tried; a huge search space is sampled, not enumerated


def run_checks(plan, opts) -> None:
    """Every preflight check for `sweep run`; raises ConfigError naming the first problem.

    Args:
        plan: the validated cluster.planning.plan.Plan.
        opts: cluster.flow.options.RunOptions (address, cpus/gpus per trial, search options).
    """
    from cluster.tuner.search import make_search
    from trainables.tracking import default_retry_s

    make_search(plan, opts)
    default_retry_s()  # a bad $SWEEP_MLFLOW_RETRY_S fails here, not after the parent run exists
    local = opts.address is None
    if local:
        from cluster.infra.ray_head import state_dir

        state_dir()  # a $SWEEP_HOME that is a file fails here, before any run or folder exists
        check_local_resources(opts.cpus_per_trial, opts.gpus_per_trial)
    dry_run_plan(plan, local)


def check_local_resources(cpus: float | None, gpus: float | None) -> None:
    """The request must fit the Ray that `init_ray(None)` starts: os.cpu_count() CPUs, the visible GPUs."""
    total_cpus = os.cpu_count() or 1
    if cpus is not None and cpus > total_cpus:
        raise ConfigError(f"--cpus-per-trial {cpus:g} is more than this machine has ({total_cpus} CPUs)")
    if gpus:
        import torch

        n = torch.cuda.device_count()
        if gpus > n:
            raise ConfigError(f"--gpus-per-trial {gpus:g} but this machine has {n} GPUs; use 0 or run with "
                              "--address on a cluster with GPUs")


def dry_run_plan(plan, local: bool) -> None:
    """Build each distinct combination once (see module docstring); ConfigError on the first failure.

    The combinations are the plan's specs (`plan.checked`: cells and sampled extremes). Synthetic
    datasets are built here anyway; files are decoded only for a local run; features need a
    backbone pass, too costly here, so only their weights file is checked.
    """
    seen: set[str] = set()
    for r in plan.checked:
        sig = r.build_signature()
        if sig in seen:
            continue
        seen.add(sig)
        if len(seen) > MAX_DRY_RUNS:
            return
        kind = get_dataset(r.pairing.dataset).kind
        if kind == "features":
            if local:
                check_feature_weights(r)
            continue  # features come from a backbone pass: too costly to make here
        if kind == "synthetic" or (local and kind == "files"):
            dry_run(r)
    if local:
        from trainables.data import image_cache

        image_cache.clear_memory_cache()  # the driver keeps no decoded images; the disk cache stays


def check_feature_weights(r: TrialSpec) -> None:
    """Load a local weights file into its backbone (weights_only=True): wrong architecture or junk fails."""
    from trainables.data.features import weights_file
    from trainables.models.probes import build_backbone

    path = weights_file(r.data.weights, r.data.backbone)
    if path is not None:
        build_backbone(r.data.backbone, str(path))


def dry_run(r: TrialSpec) -> None:
    """Build the data and the model, run two samples forward and through the loss, on the CPU."""
    import torch

    from trainables.data import build_data
    from trainables.loop import loss_fn
    from trainables.trainable import make_model

    bundle = build_data(r.pairing.dataset, r.data, r.train.seed)  # ConfigError for corrupt files comes from here
    try:
        model = make_model(r)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{_what(r)} cannot be built: {type(err).__name__}: {err}") from None
    x, y = bundle.x_train[:2], bundle.y_train[:2]
    try:
        with torch.no_grad():
            model.eval()
            out = model(bundle.prepare(x))
            loss_fn(r.train.loss)(out, y)
    except Exception as err:  # shape errors surface as RuntimeError/ValueError from torch
        raise ConfigError(f"{_what(r)} fails on a {tuple(x.shape[1:])} input ({type(err).__name__}: "
                          f"{str(err)[:300]}); choose model settings that fit this input size") from None


def _what(r: TrialSpec) -> str:
    """The failing combination for a message (only built when the dry run fails)."""
    keys = [k for k in model_config_keys(r.pairing.model) if k in r.config]
    return f"pairing {r.pairing.name} with " + (", ".join(f"{k}={r.config[k]!r}" for k in keys) or "its defaults")
