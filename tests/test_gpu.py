"""GPU tests (marked `gpu`: skipped, with the reason, where CUDA is not available), plus the CPU
checks of the same code paths that any machine can run.

Needs torch, numpy and pytest only (no Ray, MLflow, pandas or torchvision): run on a GPU machine
with `python -m pytest -m gpu tests/test_gpu.py`. `SWEEP_GPU_TEST_DEVICE=cpu` dry-runs the same
tests on the CPU (what needs CUDA by nature, sync debug mode and CUDA graphs, is then skipped). CIFAR-10 and MNIST are generated in their real
file formats by benchmarks/gpu_data.py; the feature-cache test also needs torchvision (a random
ResNet-18 is saved to a file; nothing is downloaded) and skips without it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not an installed package

from benchmarks import gpu_data  # noqa: E402
from trainables.config import TrainConfig  # noqa: E402
from core.errors import ConfigError  # noqa: E402
from trainables.loop import Trainer  # noqa: E402
from trainables.packed_optim import PackedOptimizer  # noqa: E402
from trainables.packing import PackedTrainer  # noqa: E402
from trainables.pairings import PAIRINGS  # noqa: E402
from trainables.spec import resolve_config  # noqa: E402
from trainables.trainable import load_data, make_model, run_trial  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
DEVICE = os.environ.get("SWEEP_GPU_TEST_DEVICE", "cuda")  # "cpu": a dry run of these tests
ON_CUDA = DEVICE == "cuda"
NO_CUDA = ("needs a CUDA device: torch.cuda.is_available() is False on this machine "
           "(SWEEP_GPU_TEST_DEVICE=cpu dry-runs these tests on the CPU)")
gpu = [pytest.mark.gpu, pytest.mark.skipif(ON_CUDA and not HAS_CUDA, reason=NO_CUDA)]
needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="CUDA only (CPU dry run)")


def cuda_only(fn):
    for mark in gpu:
        fn = mark(fn)
    return fn


# Per dataset: keys that make one epoch tiny. CIFAR-10 / MNIST read generated files (data_root).
TINY = {
    "edges": {"data_per_class": 10, "valid_per_class": 5},
    "localization": {"n_samples": 96},
    "cifar10": {"train_subset": 64, "eval_subset": 32},
    "mnist": {"train_subset": 64, "eval_subset": 32},
}
NEEDS_TORCHVISION = {"modified_resnet18/mnist": "ModifiedResNet18 is torchvision's ResNet-18",
                     "linear_probe/cifar10_features": "the frozen backbones come from torchvision / timm"}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """Generated CIFAR-10 and MNIST files (real formats) with the uint8 cache primed."""
    root = tmp_path_factory.mktemp("gpu_images")
    gpu_data.write_cifar10(root, n_train=100, n_test=40)
    gpu_data.write_mnist(root, n_train=80, n_test=40)
    return root


def tiny_config(pairing: str, root: Path, **extra) -> dict:
    dataset = PAIRINGS[pairing].dataset
    cfg = {"pairing": pairing, "epochs": 1, "log_to_mlflow": False, "seed": 3, **TINY.get(dataset, {})}
    if dataset in ("cifar10", "mnist"):
        cfg["data_root"] = str(root)
    if PAIRINGS[pairing].defaults.get("evaluators"):
        cfg["evaluators"] = []
    return {**cfg, **extra}


@cuda_only
@pytest.mark.parametrize("pairing", sorted(PAIRINGS))
def test_every_pairing_trains_one_epoch_on_cuda(pairing, image_root):
    """The real trial code (run_trial) trains each registered pairing for one epoch on the GPU."""
    if pairing in NEEDS_TORCHVISION:
        pytest.importorskip("torchvision", reason=NEEDS_TORCHVISION[pairing])
    if PAIRINGS[pairing].dataset == "cifar10_features":
        pytest.skip("covered by test_feature_cache_built_on_cuda (needs a backbone checkpoint)")
    if ON_CUDA:
        torch.cuda.reset_peak_memory_stats()
    metrics = run_trial(tiny_config(pairing, image_root, device=DEVICE))
    assert metrics["epoch"] == 1 and metrics["epochs_completed"] == 1
    assert torch.isfinite(torch.tensor(metrics["train_loss"])), metrics
    assert not ON_CUDA or torch.cuda.max_memory_allocated() > 0  # the trial's tensors lived on the GPU


def _members(pairing: str, k: int, epochs: int, device: torch.device):
    rs = [resolve_config({"pairing": pairing, "data_per_class": 20, "seed": 10 + i, "lr": (1e-2, 5e-3, 2e-2)[i % 3],
                          "epochs": epochs, "log_to_mlflow": False}) for i in range(k)]
    bundles = [load_data(r) for r in rs]
    models = [make_model(r) for r in rs]
    return rs, bundles, models


@cuda_only
@pytest.mark.parametrize("pairing", ["three_layer_mlp/edges", "simple_cnn/edges"])
def test_packed_equals_unpacked_on_cuda(pairing):
    """K=3 members trained as one pack on the GPU match the same trials trained alone on the GPU.

    Tolerance: per-epoch losses rtol 1e-4 / atol 1e-5, final weights atol 1e-4 after 3 epochs, with
    TF32 off (packed convolutions run as grouped convolutions and packed linears as batched
    matmuls: other kernels, so equal up to float32 rounding, not bitwise).
    """
    device = torch.device(DEVICE)
    epochs = 3
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        rs, bundles, models = _members(pairing, 3, epochs, device)
        packed = PackedTrainer(models, bundles, [r.train for r in rs], device)
        assert packed.opt.fused == ON_CUDA  # the flat optimiser is the CUDA default
        for epoch in range(1, epochs + 1):
            packed.run_epoch(epoch)
        for i, r in enumerate(rs):
            b = load_data(r).to(device)
            alone = Trainer(make_model(r).to(device), b, r.train, device)
            for epoch in range(1, epochs + 1):
                alone.run_epoch(epoch)
            mine, ref = packed.history_rows(i, 1, epochs), alone.history_rows(1, epochs)
            for key in ("train_loss", "val_loss"):
                torch.testing.assert_close(torch.tensor([row[key] for row in mine]),
                                           torch.tensor([row[key] for row in ref]), rtol=1e-4, atol=1e-5)
            state = packed.member_state_dict(i)
            for name, value in alone.model.state_dict().items():
                torch.testing.assert_close(state[name], value, atol=1e-4, rtol=1e-4, msg=f"member {i} {name}")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev


@cuda_only
def test_packed_trial_on_cuda_logs_every_member_and_resumes(tmp_path):
    """`sweep run --pack K` on a GPU: run_pack on CUDA logs each member as its own MLflow run (trial id
    <pack>-m<i>, FINISHED, every epoch once) and resumes from a checkpoint holding CUDA tensors."""
    pytest.importorskip("mlflow", reason="checks the MLflow runs of a packed trial")
    from mlflow.tracking import MlflowClient

    from trainables.packed_trainable import run_pack
    from trainables.tracking import TrackingInfo

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("gpu")
    parent = client.create_run(exp_id, tags={"role": "sweep"}).info.run_id
    info = TrackingInfo(uri, exp_id, parent, "s1", "gpu", "abc", ("data_per_class",))
    configs = [{"pairing": "three_layer_mlp/edges", "data_per_class": n, "seed": 10 + i, "epochs": 4,
                "report_every": 2, "checkpoint_every": 2, "device": DEVICE, "log_artifacts": False}
               for i, n in enumerate((10, 20, 20))]
    states = []

    def lose_worker(metrics, state):
        states.append(state)
        raise RuntimeError("worker lost")
    with pytest.raises(RuntimeError, match="worker lost"):
        run_pack(configs, info, report=lose_worker, trial_id="p1")
    outs = run_pack(configs, info, report=lambda m, st: None, restore=states[0], trial_id="p1")
    for i, out in enumerate(outs):
        run = client.get_run(out["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["trial_id"] == f"p1-m{i}"
        assert run.data.tags["pack_size"] == "3"
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss"))
        assert steps == [1, 2, 3, 4]


AUTO_DEVICE_CHILD = r"""
import json, sys, torch
from trainables.trainable import pick_device, run_trial
device = pick_device("auto")
metrics = run_trial({"pairing": "simple_cnn/edges", "data_per_class": 10, "epochs": 1, "device": "auto",
                     "log_to_mlflow": False})
