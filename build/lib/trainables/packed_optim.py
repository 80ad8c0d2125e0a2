"""SGD and Adam over stacked (K, ...) parameters, with one learning rate per packed member.

The update rules are those of `torch.optim.SGD` (dampening 0, no Nesterov) and `torch.optim.Adam`
(coupled L2 weight decay, no AMSGrad), applied member-wise: member i uses lr[i] and its own step
count. `step(active)` leaves the parameters and the optimiser state of inactive members exactly
as they were, which is what "this member has no batch at this step" means (members with fewer
training samples finish their epoch early). Frozen parameters (requires_grad False) are skipped,
as torch's optimisers skip parameters without a gradient.

`fused=True` (the default on CUDA) keeps the optimiser state in one flat buffer and updates every
parameter at once: a handful of kernels per step instead of several per parameter, which is what
a launch-bound GPU step needs. The flat update is the per-parameter one written element-wise (the
per-member lr and bias corrections gathered per element), so both give the same numbers
(tests/test_gpu.py::test_fused_packed_optimizer_equals_per_parameter, on CPU); on CPU the
per-parameter path stays the default.
"""
from __future__ import annotations

import torch

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (K,) tensor to broadcast against a stacked (K, ...) tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class PackedOptimizer:
    """Functional SGD(momentum, weight decay) or Adam over a dict of stacked parameters.

    Args:
        params: name -> stacked leaf tensor (K, ...); gradients are read from `.grad`.
        kind: "sgd" or "adam".
        lr: (K,) learning rates, one per member.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: coupled L2 weight decay, as torch's SGD and Adam apply it.
        fused: update all parameters at once from a flat state buffer; None = on CUDA only.
    """

    def __init__(self, params: dict[str, torch.Tensor], kind: str, lr: torch.Tensor,
                 momentum: float = 0.0, weight_decay: float = 0.0, fused: bool | None = None):
        if kind not in ("sgd", "adam"):
            raise ValueError(f"optimizer {kind!r} cannot be packed; use 'sgd' or 'adam'")
        self.params = {n: p for n, p in params.items() if p.requires_grad}
        self.kind, self.lr, self.momentum, self.weight_decay = kind, lr, momentum, weight_decay
        self.fused = lr.device.type == "cuda" if fused is None else fused
        names = ({"sgd": ("buf",) if momentum else (), "adam": ("exp_avg", "exp_avg_sq")}[kind])
        plist = list(self.params.values())
        sizes = [p.numel() for p in plist]
        # One flat buffer per state kind; each parameter's state is a view into it (so state_dict
        # and the per-parameter path see the same memory). A zero SGD buffer gives momentum*0 + g
        # == g, torch's clone(g) on the first step.
        flat = {k: torch.zeros(sum(sizes), dtype=plist[0].dtype, device=plist[0].device) if plist else None
                for k in names}
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        offset = 0
        for (name, p), n in zip(self.params.items(), sizes):
            self.state[name] = {k: flat[k][offset:offset + n].view(p.shape) for k in names}
            offset += n
        self._flat_state = flat
        self._sizes = sizes
        # member_of[j]: the pack member of flat element j (parameters are (K, ...) and contiguous).
        k = lr.shape[0]
        self._member_of = (torch.cat([torch.arange(k, device=lr.device).repeat_interleave(n // k) for n in sizes])
                           if plist else None)
        self.steps = torch.zeros(k, dtype=torch.float64, device=lr.device)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """Update every member (active None) or only those where active[i] is True."""
        if active is None:
            self.steps += 1
        else:
            self.steps += active.to(self.steps.dtype)
        if self.fused and self.params and all(p.grad is not None for p in self.params.values()):
            self._fused_step(active)
            return
        for name, p in self.params.items():
            if p.grad is None:
                continue
            if self.kind == "sgd":
                self._sgd(p, p.grad, self.state[name], active)
            else:
                self._adam(p, p.grad, self.state[name], active)

    def _sgd(self, p, g, st, active) -> None:
        lr = _per_member(self.lr, p)
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        if active is None:  # every member steps: in place, as torch.optim.SGD
            if self.momentum:
                g = st["buf"].mul_(self.momentum).add_(g)
            p.addcmul_(g, -lr)
            return
        if self.momentum:
            buf = st["buf"]
            new_buf = buf * self.momentum + g
            if active is not None:
                new_buf = torch.where(_per_member(active, p), new_buf, buf)
            buf.copy_(new_buf)
            g = buf
        new_p = p - lr * g
        if active is not None:
            new_p = torch.where(_per_member(active, p), new_p, p)
        p.copy_(new_p)

    def _adam(self, p, g, st, active) -> None:
        b1, b2 = ADAM_BETAS
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        m = st["exp_avg"].lerp(g, 1 - b1)
        v = st["exp_avg_sq"] * b2 + (1 - b2) * g * g
        steps = self.steps.clamp(min=1)  # inactive members that never stepped: no update anyway
        step_size = (self.lr.to(torch.float64) / (1 - b1 ** steps)).to(p.dtype)
        bc2_sqrt = (1 - b2 ** steps).sqrt().to(p.dtype)
        denom = v.sqrt() / _per_member(bc2_sqrt, p) + ADAM_EPS
        new_p = p - _per_member(step_size, p) * m / denom
        if active is not None:
            mask = _per_member(active, p)
            m, v, new_p = (torch.where(mask, m, st["exp_avg"]), torch.where(mask, v, st["exp_avg_sq"]),
                           torch.where(mask, new_p, p))
        st["exp_avg"].copy_(m)
        st["exp_avg_sq"].copy_(v)
        p.copy_(new_p)

    def _fused_step(self, active) -> None:
        """The per-parameter update of every parameter at once, on flat (sum of numel,) tensors."""
        plist = list(self.params.values())
        p = torch.cat([q.reshape(-1) for q in plist])
        g = torch.cat([q.grad.reshape(-1) for q in plist])
        member = self._member_of
        mask = None if active is None else active[member]
        if self.kind == "sgd":
            new_p = self._flat_sgd(p, g, self.lr[member], mask)
        else:
            new_p = self._flat_adam(p, g, member, mask)
        torch._foreach_copy_(plist, [v.view(q.shape) for v, q in zip(new_p.split(self._sizes), plist)])

    def _flat_sgd(self, p, g, lr, mask):
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        if mask is None:
            if self.momentum:
                g = self._flat_state["buf"].mul_(self.momentum).add_(g)
            return p.addcmul_(g, -lr)
        if self.momentum:
            buf = self._flat_state["buf"]
            buf.copy_(torch.where(mask, buf * self.momentum + g, buf))
            g = buf
        return torch.where(mask, p - lr * g, p)

    def _flat_adam(self, p, g, member, mask):
        b1, b2 = ADAM_BETAS
        st = self._flat_state
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        m = st["exp_avg"].lerp(g, 1 - b1)
        v = st["exp_avg_sq"] * b2 + (1 - b2) * g * g
        steps = self.steps.clamp(min=1)
        step_size = (self.lr.to(torch.float64) / (1 - b1 ** steps)).to(p.dtype)
        bc2_sqrt = (1 - b2 ** steps).sqrt().to(p.dtype)
        denom = v.sqrt() / bc2_sqrt[member] + ADAM_EPS
        new_p = p - step_size[member] * m / denom
        if mask is not None:
            m, v, new_p = (torch.where(mask, m, st["exp_avg"]), torch.where(mask, v, st["exp_avg_sq"]),
                           torch.where(mask, new_p, p))
        st["exp_avg"].copy_(m)
        st["exp_avg_sq"].copy_(v)
        return new_p

    def state_dict(self) -> dict:
        return {"steps": self.steps.clone(),
                "state": {n: {k: v.clone() for k, v in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.steps.copy_(state["steps"].to(self.steps.device))
        for name, s in state["state"].items():
            for k, v in s.items():
                self.state[name][k].copy_(v.to(self.state[name][k].device))
