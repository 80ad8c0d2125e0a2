"""The per-batch training step of an unpacked trial, with the opt-in GPU speed settings.

`trainables.loop.Trainer` asks `make_step` for its step and `eval_context` / `input_fn` for its
evaluation. With the defaults (amp "off", channels_last False, cuda_graphs False) the step runs
exactly the ops the loop always ran, in the same order, so CPU results are bitwise unchanged
(tests/test_gpu.py::test_cpu_default_step_is_bitwise_the_plain_loop). The settings:

- `amp="bf16"`: forward and loss under `torch.autocast(device, bfloat16)` (parameters, gradients
  and the optimiser stay float32; losses are computed in float32 by autocast's rules). Applied on
  any device (CPU autocast exists too), so the logged value is always what ran.
- `channels_last=True`: model and 4-D input batches in channels-last memory layout (cuDNN's
  preferred layout for convolutions, most of all with bf16). Applied on any device.
- `cuda_graphs=True` (CUDA only): the whole step (input transform, forward, loss, backward,
  optimiser step) is captured once as a CUDA graph and replayed per batch: one launch instead of
  dozens, which is what tiny launch-bound models need. The first WARMUP_STEPS batches run eagerly
  (on a side stream, as torch's whole-network capture recipe asks) and train like any step; a
  batch of another shape (the last, partial one) runs eagerly; a changed learning rate (a
  scheduler) re-captures (a capture synchronises with the device once). Adam is built with
  capturable=True for it. The graph's input, output and gradient buffers are fixed, so nothing
  else may hold on to them: the step returns clones of the output and loss.

Which of them a GPU sweep should turn on is decided from `python -m benchmarks.gpu` figures
(benchmarks/results-gpu.md); until such figures exist they stay off by default.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from core.errors import ConfigError

WARMUP_STEPS = 3  # eager steps before capture (lazy optimiser state, cuDNN/cuBLAS handles)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to `device` without making the host wait for the device.

    A plain `.to("cuda")` of pageable memory synchronises the stream; staging through pinned
    memory makes the copy asynchronous (the caching host allocator keeps the staging buffer until
    the copy is done). On CPU this is `t.to(device)`.
    """
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def optimizer_options(cuda_graphs: bool, optimizer: str) -> dict:
    """Extra optimiser keywords the step needs: capturable Adam for CUDA graphs, else none."""
    return {"capturable": True} if cuda_graphs and optimizer == "adam" else {}


def prepare_model(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """Put the model in the memory layout the settings ask for (in place; returns it)."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def input_fn(prepare: Callable[[torch.Tensor], torch.Tensor], channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The batch transform of the loop: the bundle's `prepare`, plus channels-last for 4-D batches."""
    if not channels_last:
        return prepare

    def to_channels_last(x: torch.Tensor) -> torch.Tensor:
        x = prepare(x)
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
    return to_channels_last


def eval_context(amp: str, device: torch.device, cache: bool = True):
    """The autocast context of forward passes (a null context when amp is off)."""
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


class EagerStep:
    """One optimiser step per call: (detached output, detached loss) of the batch."""

    def __init__(self, trainer):
        self.model, self.opt, self.criterion = trainer.model, trainer.opt, trainer.criterion
        self.tc, self.device = trainer.tc, trainer.device
        self.prepare = input_fn(trainer.bundle.prepare, trainer.tc.channels_last)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with eval_context(self.tc.amp, self.device):
            out = self.model(self.prepare(xb))
            loss = self.criterion(out, yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return out.detach(), loss.detach()


class GraphStep:
    """The eager step captured as a CUDA graph per (batch shape, lr), replayed per batch."""

    def __init__(self, trainer):
        self.eager = EagerStep(trainer)
        self.model, self.opt, self.criterion = trainer.model, trainer.opt, trainer.criterion
        self.tc, self.device = trainer.tc, trainer.device
        self.prepare = self.eager.prepare
        self.full_batch = trainer.tc.batch_size
        self.warm = 0
        self.key = None
        self.graph = None
        self.static: tuple[torch.Tensor, ...] = ()

    def _warm_step(self, xb, yb):
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        main = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(side):
            out, loss = self.eager(xb, yb)
        main.wait_stream(side)
        out.record_stream(main)  # used on the main stream: not reusable by the side stream until then
        loss.record_stream(main)
        self.warm += 1
        return out, loss

    def body(self, sx: torch.Tensor, sy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the graph holds: the eager step on the static batch, gradients starting from None."""
        with eval_context(self.tc.amp, self.device, cache=False):
            out = self.model(self.prepare(sx))
            loss = self.criterion(out, sy)
        loss.backward()
        self.opt.step()
        return out.detach(), loss.detach()

    def _capture(self, xb, yb, key) -> None:
        self.graph = None  # free the previous graph's pool before capturing a new one
        sx, sy = xb.clone(), yb.clone()
        self.opt.zero_grad(set_to_none=True)  # gradients are allocated inside the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out, loss = self.body(sx, sy)
        self.graph, self.key, self.static = graph, key, (sx, sy, out, loss)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if xb.shape[0] != self.full_batch:
            return self.eager(xb, yb)  # the last, partial batch of an epoch
        if self.warm < WARMUP_STEPS:
            return self._warm_step(xb, yb)
        key = (tuple(xb.shape), xb.dtype, tuple(yb.shape), self.opt.param_groups[0]["lr"])
        if key != self.key:
            self._capture(xb, yb, key)  # captures without running: replayed below for this batch
        sx, sy, out, loss = self.static
        sx.copy_(xb)
        sy.copy_(yb)
        self.graph.replay()
        return out.clone(), loss.clone()  # the static outputs are overwritten by the next replay


def make_step(trainer) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The step function of `trainer` (a trainables.loop.Trainer) for its config and device.

    Raises:
        ConfigError: cuda_graphs=true on a trial that runs on the CPU.
    """
    tc, device = trainer.tc, trainer.device
    if tc.cuda_graphs:
        if device.type != "cuda":
            raise ConfigError(f"cuda_graphs=true needs a CUDA device, but this trial runs on {device.type} "
                              "(no GPU visible to it); drop cuda_graphs or give the trial a GPU")
        return GraphStep(trainer)
    return EagerStep(trainer)
