"""The order in which a plain grid sweep's cells start: the largest first.

Tune starts a grid's trials in the order it crosses the axes (the first axis slowest), so a sweep
over data sizes ends with its largest trials started last, and one trial process trains alone
while the others have nothing left: on 2 CPUs, `sweep run edge-data-per-class` started its
longest trial (CNN, 100 images per class, 200 epochs: ~13 s) as the 4th of 8, and the other trial
process idled its last 4 s. Starting the cells with the most work first (the classic
longest-processing-time rule) leaves only short trials for the end.

The work of a cell is estimated, without running anything, as its epochs times the size of its
data (the dataset's own `peak_bytes` estimate of the resolved data config, which grows with the
training examples; datasets without one count as equal). Cells of equal estimate keep the plan's
order, and a plan already in that order keeps Tune's own grid space unchanged. Only the order
changes: every cell, its config, seed and record are exactly those of the plan.

Only plain grids are reordered (no searcher, no scheduler, no sampled axis, one sample, no packs
or --until-decided): a scheduler's or searcher's own order is left alone.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from cluster.planning.plan import Plan, to_tune_space
from trainables.spec import CELL_KEY, TrialSpec


def work(spec: TrialSpec) -> float:
    """Estimated work of one cell: epochs x its data's size estimate (1 when the dataset gives none)."""
    from trainables.data import DATASETS

    size = 1.0
    dataset = DATASETS.get(spec.pairing.dataset)
    if dataset is not None and dataset.peak_bytes is not None:
        size = float(dataset.peak_bytes(spec.data))
    return spec.train.epochs * size


def largest_first(specs: list[TrialSpec]) -> list[int]:
    """Cell indices by estimated work, largest first; equal estimates keep their order."""
    costs = [work(s) for s in specs]
    return sorted(range(len(specs)), key=lambda i: -costs[i])


def ordered_space(plan: Plan, space: dict[str, Any]) -> dict[str, Any]:
    """`space` (the plan's plain grid, as cluster.planning.plan.to_tune_space makes it), or the same
    cells enumerated largest first when that order differs from the plan's."""
    if plan.sampled or plan.num_samples != 1 or not plan.cell_vars or len(plan.specs) != len(plan.cell_vars):
        return space
    try:
        order = largest_first(plan.specs)
    except Exception:  # noqa: BLE001 - an estimate that cannot be made (a user dataset's): the plan's order
        return space
    if order == sorted(order):
        return space
    from ray import tune

    cells = to_tune_space(dataclasses.replace(plan, explicit=True))  # every key read from the trial's cell
    cells[CELL_KEY] = tune.grid_search(order)
    return cells
