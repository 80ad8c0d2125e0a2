"""trainables.optimizers: torch's SGD and Adam without the torch.compile decorators.

The same numbers bit for bit as torch.optim's classes (fused and per-parameter, with weight decay,
momentum and the cosine schedule), the same state dicts both ways (checkpoints written before the
change still load), step hooks kept, and a trial process that trains, checkpoints and restores,
packed or not, never imports torch._dynamo (about 1 s of CPU per trial process here).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainables import optimizers

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    (torch.optim.SGD, optimizers.SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    (torch.optim.SGD, optimizers.SGD, dict(lr=0.1, momentum=0.0)),
    (torch.optim.Adam, optimizers.Adam, dict(lr=1e-2, weight_decay=1e-4)),
    (torch.optim.Adam, optimizers.Adam, dict(lr=3e-3)),
]


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 4))


def _train(cls, kwargs: dict, fused: bool | None, steps: int = 7, schedule: bool = True):
    model = _model(0)
    opt = cls(model.parameters(), **({} if fused is None else {"fused": fused}), **kwargs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if schedule else None
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(5, 1, 8, 8, generator=gen), torch.randint(0, 4, (5,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return model, opt


def _same(a, b) -> None:
    """Equal nested state: tensors bit for bit (dtype and shape included), everything else =="""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b), (a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert a == b or (a != a and b != b), (a, b)


@pytest.mark.parametrize("fused", [True, False, None])
@pytest.mark.parametrize("torch_cls, ours, kwargs", CASES)
def test_same_parameters_and_state_as_torch(torch_cls, ours, kwargs, fused):
    m_ref, o_ref = _train(torch_cls, kwargs, fused)
    m_new, o_new = _train(ours, kwargs, fused)
    _same(m_ref.state_dict(), m_new.state_dict())
    _same(o_ref.state_dict(), o_new.state_dict())


@pytest.mark.parametrize("torch_cls, ours, kwargs", CASES)
def test_state_dicts_load_both_ways_and_training_continues_identically(torch_cls, ours, kwargs):
    """A checkpoint of torch's class loads into ours (and back): resuming gives the same numbers."""
    for a, b in ((torch_cls, ours), (ours, torch_cls)):
        model, opt = _train(a, kwargs, fused=True, schedule=False)
        saved_model, saved_opt = model.state_dict(), copy.deepcopy(opt.state_dict())
        runs = []
        for cls in (a, b):
            m = _model(5)
            m.load_state_dict(saved_model)
            o = cls(m.parameters(), fused=True, **kwargs)
            o.load_state_dict(copy.deepcopy(saved_opt))  # loading may keep the very tensors it is given
            gen = torch.Generator().manual_seed(2)
            for _ in range(3):
                x, y = torch.randn(5, 1, 8, 8, generator=gen), torch.randint(0, 4, (5,), generator=gen)
                o.zero_grad()
                torch.nn.functional.cross_entropy(m(x), y).backward()
                o.step()
            runs.append((m.state_dict(), o.state_dict()))
        _same(runs[0], runs[1])


def test_classes_keep_torchs_names_hooks_and_no_grad_update():
    model = _model(0)
    opt = optimizers.Adam(model.parameters(), lr=1e-3)
    assert isinstance(opt, torch.optim.Adam) and type(opt).__name__ == "Adam"  # profiler name unchanged
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    torch.nn.functional.mse_loss(model(torch.randn(2, 1, 8, 8)), torch.zeros(2, 4)).backward()
    with torch.enable_grad():
        opt.step()
        assert torch.is_grad_enabled()  # the update ran without autograd and restored the mode
    assert calls == ["pre", "post"]
    assert not any(p.grad_fn for p in model.parameters())
    loss = opt.step(closure=lambda: torch.tensor(1.5))
    assert float(loss) == 1.5


PROBE = """
import json, sys, tempfile
from trainables.trainable import run_trial
from trainables.packed_trainable import run_pack
states = []
def report(metrics, state):
    if state is not None:
        states.append(state)
cfg = {"pairing": "simple_cnn/edges", "epochs": 3, "data_per_class": 4, "seed": 0, "log_to_mlflow": False,
       "checkpoint_every": 1}
run_trial(dict(cfg, optimizer=sys.argv[1]), report=report)
assert states, "no checkpoint was reported"
run_trial(dict(cfg, optimizer=sys.argv[1]), report=report, restore=states[0])
run_pack([dict(cfg, seed=s, optimizer=sys.argv[1]) for s in range(2)])
print("LOADED=" + json.dumps(sorted(m for m in sys.modules if m == "torch._dynamo" or m.startswith("torch._dynamo."))))
"""


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_trial_process_never_imports_torch_dynamo(optimizer):
    proc = subprocess.run([sys.executable, "-c", PROBE, optimizer], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LOADED=")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert json.loads(line[len("LOADED="):]) == []
