"""The in-memory form every dataset builder returns: tensors, ready to move to a device."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class DataBundle:
    """Train and held-out tensors of one trial, plus what the loop needs to use them.

    Tensors live on CPU when built; `to(device)` moves them once, so batches are slices of
    device-resident tensors (no DataLoader in the hot loop).

    Attributes:
        x_train, y_train: training inputs (N, ...) and targets (int64 labels, or float boxes).
        x_val, y_val: held-out inputs and targets (validation, or test when eval_split="test").
        num_classes: number of classes (0 for regression tasks).
        task: "classification" (cross-entropy/argmax) or "regression" (e.g. box MSE).
        eval_split: "valid", "test" or "train"; logged as the run tag `eval_split`.
        class_names: human-readable label names, index = label.
        input_transform: applied on the device to every batch before the model (e.g. uint8 ->
            normalised float); None means the tensors are model-ready.
        meta: anything else a plot or evaluator needs (permutation, sample ids, statistics).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    task: str = "classification"
    eval_split: str = "valid"
    class_names: list[str] = field(default_factory=list)
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    meta: dict = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "DataBundle":
        """Move every tensor to `device` once (non-blocking where possible)."""
        for name in ("x_train", "y_train", "x_val", "y_val"):
            setattr(self, name, getattr(self, name).to(device, non_blocking=True))
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Return a model-ready batch (apply `input_transform` if any)."""
        return x if self.input_transform is None else self.input_transform(x)
