"""Packed training: K trials of one architecture trained as one batched model with torch.func.

The members' parameters are stacked (`torch.func.stack_module_state`) and one forward pass runs
all of them (`torch.func.vmap` over `torch.func.functional_call`); each member's loss only
depends on its own parameters, so one backward pass of the summed losses gives every member
exactly its own gradient. Members may differ in seed (initial weights and shuffling), lr and
data (`PACK_VARYING`); everything else that shapes training must be equal (`pack_key`).

Members with different training-set sizes have different numbers of batches per epoch. Every
member keeps its own batches (the same index slices as the unpacked loop): each step gathers
one batch per member, padded to batch_size with masked samples, and a member whose epoch is
over is masked out of the step, so its parameters and optimiser state stay untouched
(`PackedOptimizer.step(active)`). The packed step costs as much as the longest member's, so
`cluster.tuner.packing` groups equal sizes together where it can.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from trainables.config import TrainConfig
from trainables.cuda_step import to_device
from trainables.data.bundle import DataBundle
from trainables.loop import HISTORY_KEYS
from trainables.packed_optim import PackedOptimizer

# Trial-config keys packed members may differ in; every other key must be equal within a pack.
PACK_VARYING = ("seed", "model_seed", "data_seed", "lr", "data_per_class")
# Settings that do not change the computation and so never prevent packing.
PACK_IGNORED = ("log_to_mlflow", "log_artifacts", "report_every", "checkpoint_every", "threads", "device")
# Modules whose training behaviour is not a pure function of (params, input): running statistics
# are updated in place, dropout draws random masks that could not match an unpacked run.
UNPACKABLE_MODULES = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def pack_key(config: dict) -> tuple:
    """What must be equal for two resolved trial configs to share a pack (a sortable, hashable key)."""
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in PACK_VARYING + PACK_IGNORED))


def why_not_packable(tc: TrainConfig, model: nn.Module, task: str = "classification") -> str | None:
    """The reason a trial cannot train in a pack, or None when it can."""
    if tc.scheduler != "none":
        return f"scheduler={tc.scheduler!r} (packs support scheduler='none')"
    if tc.optimizer not in ("sgd", "adam"):
        return f"optimizer={tc.optimizer!r}"
    if tc.fail_at_epoch is not None:
        return "fault injection (fail_at_epoch) is for unpacked trials"
    if tc.cuda_graphs or tc.amp != "off" or tc.channels_last:
        return "cuda_graphs, amp and channels_last are settings of unpacked trials (trainables.cuda_step)"
    bad = sorted({type(m).__name__ for m in model.modules() if isinstance(m, UNPACKABLE_MODULES)})
    if bad:
        return f"model has {', '.join(bad)} (state or randomness that vmap cannot reproduce per member)"
    if task not in ("classification", "regression"):
        return f"task={task!r}"
    return None


# On CPU a packed step costs ~450 us + ~120 us per MLP member against ~235 us for an unpacked step
# (benchmarks/bench_packing.py): packs of 4 only break even, so CPU packs need at least 5 members.
MIN_PACK = {"cpu": 5, "cuda": 2}


def packing_pays(model: nn.Module, device_type: str) -> bool:
    """The measured rule (benchmarks/bench_packing.py): on CPU, convolutions under vmap become grouped
    convolutions that run no faster per member than separate ones, so conv models are not packed."""
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return device_type != "cpu" or not has_conv


def _stack_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(K, max N, ...) with zeros after each member's own N rows."""
    n_max = max(t.shape[0] for t in tensors)
    out = tensors[0].new_zeros((len(tensors), n_max, *tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, :t.shape[0]] = t
    return out


class PackedTrainer:
    """Trains K models of one architecture on K DataBundles as one vmapped model.

    The interface mirrors `trainables.loop.Trainer`: `run_epoch(epoch)` fills one row per member
    of `history` (K, epochs, len(HISTORY_KEYS)); `history_rows(i, first, last)` reads member i.

    Args:
        models: K freshly built models (same architecture), already seeded per member.
        bundles: K data bundles (on CPU or the device), same input shape and eval split size rules.
        tcs: K training configs that differ only in PACK_VARYING keys.
        device: where the stacked parameters and data live.

    Raises:
        ValueError: the members disagree on a shared setting or cannot be packed.
    """

    def __init__(self, models: list[nn.Module], bundles: list[DataBundle], tcs: list[TrainConfig],
                 device: torch.device):
        if not (len(models) == len(bundles) == len(tcs) >= 1):
            raise ValueError("a pack needs as many models, bundles and configs, at least one each")
        tc = tcs[0]
        for other in tcs[1:]:
            for key in ("batch_size", "eval_batch_size", "epochs", "optimizer", "momentum", "weight_decay",
                        "loss", "shuffle", "evaluate_on", "scheduler"):
                if getattr(other, key) != getattr(tc, key):
                    raise ValueError(f"packed members disagree on {key}: "
                                     f"{getattr(tc, key)!r} vs {getattr(other, key)!r}")
        for m in models:
            reason = why_not_packable(tc, m, bundles[0].task)
            if reason:
                raise ValueError(f"cannot pack: {reason}")
        self.K, self.tc, self.tcs, self.device = len(models), tc, tcs, device
        self.bundle = bundles[0]
        self.classify = self.bundle.task == "classification"
        self.num_classes = self.bundle.num_classes
        params, buffers = stack_module_state(models)
        # Linear weights are stored transposed, (K, in, out): the batched matmul then reads and
        # writes contiguous memory and the weight gradient needs no layout copy (measured ~1.3x).
        self.transposed = {n for n, p in params.items() if p.dim() == 3}
        self.params = {n: (p.detach().transpose(1, 2) if n in self.transposed else p.detach())
                       .contiguous().to(device).requires_grad_(p.requires_grad) for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.template = copy.deepcopy(models[0]).to(device)
        skeleton = copy.deepcopy(models[0]).to("meta")
        self._forward = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)))
        self.lr = torch.tensor([t.lr for t in tcs], dtype=torch.float32, device=device)
        self.opt = PackedOptimizer(self.params, tc.optimizer, self.lr, tc.momentum, tc.weight_decay)
        self.gens = [torch.Generator().manual_seed(t.seed) for t in tcs]
        self.history = torch.zeros(self.K, tc.epochs, len(HISTORY_KEYS), dtype=torch.float64, device=device)
        on_train = tc.evaluate_on == "train"
        self.n_train = [b.x_train.shape[0] for b in bundles]
        self.n_eval = [(b.x_train if on_train else b.x_val).shape[0] for b in bundles]
        self.x_train = _stack_padded([b.x_train for b in bundles]).to(device)
        self.y_train = _stack_padded([b.y_train for b in bundles]).to(device)
        self.x_eval = self.x_train if on_train else _stack_padded([b.x_val for b in bundles]).to(device)
        self.y_eval = self.y_train if on_train else _stack_padded([b.y_val for b in bundles]).to(device)
        self._buffers_out: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (K, B, ...) of every member for a (K, B, ...) batch."""
        params = {n: (p.transpose(1, 2) if n in self.transposed else p) for n, p in self.params.items()}
        if self.bundle.input_transform is not None:
            x = self.bundle.prepare(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return self._forward(params, self.buffers, x)

    def _sample_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.tc.loss == "cross_entropy":
            return F.cross_entropy(out.flatten(0, 1), y.flatten(0, 1), reduction="none").view(y.shape[:2])
        return F.mse_loss(out, y, reduction="none").flatten(2).mean(2)

    def _layout(self, n: list[int], bs: int, orders: list[torch.Tensor] | None, x: torch.Tensor, y: torch.Tensor):
        """Every member's samples of one pass, in its batch order, as (K, steps*bs, ...) tensors.

        Member i's j-th batch is its order[j*bs:(j+1)*bs], exactly the unpacked loop's slice;
        positions past its own N are padding (weight 0). One gather per pass, so every step
        reads contiguous slices. Returns (x, y, weights (K, L), counts (K, steps), active): active[j]
        is None when every member has samples at step j, else a (K,) device mask (decided on the
        host, so no step waits for the device).
        """
        steps = max(math.ceil(v / bs) for v in n)
        n_max = x.shape[1]
        flat = torch.zeros(self.K, steps * bs, dtype=torch.long)
        valid = torch.zeros(self.K, steps * bs, dtype=torch.bool)
        for i, ni in enumerate(n):
            flat[i, :ni] = (orders[i] if orders is not None else torch.arange(ni)) + i * n_max
            flat[i, ni:] = i * n_max
            valid[i, :ni] = True
        first = valid[:, ::bs]
        # Host tensors reach the device through pinned memory: no copy makes the host wait.
        full = first.all(0).tolist()  # host data: reading it waits for nothing
        active = [None if full[j] else to_device(first[:, j], self.device) for j in range(steps)]
        flat = to_device(flat.view(-1), self.device)
        xs = self._gather(x, flat).view(self.K, steps * bs, *x.shape[2:])
        ys = self._gather(y, flat).view(self.K, steps * bs, *y.shape[2:])
        w = to_device(valid.to(torch.float32), self.device)
        return xs, ys, w, w.view(self.K, steps, bs).sum(2), active

    def _gather(self, t: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """Rows `flat` of t flattened over (K, N), into a buffer kept from pass to pass (a fresh
        multi-MB tensor per epoch costs page faults on CPU, measured)."""
        shape = (flat.shape[0], *t.shape[2:])
        key = (t.data_ptr(), shape)
        if self._buffers_out.get(key) is None:
            self._buffers_out[key] = t.new_empty(shape)
        return torch.index_select(t.flatten(0, 1), 0, flat, out=self._buffers_out[key])

    def _metrics(self, losses: list[torch.Tensor], outs: list[torch.Tensor], y: torch.Tensor,
                 w: torch.Tensor, counts: torch.Tensor):
        """(K,) sums of batch-mean losses, of sample losses and correct counts, computed once per pass."""
        per_step = torch.stack(losses, 1)
        correct = torch.zeros(self.K, device=self.device)
        if self.classify:
            correct = ((torch.cat(outs, 1).argmax(-1) == y) * w).sum(1)
        return per_step.sum(1), (per_step * counts).sum(1), correct

    def train_epoch(self):
        """One pass over every member's training set; returns (K,) sums like Trainer.train_epoch."""
        bs = self.tc.batch_size
        orders = [torch.randperm(n, generator=g) for n, g in zip(self.n_train, self.gens)] if self.tc.shuffle else None
        x, y, w, counts, active = self._layout(self.n_train, bs, orders, self.x_train, self.y_train)
        denom = counts.clamp(min=1)
        losses, outs = [], []
        for j, act in enumerate(active):
            sl = slice(j * bs, (j + 1) * bs)
            out = self.forward(x[:, sl])
            member_loss = (self._sample_losses(out, y[:, sl]) * w[:, sl]).sum(1) / denom[:, j]
            self.opt.zero_grad()
            member_loss.sum().backward()
            self.opt.step(act)
            losses.append(member_loss.detach())
            outs.append(out.detach())
        return self._metrics(losses, outs, y, w, counts)

    @torch.no_grad()
    def evaluate(self, confusion: bool = False):
        """Evaluate every member; returns (K,) sums and a (K, C, C) confusion matrix or None.

        Evaluation reads each member's samples in stored order, so its batches are plain slices of
        the stacked (K, N_max, ...) tensors (no gather, no padding beyond the longest member).
        """
        bs, k = self.tc.eval_batch_size, self.num_classes
        n_max = self.x_eval.shape[1]
        w = to_device((torch.arange(n_max) < torch.tensor(self.n_eval)[:, None]).to(torch.float32), self.device)
        starts = range(0, n_max, bs)
        counts = torch.stack([w[:, s:s + bs].sum(1) for s in starts], 1)
        losses, outs = [], []
        for j, s in enumerate(starts):
            out = self.forward(self.x_eval[:, s:s + bs])
            per = self._sample_losses(out, self.y_eval[:, s:s + bs]) * w[:, s:s + bs]
            losses.append(per.sum(1) / counts[:, j].clamp(min=1))
            outs.append(out)
        loss_sum, sample_loss_sum, correct = self._metrics(losses, outs, self.y_eval, w, counts)
        cm = None
        if confusion and self.classify:
            pred = torch.cat(outs, 1).argmax(-1)
            cells = (torch.arange(self.K, device=self.device)[:, None] * k * k + self.y_eval * k + pred)[w > 0]
            cm = torch.bincount(cells, minlength=self.K * k * k).view(self.K, k, k)
        return loss_sum, sample_loss_sum, correct, cm

    def run_epoch(self, epoch: int) -> None:
        """Train and evaluate epoch `epoch` (1-based) of every member; fill history[:, epoch-1]."""
        tl, tls, tc_ = self.train_epoch()
        vl, vls, vc, _ = self.evaluate()
        n_t = to_device(torch.tensor(self.n_train, dtype=torch.float32), self.device)
        n_e = to_device(torch.tensor(self.n_eval, dtype=torch.float32), self.device)
        row = torch.stack([tl / n_t, tc_ / n_t, vl / n_e, vc / n_e, tls / n_t, vls / n_e, self.lr], dim=1)
        self.history[:, epoch - 1] = row.to(self.history.dtype)

    def history_rows(self, member: int, first: int, last: int) -> list[dict[str, float]]:
        """Member `member`'s metrics of epochs first..last (1-based, inclusive), as Trainer.history_rows."""
        rows = self.history[member, first - 1:last].cpu().tolist()
        keys = HISTORY_KEYS if self.classify else tuple(k for k in HISTORY_KEYS if "acc" not in k)
        idx = [HISTORY_KEYS.index(k) for k in keys]
        return [{k: r[i] for k, i in zip(keys, idx)} for r in rows]

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """Member `member`'s model state dict (the unpacked layout), detached copies."""
        out = {n: (p[member].t() if n in self.transposed else p[member]).detach().clone()
               for n, p in self.params.items()}
        out.update({n: b[member].clone() for n, b in self.buffers.items()})
        return out

    def member_model(self, member: int) -> nn.Module:
        """A standalone model holding member `member`'s current weights (for evaluators and figures)."""
        model = copy.deepcopy(self.template)
        model.load_state_dict(self.member_state_dict(member), strict=False)
        return model

    def state_dict(self) -> dict:
        return copy.deepcopy({
            "params": {n: p.detach() for n, p in self.params.items()},
            "buffers": self.buffers,
            "optimizer": self.opt.state_dict(),
            "generators": [g.get_state() for g in self.gens],
            "history": self.history.cpu(),
        })

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state["params"][n].to(self.device))
            for n, b in self.buffers.items():
                b.copy_(state["buffers"][n].to(self.device))
        self.opt.load_state_dict(state["optimizer"])
        for g, s in zip(self.gens, state["generators"]):
            g.set_state(s)
        self.history.copy_(state["history"].to(self.device))
