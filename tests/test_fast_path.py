"""The fast path computes what the notebook computes.

The trainable's loop (tensor slicing of device-resident data, metrics kept on the device) must
give the notebook loop's numbers (per-sample Dataset + DataLoader, `.item()` per step) when both
see the same images in the same order; and the fast tensor builder must give the notebook
dataset's pixels. The benchmarks (benchmarks/bench_trial.py) compare the speed of exactly these
two paths.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package

from benchmarks import notebook  # noqa: E402
from trainables.loop import Trainer  # noqa: E402
from trainables.spec import resolve_config  # noqa: E402
from trainables.trainable import load_data, make_model  # noqa: E402


class SameOrder(Sampler):
    """The trainable's shuffling (one randperm per epoch from a generator seeded with the trial seed)."""

    def __init__(self, n: int, seed: int):
        self.n, self.gen = n, torch.Generator().manual_seed(seed)

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.gen).tolist())

    def __len__(self):
        return self.n


@pytest.mark.parametrize("pairing,batch_size,extra", [
    ("three_layer_mlp/edges", 32, {}),
    ("simple_cnn/edges", 7, {}),  # a short last batch
    ("three_layer_mlp/edges", 16, {"optimizer": "adam", "weight_decay": 1e-3}),
])
def test_trainer_equals_notebook_loop(pairing, batch_size, extra):
    cfg = {"pairing": pairing, "data_per_class": 10, "valid_per_class": 10, "epochs": 3, "batch_size": batch_size,
           "log_to_mlflow": False, **extra}
    r = resolve_config(cfg)
    bundle = load_data(r)
    fast_model = make_model(r)
    slow_model = make_model(r)
    trainer = Trainer(fast_model, bundle, r.train, torch.device("cpu"))
    train = DataLoader(TensorDataset(bundle.x_train, bundle.y_train), batch_size=batch_size,
                       sampler=SameOrder(len(bundle.y_train), r.train.seed))
    valid = DataLoader(TensorDataset(bundle.x_val, bundle.y_val), batch_size=r.train.eval_batch_size)
    opt = (torch.optim.SGD(slow_model.parameters(), lr=r.train.lr, momentum=0.9) if r.train.optimizer == "sgd"
           else torch.optim.Adam(slow_model.parameters(), lr=r.train.lr, weight_decay=r.train.weight_decay))
    for epoch in range(1, 4):
        trainer.run_epoch(epoch)
        train_loss, train_acc = notebook.train_epoch(slow_model, opt, train, torch.device("cpu"))
        val_loss, val_acc, cm = notebook.evaluate(slow_model, valid, torch.device("cpu"))
        row = trainer.history_rows(epoch, epoch)[0]
        assert row["train_loss"] == pytest.approx(train_loss, rel=1e-5)
        assert row["train_acc"] == pytest.approx(train_acc) and row["val_acc"] == pytest.approx(val_acc)
        assert row["val_loss"] == pytest.approx(val_loss, rel=1e-5)
    for (name, a), b in zip(fast_model.state_dict().items(), slow_model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    _, _, _, fast_cm = trainer.evaluate(confusion=True)
    assert np.array_equal(fast_cm.numpy(), cm)


def test_fast_tensors_equal_notebook_dataset_pixels():
    """data_stream="notebook" replays the notebook's global NumPy stream: same images, same labels."""
    train, valid = notebook.make_loaders((10, 30, 50, 100), seed=10)
    bundle = load_data(resolve_config({"pairing": "simple_cnn/edges", "data_per_class": 30, "seed": 10,
                                       "data_stream": "notebook"}))
    dataset = train[30].dataset
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])
    assert torch.equal(x, bundle.x_train) and torch.equal(y, bundle.y_train)
    xv = torch.stack([valid.dataset[i][0] for i in range(len(valid.dataset))])
    assert torch.equal(xv, bundle.x_val)


def test_notebook_sweep_reports_every_cell():
    res = notebook.data_per_class_sweep(epochs=1, sizes=(10,))
    assert set(res.val_acc) == {("simple_cnn", 10), ("three_layer_mlp", 10)}
    assert res.steps == 2 and res.seconds > 0