cuda = torch.cuda.is_available()
print(json.dumps({"device": str(device), "count": torch.cuda.device_count(),
                  "uuid": str(torch.cuda.get_device_properties(0).uuid) if cuda else None,
                  "epochs": metrics["epochs_completed"],
                  "allocated_on_0": torch.cuda.max_memory_allocated(0) if cuda else 0}))
"""


@cuda_only
def test_device_auto_picks_the_gpu_ray_assigns():
    """A fractional trial (e.g. --gpus-per-trial 0.25) gets CUDA_VISIBLE_DEVICES=<its GPU id> from Ray;
    device='auto' must then train on exactly that GPU, seen as cuda:0."""
    if ON_CUDA:
        gpu_id = torch.cuda.device_count() - 1  # the last GPU: on multi-GPU machines not the default one
        want, visible = str(torch.cuda.get_device_properties(gpu_id).uuid), str(gpu_id)
    else:  # CPU dry run: Ray's CUDA_VISIBLE_DEVICES="" for a trial without a GPU
        want, visible = None, ""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", AUTO_DEVICE_CHILD], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["device"] == DEVICE and seen["count"] == int(ON_CUDA) and seen["uuid"] == want, seen
    assert seen["epochs"] == 1 and (seen["allocated_on_0"] > 0) == ON_CUDA


@cuda_only
def test_feature_cache_built_on_cuda(tmp_path):
    """Backbone features computed on the GPU (random ResNet-18 weights from a file) are cached and
    match the same extraction on the CPU (TF32 off; tolerance atol 1e-3 on 512-d features)."""
    torchvision = pytest.importorskip("torchvision", reason="the ResNet-18 backbone is torchvision's")
    from trainables.data import features

    gpu_data.write_cifar10(tmp_path, n_train=20, n_test=10)
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    base = {"backbone": "resnet18", "weights": str(weights), "data_root": str(tmp_path), "resize": 32,
            "train_subset": 12, "eval_subset": 6, "feature_batch_size": 4, "augment": False}
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        features.clear_memory_cache()
        on_gpu = features.build_cifar10_features({**base, "feature_device": DEVICE,
                                                  "feature_cache_dir": str(tmp_path / "gpu")})
        features.clear_memory_cache()
        on_cpu = features.build_cifar10_features({**base, "feature_device": "cpu",
                                                  "feature_cache_dir": str(tmp_path / "cpu")})
    finally:
        torch.backends.cudnn.allow_tf32 = prev
        features.clear_memory_cache()
    assert on_gpu.meta["feature_cache_hit"] is False
    assert on_gpu.x_train.shape == (12, 512) and on_gpu.x_train.device.type == "cpu"
    assert (tmp_path / "gpu" / f"{on_gpu.meta['feature_cache_key']}.pt").is_file()
    torch.testing.assert_close(on_gpu.x_train, on_cpu.x_train, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(on_gpu.x_val, on_cpu.x_val, atol=1e-3, rtol=1e-3)


def _unpacked(pairing: str, dev: torch.device, **extra) -> Trainer:
    # CUDA graphs capture after WARMUP_STEPS full batches: 300 images (9 full batches of 32 and a
    # partial one) capture and replay within epoch 1.
    size = 100 if extra.get("cuda_graphs") else 20
    r = resolve_config({"pairing": pairing, "data_per_class": size, "epochs": 3, "log_to_mlflow": False, **extra})
    b = load_data(r).to(dev)
    return Trainer(make_model(r).to(dev), b, r.train, dev)


def _packed(pairing: str, device: torch.device) -> PackedTrainer:
    rs, bundles, models = _members(pairing, 3, 3, device)
    bundles[1] = load_data(resolve_config({**rs[1].config, "data_per_class": 10}))  # masked steps too
    return PackedTrainer(models, bundles, [r.train for r in rs], device)


SYNC_CASES = [("unpacked", "three_layer_mlp/edges", {}), ("unpacked", "simple_cnn/edges", {}),
              ("unpacked", "simple_cnn/edges", {"optimizer": "adam", "scheduler": "cosine"}),
              ("unpacked", "simple_cnn/edges", {"amp": "bf16", "channels_last": True}),
              ("unpacked", "simple_cnn/edges", {"cuda_graphs": True}),
              ("unpacked", "three_layer_mlp/edges", {"cuda_graphs": True, "optimizer": "adam"}),
              ("packed", "three_layer_mlp/edges", {}), ("packed", "simple_cnn/edges", {})]


@cuda_only
@pytest.mark.parametrize("kind,pairing,extra", SYNC_CASES, ids=lambda v: str(v) if not isinstance(v, dict) else
                         ",".join(f"{k}={x}" for k, x in v.items()) or "defaults")
def test_no_host_sync_inside_an_epoch(kind, pairing, extra):
    """An epoch (train + evaluate + history row) never makes the host wait for the GPU: with
    torch.cuda.set_sync_debug_mode("error") any synchronising call (.item(), a blocking copy,
    nonzero, ...) raises. Epoch 1 is warm-up (lazy optimiser state, graph capture)."""
    if not ON_CUDA and extra.get("cuda_graphs"):
        pytest.skip("CUDA graphs need CUDA (CPU dry run)")
    device = torch.device(DEVICE)
    trainer = _unpacked(pairing, device, **extra) if kind == "unpacked" else _packed(pairing, device)
    trainer.run_epoch(1)
    if ON_CUDA:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.run_epoch(2)
        trainer.run_epoch(3)
    finally:
        if ON_CUDA:
            torch.cuda.set_sync_debug_mode("default")
    if extra.get("cuda_graphs"):
        assert trainer._step.graph is not None  # captured in epoch 1, replayed in epochs 2-3
    rows = trainer.history_rows(1, 3) if kind == "unpacked" else trainer.history_rows(0, 1, 3)
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in rows)


@cuda_only
@needs_cuda
@pytest.mark.parametrize("extra", [{"cuda_graphs": True}, {"cuda_graphs": True, "optimizer": "adam",
                                                            "scheduler": "cosine"}])
def test_cuda_graph_step_trains_like_the_eager_step(extra):
    """The captured step is the eager step replayed: 3 epochs agree (TF32 off, atol 1e-4)."""
    device = torch.device("cuda")
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        eager, graphed = (_unpacked("simple_cnn/edges", device, **{**extra, "cuda_graphs": g, "data_per_class": 100})
                          for g in (False, True))
        for epoch in (1, 2, 3):
            eager.run_epoch(epoch)
            graphed.run_epoch(epoch)
    finally:
        torch.backends.cudnn.allow_tf32 = prev
    assert graphed._step.graph is not None and graphed._step.warm == 3
    for a, b in zip(eager.history_rows(1, 3), graphed.history_rows(1, 3)):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
    for name, value in eager.model.state_dict().items():
        torch.testing.assert_close(graphed.model.state_dict()[name], value, atol=1e-4, rtol=1e-4)


# ---- CPU checks of the same code paths (run everywhere) ----


def _plain_epoch_reference(model, bundle, tc, gen):
    """The loop's training pass as it was before trainables.cuda_step existed (the eager ops inline)."""
    from trainables.loop import loss_fn, make_optimizer

    opt = make_optimizer(model, tc)
    crit = loss_fn(tc.loss)
    x, y = bundle.x_train, bundle.y_train
    order = torch.randperm(x.shape[0], generator=gen)
    x, y = x[order], y[order]
    losses = []
    for start in range(0, x.shape[0], tc.batch_size):
        out = model(bundle.prepare(x[start:start + tc.batch_size]))
        loss = crit(out, y[start:start + tc.batch_size])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cpu_default_step_is_bitwise_the_plain_loop(optimizer):
    """With the default settings the step hook changes nothing on CPU: same losses and weights, bitwise."""
    device = torch.device("cpu")
    trainer = _unpacked("simple_cnn/edges", device, optimizer=optimizer)
    r = resolve_config({"pairing": "simple_cnn/edges", "data_per_class": 20, "epochs": 3, "optimizer": optimizer,
                        "log_to_mlflow": False})
    b = load_data(r)
    ref_model = make_model(r)
    ref_losses = _plain_epoch_reference(ref_model, b, r.train, torch.Generator().manual_seed(r.train.seed))
    loss_sum, _, _ = trainer.train_epoch()
    assert ref_losses.shape[0] == -(-b.x_train.shape[0] // r.train.batch_size)
    assert torch.equal(loss_sum, ref_losses.sum())
    for name, value in ref_model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name


def test_cpu_channels_last_and_bf16_are_applied_not_ignored():
    """amp and channels_last run on CPU too (the logged value is what ran): the model is channels-last
    and bf16 autocast changes the numbers; cuda_graphs on a CPU trial is a ConfigError."""
    device = torch.device("cpu")
    plain = _unpacked("simple_cnn/edges", device)
    cl = _unpacked("simple_cnn/edges", device, channels_last=True)
    bf = _unpacked("simple_cnn/edges", device, amp="bf16")
    conv = next(m for m in cl.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for t in (plain, cl, bf):
        t.run_epoch(1)
    p, c, f = (t.history_rows(1, 1)[0]["train_loss"] for t in (plain, cl, bf))
    assert c == pytest.approx(p, rel=1e-4)  # same maths, other memory layout
    assert f != p and f == pytest.approx(p, rel=0.05)  # bf16 rounding: close, not equal
    with pytest.raises(ConfigError, match="cuda_graphs=true needs a CUDA device"):
        _unpacked("simple_cnn/edges", device, cuda_graphs=True, device="auto" if not HAS_CUDA else "cpu")
    with pytest.raises(ConfigError, match="amp="):
        TrainConfig(pairing="simple_cnn/edges", amp="fp16")


def test_cuda_settings_keep_a_trial_out_of_packs():
    """A packed trainer cannot apply amp / channels_last / CUDA graphs, so such trials do not pack."""
    from trainables.packing import why_not_packable

    model = torch.nn.Linear(2, 2)
    assert why_not_packable(TrainConfig(pairing="x"), model) is None
    for extra in ({"amp": "bf16"}, {"channels_last": True}, {"cuda_graphs": True}):
        assert "unpacked trials" in why_not_packable(TrainConfig(pairing="x", **extra), model)


@pytest.mark.parametrize("kind,momentum,wd", [("sgd", 0.9, 0.0), ("sgd", 0.0, 1e-3), ("sgd", 0.9, 1e-3),
                                              ("adam", 0.0, 0.0), ("adam", 0.0, 1e-4)])
def test_fused_packed_optimizer_equals_per_parameter(kind, momentum, wd):
    """The flat (fused) packed update equals the per-parameter one, bitwise on CPU, masked steps included."""
    torch.manual_seed(0)
    shapes = {"w1": (4, 6, 5), "b1": (4, 5), "w2": (4, 3, 2, 2, 2)}
    start = {n: torch.randn(s) for n, s in shapes.items()}
    lr = torch.tensor([1e-2, 5e-3, 2e-2, 1e-3])
    runs = []
    for fused in (False, True):
        params = {n: v.clone().requires_grad_(True) for n, v in start.items()}
        opt = PackedOptimizer(params, kind, lr, momentum, wd, fused=fused)
        gen = torch.Generator().manual_seed(1)
        for step in range(6):
            for p in params.values():
                p.grad = torch.randn(p.shape, generator=gen)
            active = None if step % 2 == 0 else torch.tensor([True, False, True, step == 3])
            opt.step(active)
        runs.append((params, opt.state_dict()))
    (p0, s0), (p1, s1) = runs
    for n in shapes:
        assert torch.equal(p0[n], p1[n]), n
        for k, v in s0["state"][n].items():
            assert torch.equal(v, s1["state"][n][k]), (n, k)
    assert torch.equal(s0["steps"], s1["steps"])


class _FakeGraph:
    """A CUDA graph's semantics on CPU: capturing runs nothing; each replay runs the captured body
    on the static inputs, gradients starting from None, results written into the static outputs."""

    def __init__(self, step, sx, sy):
        self.step, self.sx, self.sy = step, sx, sy
        self.out, self.loss = torch.empty(0), torch.empty(0)

    def replay(self):
        self.step.opt.zero_grad(set_to_none=True)
        out, loss = self.step.body(self.sx, self.sy)
        self.out.resize_as_(out).copy_(out)
        self.loss.resize_as_(loss).copy_(loss)


def _cpu_graph_step(trainer):
    from trainables.cuda_step import GraphStep

    class CpuGraphStep(GraphStep):
        captures = 0

        def _warm_step(self, xb, yb):  # no side stream on CPU
            self.warm += 1
            return self.eager(xb, yb)

        def _capture(self, xb, yb, key):
            sx, sy = xb.clone(), yb.clone()
            self.opt.zero_grad(set_to_none=True)
            graph = _FakeGraph(self, sx, sy)
            self.graph, self.key, self.static = graph, key, (sx, sy, graph.out, graph.loss)
            self.captures += 1
    return CpuGraphStep(trainer)


def test_graph_step_dispatch_equals_eager_with_a_cpu_stand_in_graph():
    """GraphStep's control flow, with a CPU stand-in for the CUDA graph: warm-up steps, capture then
    replay of the same batch, eager partial batches, re-capture when a scheduler changes the lr and
    cloned outputs give bitwise the eager trainer's history and weights."""
    device = torch.device("cpu")
    eager = _unpacked("simple_cnn/edges", device, data_per_class=100, optimizer="adam", scheduler="cosine")
    graphed = _unpacked("simple_cnn/edges", device, data_per_class=100, optimizer="adam", scheduler="cosine")
    graphed._step = _cpu_graph_step(graphed)
    for epoch in (1, 2, 3):
        eager.run_epoch(epoch)
        graphed.run_epoch(epoch)
    assert graphed._step.warm == 3 and graphed._step.captures == 3  # one capture per lr
    assert torch.equal(eager.history, graphed.history)
    for name, value in eager.model.state_dict().items():
        assert torch.equal(graphed.model.state_dict()[name], value), name


class _ScalarReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Records ops that read a tensor's value on the host (each a device sync on CUDA)."""

    SYNCING = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.bincount",
               "aten.unique", "aten._unique", "aten.is_nonzero", "aten.equal")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func.overloadpacket).startswith(self.SYNCING) or "item" in str(func):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kind,pairing,extra", [("unpacked", "three_layer_mlp/edges", {}),
                                                ("unpacked", "simple_cnn/edges", {"scheduler": "cosine"}),
                                                ("packed", "three_layer_mlp/edges", {}),
                                                ("packed", "simple_cnn/edges", {})])
