"""`sweep run --pack K`: group a plan's grid cells into packs trained as one model per Tune trial.

Rules (documented in README.md, section Performance):
- Members of a pack share everything but trainables.packing.PACK_VARYING (seed, model_seed,
  data_seed, lr, data_per_class): same pairing, architecture, batch size, epochs, optimiser.
- On a GPU, where a step of 1 or 32 members costs about the same, cells are packed in order of
  training-set size, K at a time; members with fewer batches are masked out of the steps their
  epoch does not have.
- On CPU a packed step costs more per extra member: a pack only pays with equal sizes (a mixed
  one measured 0.3x) and at least trainables.packing.MIN_PACK["cpu"] members. Each size's cells
  are split evenly into packs of at most K; packs that would be smaller stay unpacked.
- A cell trains unpacked (a pack of one, i.e. a plain trial) when its model or settings cannot be
  packed (trainables.packing.why_not_packable) or when packing would not pay: convolutional
  models on CPU (trainables.packing.packing_pays, measured in benchmarks/bench_packing.py).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError


@dataclass
class PackPlan:
    """The packs of a sweep and why some cells stay unpacked.

    Attributes:
        packs: member configs per Tune trial (a list of one config = an unpacked trial).
        unpacked: pairing -> reason, for pairings whose cells run one per trial.
    """

    packs: list[list[dict[str, Any]]]
    unpacked: dict[str, str] = field(default_factory=dict)

    def summary(self, k: int) -> str:
        n = sum(len(p) for p in self.packs)
        sizes = sorted({len(p) for p in self.packs if len(p) > 1})
        text = f"--pack {k}: {n} trials in {len(self.packs)} Tune trials"
        if sizes:
            text += f" (pack sizes {', '.join(map(str, sizes))})"
        for pairing, reason in sorted(self.unpacked.items()):
            text += f"; {pairing} unpacked: {reason}"
        return text


def _model_check(resolved, device_type: str, cache: dict) -> str | None:
    """Why cells of this pairing/architecture stay unpacked (None: pack them); one model build per architecture."""
    import torch

    from trainables.models import build_model
    from trainables.packing import packing_pays, why_not_packable

    tc = resolved.train
    key = (resolved.pairing.name, repr(sorted(resolved.model_kwargs.items())), device_type,
           tc.scheduler, tc.optimizer, tc.fail_at_epoch)
    if key not in cache:
        with torch.random.fork_rng(devices=[]):  # the spec's keywords hold num_classes and input sizes
            model = build_model(resolved.pairing.model, **resolved.model_kwargs)
        reason = why_not_packable(resolved.train, model)
        if reason is None and not packing_pays(model, device_type):
            reason = f"convolutions on {device_type} run no faster packed (measured)"
        cache[key] = reason
    return cache[key]


def make_packs(cells: list[dict[str, Any]], k: int, gpu: bool = False, specs: list | None = None) -> PackPlan:
    """Group grid cells (flat trial configs) into packs of at most k members.

    Args:
        cells: the plan's cells (cluster.planning.plan.Plan.cells()).
        k: the largest pack (k >= 2; k == 1 means no packing).
        gpu: trials run on a GPU (Ray gives them one and device is not "cpu").
        specs: the cells' resolved specs (cluster.planning.plan.Plan.specs); resolved here when None.

    Returns:
        PackPlan; every cell appears in exactly one pack, in a deterministic order.

    Raises:
        ConfigError: k < 1.
    """
    from trainables.packing import MIN_PACK, pack_key
    from trainables.spec import resolve_config

    if k < 1:
        raise ConfigError(f"--pack must be >= 1, got {k}")
    cache: dict = {}
    groups: dict[tuple, list[tuple[Any, dict]]] = defaultdict(list)
    plan = PackPlan([])
    for cell, r in zip(cells, specs if specs is not None else map(resolve_config, cells)):
        device_type = "cuda" if gpu and r.train.device != "cpu" else "cpu"
        reason = "--pack 1" if k == 1 else _model_check(r, device_type, cache)
        if reason is not None:
            plan.unpacked.setdefault(r.pairing.name, reason)
            plan.packs.append([cell])
            continue
        size = getattr(r.data, "data_per_class", 0)
        groups[pack_key(r.config)].append((size, cell))
    for members in groups.values():
        if gpu:
            ordered = [cell for _, cell in sorted(members, key=lambda sc: sc[0])]  # stable: seeds stay in order
            plan.packs.extend(ordered[i:i + k] for i in range(0, len(ordered), k))
            continue
        by_size: dict[Any, list[dict]] = defaultdict(list)
        for size, cell in members:
            by_size[size].append(cell)
        for size in sorted(by_size):
            plan.packs.extend(_even_packs(by_size[size], k, MIN_PACK["cpu"]))
    return plan


def _even_packs(cells: list[dict], k: int, smallest: int) -> list[list[dict]]:
    """Split cells into ceil(n/k) packs of near-equal size; packs below `smallest` become single cells."""
    n_packs = -(-len(cells) // k)
    base, extra = divmod(len(cells), n_packs)
    packs, start = [], 0
    for i in range(n_packs):
        size = base + (i < extra)
        pack = cells[start:start + size]
        start += size
        packs.extend([pack] if len(pack) >= smallest else [[c] for c in pack])
    return packs


def check_pack(plan, k: int, scheduler: str | None = None, search: str = "random") -> None:
    """Refuse `--pack K` (K > 1) where packs cannot be built; run by `plan_sweep`, before Ray or MLflow start.

    Raises:
        ConfigError: a trial scheduler (ASHA stops whole Tune trials, i.e. every member of a pack),
            a model-based searcher, sampled values (packs are built from grid cells) or
            --num-samples > 1.
    """
    if k <= 1:
        return
    if scheduler not in (None, "none"):
        raise ConfigError(f"--pack cannot be combined with --scheduler {scheduler}: a scheduler stops whole "
                          "Tune trials, i.e. every member of a pack; drop one of them"
                          + (" (this experiment uses ASHA by default: add --scheduler none)"
                             if plan.experiment.search is not None else ""))
    if search not in (None, "random"):
        raise ConfigError(f"--pack cannot be combined with --search {search}: a searcher proposes one "
                          "config per Tune trial; drop --pack")
    if plan.sampled:
        raise ConfigError("--pack works on grid sweeps; this plan samples values (a search): drop --pack")
    if plan.num_samples != 1:
        raise ConfigError(f"--pack needs --num-samples 1, got {plan.num_samples}; use --seeds for replicates")


def packed_space(plan, k: int, gpu: bool = False, scheduler: str | None = None) -> tuple[dict[str, Any], PackPlan]:
    """The Tune param_space of a packed sweep ({"members": grid over packs}) and its PackPlan.

    Raises:
        ConfigError: the plan samples values (packs are built from grid cells) or repeats them, or
            a trial scheduler would stop trials early (it cannot stop one member of a pack).
    """
    from ray import tune

    check_pack(plan, k, scheduler)
    packs = make_packs(plan.cells(), k, gpu, plan.specs)
    return {"members": tune.grid_search(packs.packs)}, packs
