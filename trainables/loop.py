"""The training loop: batches are slices of device-resident tensors, metrics stay on the device.

Per-epoch metrics are written into a preallocated device tensor, so nothing synchronises with
the host inside an epoch (no `.item()` per step); the caller reads the history only when it
reports. Notebook-scale losses (SPEC 3.1: sum of batch-mean losses / N) and true per-sample
means are both kept.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from core.store_schema import EPOCH_METRICS
from trainables import cuda_step, optimizers
from trainables.config import TrainConfig
from trainables.data.bundle import DataBundle

# Columns of the per-epoch history tensor, in order: the per-epoch metrics of the store schema.
HISTORY_KEYS = EPOCH_METRICS


# Shuffle by gathering the whole training set once per epoch (then every batch is a view) when it
# is at most this big; larger sets gather per batch instead of holding a second copy.
EPOCH_GATHER_BYTES = 1 << 30


def make_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """SGD(momentum) or Adam with coupled L2 weight decay, over every parameter (SPEC 3.1/3.4).

    Uses torch's fused kernel where it exists for these parameters (one call per step instead of
    a few per parameter: about half the optimiser time of a small MLP step on CPU), same update.
    The classes are torch's own without the torch.compile decorators (trainables.optimizers): a
    trial process never imports torch._dynamo.
    """
    params = list(model.parameters())
    cls, kwargs = ((optimizers.SGD, dict(lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay))
                   if tc.optimizer == "sgd" else (optimizers.Adam, dict(lr=tc.lr, weight_decay=tc.weight_decay)))
    kwargs.update(cuda_step.optimizer_options(tc.cuda_graphs, tc.optimizer))  # capturable Adam for CUDA graphs
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # a device or dtype the fused kernels do not cover
        return cls(params, **kwargs)


def make_scheduler(opt: torch.optim.Optimizer, tc: TrainConfig):
    """Cosine annealing stepped once per epoch after evaluation, or None."""
    if tc.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.t_max or tc.epochs)
    return None


def loss_fn(loss: str):
    """The loss function named by TrainConfig.loss."""
    return F.cross_entropy if loss == "cross_entropy" else F.mse_loss


class Trainer:
    """Trains one model on one DataBundle; `run_epoch` fills one row of `history`."""

    def __init__(self, model: nn.Module, bundle: DataBundle, tc: TrainConfig, device: torch.device):
        self.model, self.bundle, self.tc, self.device = model, bundle, tc, device
        self.classify = bundle.task == "classification"
        self.criterion = loss_fn(tc.loss)
        cuda_step.prepare_model(model, tc.channels_last)
        self.opt = make_optimizer(model, tc)
        self.sched = make_scheduler(self.opt, tc)
        # The per-batch step and the eval input transform (trainables.cuda_step: amp, channels_last,
        # CUDA graphs; with the default settings exactly the plain eager step).
        self._step = cuda_step.make_step(self)
        self._input = cuda_step.input_fn(bundle.prepare, tc.channels_last)
        # Shuffling draws from its own generator so resuming restores exactly the same order.
        self.gen = torch.Generator().manual_seed(tc.seed)
        self.history = torch.zeros(tc.epochs, len(HISTORY_KEYS), dtype=torch.float64, device=device)
        if tc.evaluate_on == "train":
            self.x_eval, self.y_eval = bundle.x_train, bundle.y_train
        else:
            self.x_eval, self.y_eval = bundle.x_val, bundle.y_val

    def _batch_stats(self, out: torch.Tensor, y: torch.Tensor):
        if not self.classify:
            return torch.zeros((), dtype=torch.long, device=self.device)  # regression: no accuracy
        return (out.argmax(1) == y).sum()

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass over the training tensors. Returns (sum of batch-mean losses, sum of sample losses, correct)."""
        self.model.train()
        x, y, bs = self.bundle.x_train, self.bundle.y_train, self.tc.batch_size
        n = x.shape[0]
        order = (cuda_step.to_device(torch.randperm(n, generator=self.gen), self.device)
                 if self.tc.shuffle else None)
        if order is not None and x.element_size() * x.numel() <= EPOCH_GATHER_BYTES:
            x, y, order = x[order], y[order], None
        # Per-step losses and outputs are kept and reduced once per epoch: no per-step metric ops.
        losses, outs, labels = [], [], []
        for start in range(0, n, bs):
            if order is None:
                xb, yb = x[start:start + bs], y[start:start + bs]
            else:
                idx = order[start:start + bs]
                xb, yb = x[idx], y[idx]
            out, loss = self._step(xb, yb)
            losses.append(loss)
            if self.classify:
                outs.append(out)
                labels.append(yb)
        losses = torch.stack(losses)
        sizes = torch.full_like(losses, bs)
        sizes[-1:].fill_(n - bs * (len(losses) - 1))  # fill_, not `sizes[-1] = n`: no blocking host copy
        correct = (self._batch_stats(torch.cat(outs), torch.cat(labels)) if self.classify
                   else torch.zeros((), dtype=torch.long, device=self.device))
        return losses.sum(), (losses * sizes).sum(), correct

    @torch.no_grad()
    def evaluate(self, confusion: bool = False):
        """Evaluate on the held-out (or training) tensors.

        Returns:
            (sum of batch-mean losses, sum of sample losses, correct, confusion matrix or None);
            the matrix is num_classes x num_classes, rows = true, columns = predicted.
        """
        self.model.eval()
        x, y, bs = self.x_eval, self.y_eval, self.tc.eval_batch_size
        k = self.bundle.num_classes
        loss_sum = torch.zeros((), device=self.device)
        sample_loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        cm = torch.zeros(k * k, dtype=torch.long, device=self.device) if confusion and self.classify else None
        for start in range(0, x.shape[0], bs):
            xb, yb = x[start:start + bs], y[start:start + bs]
            with cuda_step.eval_context(self.tc.amp, self.device):
                out = self.model(self._input(xb))
                loss = self.criterion(out, yb)
            loss_sum += loss
            sample_loss_sum += loss * yb.shape[0]
            if self.classify:
                pred = out.argmax(1)
                correct += (pred == yb).sum()
                if cm is not None:
                    cm += torch.bincount(yb * k + pred, minlength=k * k)
        return loss_sum, sample_loss_sum, correct, None if cm is None else cm.view(k, k)

    def run_epoch(self, epoch: int) -> None:
        """Train and evaluate epoch `epoch` (1-based) and store its metrics in `history`."""
        lr = self.opt.param_groups[0]["lr"]
        tl, tls, tc_ = self.train_epoch()
        vl, vls, vc, _ = self.evaluate()
        n_train, n_eval = self.bundle.x_train.shape[0], self.x_eval.shape[0]
        row = torch.stack([tl / n_train, tc_ / n_train, vl / n_eval, vc / n_eval,
                           tls / n_train, vls / n_eval, torch.full((), lr, device=self.device)])  # no host->device copy
        self.history[epoch - 1] = row.to(self.history.dtype)
        if self.sched is not None:
            self.sched.step()

    def history_rows(self, first: int, last: int) -> list[dict[str, float]]:
        """Metrics of epochs first..last (1-based, inclusive) as dicts; one host transfer."""
        rows = self.history[first - 1:last].cpu().tolist()
        keys = HISTORY_KEYS if self.classify else tuple(k for k in HISTORY_KEYS if "acc" not in k)
        idx = [HISTORY_KEYS.index(k) for k in keys]
        return [{k: r[i] for k, i in zip(keys, idx)} for r in rows]

    def state_dict(self) -> dict:
        """A detached copy (training goes on mutating the live tensors)."""
        return copy.deepcopy({
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": None if self.sched is None else self.sched.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history.cpu(),
        })

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state["scheduler"] is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history.copy_(state["history"].to(self.device))
