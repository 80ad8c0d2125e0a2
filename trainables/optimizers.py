"""torch's SGD and Adam, called without torch.compile's machinery: no `torch._dynamo` import.

`torch.optim.Optimizer` wraps `step`, `zero_grad`, `add_param_group`, `state_dict` and
`load_state_dict` in decorators that import `torch._dynamo` on first use (about 1 s of CPU per
trial process on the 2-core machine, more than a tiny trial's whole training) only so that
`torch.compile` can trace around them. Trials never compile, so these classes call the very same
functions undecorated: same code, same kernels (fused where torch has them), same state dicts,
hooks and profiler names, hence the same numbers bit for bit (tests/test_optimizers.py).

The one thing the step decorator does outside compilation is to run the update with autograd
set to `defaults["differentiable"]`; `_step` below does that too. On a torch whose methods carry
no such decorators `inspect.unwrap` returns them as they are and the classes equal torch's.
"""
from __future__ import annotations

import functools
import inspect

import torch

# Optimizer methods that torch decorates with `torch._disable_dynamo` (import-on-first-call).
_UNDECORATED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _without_dynamo(base: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of `base` whose step and decorated methods are torch's own, undecorated."""
    step = inspect.unwrap(base.step)  # through torch's profile hook (re-added per class) and grad wrapper

    @functools.wraps(step)
    def _step(self, closure=None):
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return step(self, closure)
        finally:
            torch.set_grad_enabled(previous)

    methods = {name: inspect.unwrap(getattr(torch.optim.Optimizer, name)) for name in _UNDECORATED}
    return type(base.__name__, (base,), {**methods, "step": _step, "__module__": __name__,
                                         "__qualname__": base.__name__, "__doc__": base.__doc__})


SGD = _without_dynamo(torch.optim.SGD)
Adam = _without_dynamo(torch.optim.Adam)