def test_no_value_reads_inside_an_epoch_cpu_proxy(kind, pairing, extra):
    """The CPU stand-in of the GPU sync test: an epoch reads no tensor value on the host (.item(),
    nonzero, bincount, bool(tensor), ...), each of which would stall the GPU pipeline."""
    device = torch.device("cpu")
    trainer = _unpacked(pairing, device, **extra) if kind == "unpacked" else _packed(pairing, device)
    trainer.run_epoch(1)
    with _ScalarReads() as mode:
        trainer.run_epoch(2)
    assert mode.seen == []


def test_generated_images_read_by_the_real_loaders_equal_the_primed_cache(tmp_path):
    """benchmarks.gpu_data writes real CIFAR-10 / MNIST files: torchvision's decoding of them equals
    the arrays it primes the uint8 cache with (so GPU runs without torchvision see the same data)."""
    pytest.importorskip("torchvision", reason="compares with torchvision's decoder")
    from trainables.data import cifar, image_cache, mnist

    c = gpu_data.write_cifar10(tmp_path, n_train=20, n_test=10)
    m = gpu_data.write_mnist(tmp_path, n_train=20, n_test=10)
    image_cache.clear_memory_cache()
    for p in (tmp_path / "uint8_cache").iterdir():
        p.unlink()
    x, y = cifar.load_cifar10_uint8(str(tmp_path), train=True)
    assert torch.equal(x, torch.from_numpy(c["x_train"])) and torch.equal(y, torch.from_numpy(c["y_train"]))
    x, y = mnist.load_mnist_uint8(str(tmp_path), train=False)
    assert torch.equal(x, torch.from_numpy(m["x_test"])) and torch.equal(y, torch.from_numpy(m["y_test"]))


def test_packing_rule_reads_the_benchmark_figures():
    """The recommended --pack K: the smallest measured K within 10% of the best ratio, and no packing
    when even that ratio is under 1.5x (benchmarks.gpu.packing_rule, applied to gpu.json figures)."""
    from benchmarks.gpu import packing_rule

    figures = {"mlp": {"k": {"1": {"ratio": 1.0}, "8": {"ratio": 6.0}, "32": {"ratio": 14.0}, "64": {"ratio": 15.0}}},
               "cnn": {"k": {"1": {"ratio": 1.0}, "8": {"ratio": 1.2}, "32": {"ratio": 1.4}, "64": {"ratio": 1.1}}}}
    rule = packing_rule(figures)
    assert rule["mlp"] == {"pack": True, "k": 32, "ratio": 14.0, "best_ratio": 15.0}
    assert rule["cnn"] == {"pack": False, "k": 1, "ratio": 1.4, "best_ratio": 1.4}
