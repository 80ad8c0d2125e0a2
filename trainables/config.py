"""Training settings of one trial (SPEC section 3), validated before any compute."""
from __future__ import annotations

from dataclasses import dataclass

from core.config_base import ConfigBase, check, check_at_most, check_seed

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("none", "cosine")
LOSSES = ("cross_entropy", "mse")
DEVICES = ("auto", "cpu", "cuda")
EVALUATE_ON = ("heldout", "train")
AMP_MODES = ("off", "bf16")
# Upper bounds of the values that make sense (a typo such as lr=100 or epochs=1e6 is refused).
LARGEST = {"lr": 10.0, "epochs": 100_000, "weight_decay": 1.0, "batch_size": 10_000_000,
           "eval_batch_size": 10_000_000, "t_max": 100_000}


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Keys of the flat trial config that drive training (dataset and model keys live elsewhere).

    Defaults are the edge protocol (SPEC 3.1); each pairing's protocol overrides them.
    `cuda_graphs`, `amp` and `channels_last` are opt-in speed settings of an unpacked trial
    (trainables.cuda_step; their defaults wait for GPU figures from benchmarks/gpu.py).
    `report_every` None means about 20 Tune reports per trial; `checkpoint_every` None means a
    checkpoint every 4th report (about 5 per trial) and always at the last epoch; it is rounded
    up to a multiple of the report interval (checkpoints ride on reports).
    """

    pairing: str
    seed: int = 10
    model_seed: int | None = None
    lr: float = 1e-2
    epochs: int = 500
    batch_size: int = 32
    eval_batch_size: int = 256
    shuffle: bool = True
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    t_max: int | None = None
    loss: str = "cross_entropy"
    evaluate_on: str = "heldout"
    evaluators: tuple[str, ...] = ()
    report_every: int | None = None
    checkpoint_every: int | None = None
    device: str = "auto"
    cuda_graphs: bool = False
    amp: str = "off"
    channels_last: bool = False
    threads: int | None = None
    log_to_mlflow: bool = True
    log_artifacts: bool = True
    fail_at_epoch: int | None = None

    def __post_init__(self):
        super().__post_init__()
        for key in ("seed", "model_seed"):
            check_seed(key, getattr(self, key))
        for key, largest in LARGEST.items():
            check_at_most(key, getattr(self, key), largest)
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r} not allowed; use one of {OPTIMIZERS}")
        check(self.scheduler in SCHEDULERS, f"scheduler={self.scheduler!r} not allowed; use one of {SCHEDULERS}")
        check(self.loss in LOSSES, f"loss={self.loss!r} not allowed; use one of {LOSSES}")
        check(self.device in DEVICES, f"device={self.device!r} not allowed; use one of {DEVICES}")
        check(self.amp in AMP_MODES, f"amp={self.amp!r} not allowed; use one of {AMP_MODES}")
        check(not (self.cuda_graphs and self.device == "cpu"),
              "cuda_graphs=true needs a CUDA device; it cannot be used with device='cpu'")
        check(self.evaluate_on in EVALUATE_ON,
              f"evaluate_on={self.evaluate_on!r} not allowed; use one of {EVALUATE_ON}")
        check(self.t_max is None or self.t_max >= 1, f"t_max must be >= 1, got {self.t_max}")
        for key in ("report_every", "checkpoint_every", "threads"):
            value = getattr(self, key)
            check(value is None or value >= 1, f"{key} must be >= 1, got {value}")
        check(self.fail_at_epoch is None or 1 <= self.fail_at_epoch <= self.epochs,
              f"fail_at_epoch must be in [1, epochs={self.epochs}], got {self.fail_at_epoch}")

    def inactive_keys(self) -> dict[str, str]:
        """Keys whose value changes nothing given the others, with why (a trial never logs them)."""
        out = {}
        if self.optimizer != "sgd":
            out["momentum"] = f"momentum needs optimizer='sgd' (this trial uses {self.optimizer!r})"
        if self.scheduler != "cosine":
            out["t_max"] = f"t_max needs scheduler='cosine' (this trial uses {self.scheduler!r})"
        return out

    @property
    def report_interval(self) -> int:
        """Epochs between Tune reports: about 20 reports per trial, never 0."""
        return self.report_every or max(1, self.epochs // 20)

    @property
    def checkpoint_interval(self) -> int:
        """Epochs between checkpoints, a multiple of the report interval (checkpoints ride on reports)."""
        r = self.report_interval
        every = self.checkpoint_every or 4 * r
        return -(-every // r) * r

    @property
    def init_seed(self) -> int:
        return self.seed if self.model_seed is None else self.model_seed
