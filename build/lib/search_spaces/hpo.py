"""Hyper-parameter searches (ASHA + Tune's random search) over the edge models.

Each search answers "what are the best settings for this pairing"; `sweep confirm SWEEP` then
reruns the best configuration of each model with fresh seeds, because the single best trial
of a search is an optimistic estimate.

Budgets: `epochs` is itself searched (a choice of budgets), and ASHA stops the weak trials at
rungs grace, grace*rf, grace*rf^2, ... epochs. `report_every` equals the grace period so every
rung falls on a Tune report; checkpoints are kept sparse because trials are short.
"""
from __future__ import annotations

from search_spaces.domains import Choice, LogUniform
from search_spaces.edge import CNN, FIVE, MLP
from search_spaces.experiment import Experiment, Search

SEARCH_PLOTS = ("best_configs", "search_scatter", "asha_rungs", "curves", "leaderboard")
# Edge-5 at 30 images/class, batch 10: the setting of edge-deeper / edge-wider (SPEC 4.1).
FIVE_30 = {"class_type": FIVE, "data_per_class": 30, "batch_size": 10, "eval_batch_size": 10}

HPO_EXPERIMENTS = [
    Experiment(
        name="edge-hpo",
        description="Best lr / kernel size (CNN) / hidden width (MLP) / epochs at 30 images per class (ASHA)",
        pairings=(CNN, MLP),
        fixed={"data_per_class": 30, "report_every": 10, "checkpoint_every": 100},
        axes={"lr": LogUniform(1e-3, 2e-1), "epochs": Choice((100, 200, 400))},
        per_pairing={CNN: {"kernel_size": Choice((3, 5, 7, 9))},
                     MLP: {"hidden_dims": Choice(((10, 10), (25, 10), (50, 10), (100, 10), (200, 10)))}},
        seeds=1,
        smoke={"epochs": 8, "report_every": 2},
        plots=SEARCH_PLOTS,
        search=Search(metric="val_acc", mode="max", scheduler="asha", grace_period=10, reduction_factor=3,
                      num_samples=16),
    ),
    Experiment(
        name="edge-deeper-hpo",
        description="DeeperCNN on five classes at 30/class: lr, optimiser, kernel size, epochs (the tuning "
                    "edge-deeper asks for)",
        pairings=("deeper_cnn/edges",),
        fixed={**FIVE_30, "num_filter": 3, "report_every": 20, "checkpoint_every": 200},
        axes={"lr": LogUniform(1e-4, 1e-1), "optimizer": Choice(("sgd", "adam")),
              "kernel_size": Choice((3, 5)), "epochs": Choice((200, 400, 800))},
        seeds=1,
        smoke={"epochs": 8, "report_every": 2},
        plots=SEARCH_PLOTS,
        search=Search(metric="val_acc", mode="max", scheduler="asha", grace_period=20, reduction_factor=3,
                      num_samples=16),
    ),
    Experiment(
        name="edge-wider-hpo",
        description="WiderCNN on five classes at 30/class: lr, optimiser, width (filters), epochs (the tuning "
                    "edge-wider asks for)",
        pairings=("wider_cnn/edges",),
        fixed={**FIVE_30, "kernel_size": 3, "report_every": 20, "checkpoint_every": 200},
        axes={"lr": LogUniform(1e-4, 1e-1), "optimizer": Choice(("sgd", "adam")),
              "num_filter": Choice((4, 6, 8, 12)), "epochs": Choice((200, 400, 600))},
        seeds=1,
        smoke={"epochs": 8, "report_every": 2},
        plots=SEARCH_PLOTS,
        search=Search(metric="val_acc", mode="max", scheduler="asha", grace_period=20, reduction_factor=3,
                      num_samples=16),
    ),
]
