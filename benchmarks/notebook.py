"""The notebook way (SPEC 3.1), the baseline every speed-up is measured against.

Per-sample PIL `EdgeDetectionDataset` + `ToTensor` + `DataLoader` (no workers), one `.item()`
per step for the loss and one for the correct count, trials run one after another. For
edge-data-per-class the notebook interleaves a CNN epoch and an MLP epoch and evaluates once,
after the final epoch; `train_model` (later experiments) evaluates after every epoch.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

from trainables.data.edges import EdgeDetectionDataset
from trainables.models.edge import SimpleCNN, ThreeLayerMLP

SIZES = (10, 30, 50, 100)


def set_seed(seed: int) -> None:
    """The notebook's set_seed: Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_loaders(sizes=SIZES, valid_per_class: int = 50, batch_size: int = 32,
                 eval_batch_size: int = 256, seed: int = 10) -> tuple[dict[int, DataLoader], DataLoader]:
    """Training loaders for every size, then the validation loader, all from one global NumPy stream."""
    set_seed(seed)
    train = {n: DataLoader(EdgeDetectionDataset({"data_per_class": n}, "train", ToTensor()),
                           batch_size=batch_size, shuffle=True) for n in sorted(sizes)}
    valid = EdgeDetectionDataset({"data_per_class": valid_per_class}, "valid", ToTensor())
    return train, DataLoader(valid, batch_size=eval_batch_size, shuffle=False)


def make_models(seed: int = 10, kernel_size: int = 7) -> tuple[nn.Module, nn.Module]:
    """set_seed, then the CNN, then the MLP (which re-seeds torch with 7 globally, as the source)."""
    set_seed(seed)
    cnn = SimpleCNN(num_filter=3, kernel_size=kernel_size, num_classes=3)
    mlp = ThreeLayerMLP(hidden_dims=(50, 10), num_classes=3, seed=7, notebook_global_seed=True)
    return cnn, mlp


def train_epoch(model, optimizer, loader, device) -> tuple[float, float]:
    """One notebook epoch: (sum of batch-mean losses / N, accuracy fraction)."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    running, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        running += loss.item()
        correct += (out.argmax(1) == y).sum().item()
        n += y.shape[0]
    return running / n, correct / n


@torch.no_grad()
def evaluate(model, loader, device, num_classes: int = 3) -> tuple[float, float, np.ndarray]:
    """Notebook evaluation: (loss sum / N, accuracy fraction, confusion matrix)."""
    model.eval()
    criterion = nn.CrossEntropyLoss()
    running, correct, n = 0.0, 0, 0
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        running += criterion(out, y).item()
        pred = out.argmax(1)
        correct += (pred == y).sum().item()
        for t, p in zip(y.tolist(), pred.tolist()):
            cm[t, p] += 1
        n += y.shape[0]
    return running / n, correct / n, cm


@dataclass
class NotebookResult:
    """What one notebook run returns: final validation accuracy per (model, size), steps, time."""

    val_acc: dict[tuple[str, int], float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0


def train_model(model, epochs: int, train_loader, valid_loader, device, lr: float = 1e-2) -> tuple[float, int]:
    """The notebook's train_model: SGD(momentum 0.9); evaluates after every epoch. Returns (val_acc, steps)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    val_acc, steps = 0.0, 0
    for _ in range(epochs):
        train_epoch(model, opt, train_loader, device)
        steps += len(train_loader)
        val_acc = evaluate(model, valid_loader, device)[1]
    return val_acc, steps


def data_per_class_sweep(epochs: int, sizes=SIZES, seed: int = 10, device: str = "cpu") -> NotebookResult:
    """edge-data-per-class as the notebook runs it: per size, CNN and MLP epochs interleaved,
    one evaluation after the final epoch. Data building is inside the timing, as in the notebook."""
    dev = torch.device(device)
    t0 = time.perf_counter()
    res = NotebookResult()
    train, valid = make_loaders(sizes, seed=seed)
    for n in sorted(sizes):
        cnn, mlp = (m.to(dev) for m in make_models(seed))
        opts = [torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9) for m in (cnn, mlp)]
        for _ in range(epochs):
            for model, opt in zip((cnn, mlp), opts):
                train_epoch(model, opt, train[n], dev)
                res.steps += len(train[n])
        for name, model in (("simple_cnn", cnn), ("three_layer_mlp", mlp)):
            res.val_acc[(name, n)] = evaluate(model, valid, dev)[1]
    res.seconds = time.perf_counter() - t0
    return res


def main() -> None:
    """`python -m benchmarks.notebook --epochs 200 --seeds 1`: the notebook's sweep, one thread."""
    import argparse

    p = argparse.ArgumentParser(description="edge-data-per-class the notebook way")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", type=int, default=1, help="replicates (seeds 10, 11, ...), run one after another")
    args = p.parse_args()
    # One thread: the fastest setting for these tiny models on a shared 2-core machine (two threads
    # contend with everything else running); the notebook's own default would only be slower.
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for seed in range(10, 10 + args.seeds):
        res = data_per_class_sweep(args.epochs, seed=seed)
        accs = ", ".join(f"{m}@{n}={a:.3f}" for (m, n), a in sorted(res.val_acc.items()))
        print(f"seed {seed}: {res.seconds:.1f} s, {res.steps} steps; val_acc {accs}", flush=True)
    print(f"notebook total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
