"""What `sweep run` accepts (RunOptions), checked before Ray or MLflow start."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cluster.folder.storage import NAME_RE
from cluster.infra import ray_setup, tracking
from cluster.planning import validate
from core.errors import ConfigError


@dataclass(frozen=True)
class RunOptions:
    """Everything `sweep run` accepts, checked in __post_init__ (before Ray or MLflow start)."""

    experiment: str
    seeds: int | None = None
    sets: dict[str, Any] = field(default_factory=dict)
    grids: dict[str, list] = field(default_factory=dict)
    smoke: bool = False
    num_samples: int | None = None  # None: the experiment's Search.num_samples (4 with --smoke), else 1
    address: str | None = None
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    name: str | None = None
    storage_path: str | None = None
    data_root: str | None = None
    max_failures: int = 2
    scheduler: str | None = None
    search: str = "random"
    samples: dict[str, Any] = field(default_factory=dict)  # --sample KEY=DOMAIN (cluster.tuner.search)
    grace_period: int | None = None
    reduction_factor: int | None = None
    ship_code: bool = True
    quiet: bool = False
    verbose: bool = False  # Ray's, Tune's and MLflow's own logs on the console instead of <storage>/<sweep>/driver.log
    pack: int = 1  # --pack K: up to K trials trained as one vmapped model per Tune trial (cluster.tuner.packing)
    allow_large: bool = False  # --yes: run sweeps above cluster.planning.validate.MAX_TRIALS trials
    until_decided: bool = False  # --until-decided: seeds added where hypotheses are open (cluster.flow.adaptive)
    max_seeds: int | None = None
    target_halfwidth: float | None = None
    progress: str = "console"  # "console" (unless quiet), "notebook" (redrawn in a Jupyter cell: cluster.api), "none"

    def __post_init__(self):
        validate.check_options(self)  # non-finite resource values first: the checks below compare them
        if self.name is not None and not NAME_RE.match(self.name):
            raise ConfigError(f"--name {self.name!r} must be letters, digits, '_', '.', '-' (max 128 chars)")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures must be >= 0, got {self.max_failures}")
        if self.pack < 1:
            raise ConfigError(f"--pack must be >= 1, got {self.pack}")
        if self.progress not in ("console", "notebook", "none"):
            raise ConfigError(f"progress {self.progress!r} is not one of console, notebook, none")
        ray_setup.check_gpu_arg(self.gpus_per_trial)
        if self.cpus_per_trial is not None and (self.cpus_per_trial < 1 or self.cpus_per_trial != int(self.cpus_per_trial)):
            raise ConfigError(f"--cpus-per-trial must be a whole number >= 1, got {self.cpus_per_trial:g}")
