"""The eleven edge-detection experiments of SPEC 4.1, with the source values as defaults."""
from __future__ import annotations

from search_spaces.experiment import Experiment, Hypothesis

CNN, CNN_AVG, MLP = "simple_cnn/edges", "simple_cnn_avgpool/edges", "three_layer_mlp/edges"
DPC = [10, 30, 50, 100]
FIVE = ("horizontal", "vertical", "diagonal", "both", "none")
# Smoke runs: a couple of epochs on the two smallest sizes, 2 seeds (CI and first contact).
SMOKE = {"epochs": 3, "data_per_class": [10, 30]}
SHIFTED = {"possible_edge_location_ratio": 0.5, "batch_size": 10, "eval_batch_size": 10}


def cnn_beats_mlp(at: dict | None = None, better=CNN, worse=MLP, label="CNN > MLP") -> Hypothesis:
    where = " and ".join(f"{k}={v}" for k, v in (at or {}).items()) or "every cell"
    return Hypothesis(f"{label} on val_acc at {where}", better=better, worse=worse, at=dict(at or {}))


EDGE_EXPERIMENTS = [
    Experiment(
        name="edge-overfit-small",
        description="Can the CNN and the MLP memorise 10 images/class? (evaluated on the training set)",
        pairings=(CNN, MLP), fixed={"lr": 1e-2, "epochs": 500, "data_per_class": 10, "kernel_size": 7,
                                    "evaluate_on": "train", "hidden_dims": (50, 10)},
        smoke={"epochs": 3}, plots=("curves", "kernels", "leaderboard", "samples"),
    ),
    Experiment(
        name="edge-data-per-class",
        description="CNN vs MLP validation accuracy as training images per class grow (10..100)",
        pairings=(CNN, MLP), fixed={"lr": 1e-2, "epochs": 500, "kernel_size": 7, "hidden_dims": (50, 10)},
        axes={"data_per_class": DPC}, smoke=SMOKE,
        plots=("accuracy_vs_data", "curves", "kernels", "confusion", "params_vs_accuracy", "leaderboard", "samples"),
        hypotheses=(cnn_beats_mlp({"data_per_class": 10}), cnn_beats_mlp({"data_per_class": 100})),
    ),
    Experiment(
        name="edge-detector-init",
        description="SimpleCNN with hand-made edge kernels, conv frozen (fc only), vs random init",
        pairings=(CNN,), fixed={"lr": 1e-2, "epochs": 30, "kernel_size": 7, "init": "edge_detector",
                                "freeze_conv": True},
        axes={"data_per_class": DPC}, smoke=SMOKE, compare_with=("edge-data-per-class",),
        plots=("accuracy_vs_data", "kernels", "curves"),
        hypotheses=(Hypothesis("edge-initialised CNN > randomly initialised CNN at data_per_class=10",
                               better=CNN, worse=CNN, at={"data_per_class": 10},
                               other_experiment="edge-data-per-class"),),
    ),
    Experiment(
        name="edge-long-training",
        description="Does a longer budget (100 vs 1000 epochs) close the MLP's gap? Curves per size",
        pairings=(CNN, MLP), fixed={"lr": 1e-2, "kernel_size": 7, "hidden_dims": (50, 10)},
        axes={"epochs": [100, 1000], "data_per_class": DPC},
        smoke={"epochs": [2, 4], "data_per_class": [10, 30]},
        plots=("accuracy_vs_epochs", "accuracy_vs_data", "curves", "kernels"),
        hypotheses=(cnn_beats_mlp({"epochs": 1000, "data_per_class": 10}),
                    cnn_beats_mlp({"epochs": 1000, "data_per_class": 100})),
    ),
    Experiment(
        name="edge-domain-shift",
        description="Train on edges in the first half, validate on the second half (r=0.5)",
        pairings=(CNN, MLP), fixed={"lr": 1e-2, "epochs": 300, "kernel_size": 7, "hidden_dims": (50, 10), **SHIFTED},
        axes={"data_per_class": DPC}, smoke=SMOKE,
        plots=("accuracy_vs_data", "confusion", "curves", "kernels", "samples"),
        hypotheses=(cnn_beats_mlp({"data_per_class": 10}), cnn_beats_mlp({"data_per_class": 100})),
    ),
    Experiment(
        name="edge-tuned-kernel",
        description="Domain shift with a 3x3-kernel CNN at lr 5e-2, 500 epochs (add --grid to tune)",
        pairings=(CNN,), fixed={"lr": 5e-2, "epochs": 500, "kernel_size": 3, **SHIFTED},
        axes={"data_per_class": DPC}, smoke=SMOKE, compare_with=("edge-domain-shift",),
        plots=("accuracy_vs_data", "curves", "kernels", "lr_kernel_heatmap"),
        hypotheses=(Hypothesis("3x3 CNN (lr 5e-2) > 7x7 CNN across halves at data_per_class=10",
                               better=CNN, worse=CNN, at={"data_per_class": 10},
                               other_experiment="edge-domain-shift"),),
    ),
    Experiment(
        name="edge-permutation",
        description="A fixed pixel permutation on train and valid: does the CNN prior become a handicap?",
        pairings=(CNN, MLP), fixed={"lr": 1e-2, "epochs": 300, "kernel_size": 7, "hidden_dims": (50, 10),
                                    "use_permutation": True, "batch_size": 10},
        axes={"data_per_class": DPC}, smoke=SMOKE,
        plots=("accuracy_vs_data", "curves", "kernels", "samples"),
        hypotheses=(cnn_beats_mlp({"data_per_class": 100}, better=MLP, worse=CNN, label="MLP > CNN"),),
    ),
    Experiment(
        name="edge-five-class",
        description="Five classes (with diagonal and crossed bands): does the CNN's advantage hold?",
        pairings=(CNN, MLP), fixed={"lr": 1e-2, "epochs": 200, "kernel_size": 7, "hidden_dims": (50, 10),
                                    "class_type": FIVE, "batch_size": 10, "eval_batch_size": 10},
        axes={"data_per_class": DPC}, smoke=SMOKE,
        plots=("accuracy_vs_data", "curves", "kernels", "confusion", "samples"),
        hypotheses=(cnn_beats_mlp({"data_per_class": 10}), cnn_beats_mlp({"data_per_class": 100})),
    ),
    Experiment(
        name="edge-avgpool",
        description="Average vs max pooling on the five-class task (same initial weights per seed)",
        pairings=(CNN_AVG,), fixed={"lr": 1e-2, "epochs": 200, "kernel_size": 7, "class_type": FIVE,
                                    "batch_size": 10, "eval_batch_size": 10},
        axes={"data_per_class": DPC}, smoke=SMOKE, compare_with=("edge-five-class",),
        plots=("accuracy_vs_data", "curves", "kernels"),
        hypotheses=tuple(Hypothesis(f"avg-pool CNN > max-pool CNN at data_per_class={n}", better=CNN_AVG,
                                    worse=CNN, at={"data_per_class": n}, other_experiment="edge-five-class")
                         for n in (10, 100)),
    ),
    Experiment(
        name="edge-deeper",
        description="DeeperCNN (4 conv, k=3, F=3) on five classes at 30/class, lr 1e-3, 800 epochs",
        pairings=("deeper_cnn/edges",), fixed={"lr": 1e-3, "epochs": 800, "kernel_size": 3, "num_filter": 3,
                                               "class_type": FIVE, "data_per_class": 30, "batch_size": 10,
                                               "eval_batch_size": 10},
        smoke={"epochs": 3}, compare_with=("edge-five-class",),
        plots=("curves", "kernels", "leaderboard", "params_vs_accuracy"),
        hypotheses=(Hypothesis("deeper CNN > SimpleCNN (k=7) at data_per_class=30", better="deeper_cnn/edges",
                               worse=CNN, at={"data_per_class": 30}, other_experiment="edge-five-class"),),
    ),
    Experiment(
        name="edge-wider",
        description="WiderCNN (F=6, k=3) on five classes at 30/class, lr 2e-3, 600 epochs",
        pairings=("wider_cnn/edges",), fixed={"lr": 2e-3, "epochs": 600, "kernel_size": 3, "num_filter": 6,
                                              "class_type": FIVE, "data_per_class": 30, "batch_size": 10,
                                              "eval_batch_size": 10},
        smoke={"epochs": 3}, compare_with=("edge-five-class",),
        plots=("curves", "kernels", "leaderboard", "params_vs_accuracy"),
        hypotheses=(Hypothesis("wider CNN > SimpleCNN (k=7) at data_per_class=30", better="wider_cnn/edges",
                               worse=CNN, at={"data_per_class": 30}, other_experiment="edge-five-class"),),
    ),
]
