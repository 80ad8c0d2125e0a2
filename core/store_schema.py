"""The MLflow store schema: every tag, param, metric and artifact name that is written by the
trials (trainables) or the driver (cluster) and read back by the analysis.

A sweep is one parent run (tag role=sweep) with one child run per trial (role=trial, tag
mlflow.parentRunId). Writers and readers import these names instead of spelling the strings,
so renaming one is a one-line change that both sides see.
"""
from __future__ import annotations

# --- Tags every run of the framework carries ---------------------------------------------------
TAG_ROLE = "role"                         # ROLE_SWEEP (the parent run) or ROLE_TRIAL (a child)
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
TAG_SWEEP = "sweep"                       # the sweep's name
TAG_EXPERIMENT = "experiment"             # the search_spaces experiment name
TAG_GIT_SHA = "git_sha"
TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own parent/child link
TAG_NOTE = "mlflow.note.content"          # MLflow's run description (the experiment's description)
MLFLOW_TAG_PREFIX = "mlflow."             # MLflow's system tags: not loaded as columns

# --- Tags of the parent run (the sweep) --------------------------------------------------------
TAG_SWEPT_KEYS = "swept_keys"             # JSON list of the config keys that vary between cells
TAG_SEARCH = "search"                     # "grid" or the searcher's name
TAG_SMOKE = "smoke"                       # "true" / "false"
TAG_STORAGE_PATH = "storage_path"
TAG_N_TRIALS = "n_trials"
TAG_N_ERRORS = "n_errors"
TAG_USER_MODULES = "user_modules"  # JSON list of the sweep's user modules: name, sha256, path, kind
TAG_SCHEDULER = "scheduler"
TAG_ASHA = "asha"
TAG_CONFIRMED_BY = "confirmed_by"         # on a search: the sweeps that confirmed its best configs
TAG_CONFIRMS = "confirms"                 # on a confirmation sweep: the search it confirms
TAG_CONFIRMS_RUN_ID = "confirms_run_id"
TAG_CONFIRM_METRIC = "confirm_metric"
TAG_CONFIRM_MODE = "confirm_mode"
TAG_CONFIRM_RANK = "confirm_rank"
TAG_SEARCH_BEST = "search_best"           # JSON: pairing -> the search's best value, run id, config
TAG_KIND = "kind"                         # "confirmation" for a confirmation sweep
SEARCH_ANALYTIC = "analytic"              # TAG_SEARCH of an analytic experiment's run (no trials)
KIND_CONFIRMATION = "confirmation"

# --- Tags of a trial's run ---------------------------------------------------------------------
TAG_TRIAL_ID = "trial_id"                 # Tune's trial id (f"{id}-m{i}" for pack members)
TAG_PAIRING = "pairing"
TAG_MODEL = "model"
TAG_DATASET = "dataset"
TAG_SEED = "seed"
TAG_EVAL_SPLIT = "eval_split"
TAG_N_CLASSES = "n_classes"               # classes of the trial's task, from its dataset (0: regression)
TAG_FEATURE_CACHE_HIT = "feature_cache_hit"
TAG_FEATURE_CACHE_KEY = "feature_cache_key"
TAG_RAY_NODE_ID = "ray_node_id"
TAG_GPU_IDS = "gpu_ids"
TAG_DEVICE = "device"
TAG_PACK_SIZE = "pack_size"
TAG_PACK_MEMBER = "pack_member"
TAG_PACK_TRIAL_ID = "pack_trial_id"

# --- How a trial's run ended (tag TAG_STATUS_REASON) --------------------------------------------
TAG_STATUS_REASON = "status_reason"
STATUS_COMPLETED = "completed"            # trained every epoch: the only runs that count as results
STATUS_FAILED = "failed"
STATUS_STOPPED_EARLY = "stopped_early"    # a scheduler (ASHA) stopped it
STATUS_INTERRUPTED = "interrupted"        # the driver got SIGINT/SIGTERM: the run was marked KILLED
TAG_ERROR = "error"                       # last line of the error of a failed trial
TAG_STOPPED_EPOCH = "stopped_epoch"
TAG_STOP_REASON = "stop_reason"
TAG_CHECKPOINT_CORRUPT = "checkpoint_corrupt"  # the trial resumed from an older checkpoint, or none

# --- Params ------------------------------------------------------------------------------------
# A trial logs its whole flat config as params (one param per config key); the parent logs the
# sweep's fixed keys plus these two.
PARAM_PAIRING = "pairing"
PARAM_SEED = "seed"
PARAM_SEEDS = "seeds"
PARAM_NUM_SAMPLES = "num_samples"

# --- Metrics -----------------------------------------------------------------------------------
# Per-epoch metrics (step = epoch, 1-based), in the column order of the trainers' history tensor.
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "train_loss_mean", "val_loss_mean", "lr")
# Per-shift metrics of the shift evaluator (step = shift in pixels).
SHIFT_METRICS = ("shift_acc", "shift_confidence")
# Metrics whose full history the analysis loads.
HISTORY_KEYS = EPOCH_METRICS + SHIFT_METRICS
# Logged once per trial at the end (step 0).
METRIC_BEST_VAL_ACC = "best_val_acc"
METRIC_N_PARAMS = "n_params"
METRIC_N_TRAINABLE_PARAMS = "n_trainable_params"
METRIC_EPOCHS_COMPLETED = "epochs_completed"
METRIC_TRAIN_TIME_S = "train_time_s"
FINAL_METRICS = (METRIC_BEST_VAL_ACC, METRIC_N_PARAMS, METRIC_N_TRAINABLE_PARAMS, METRIC_EPOCHS_COMPLETED,
                 METRIC_TRAIN_TIME_S, "iou_original", "iou_shifted")

# --- Artifacts ---------------------------------------------------------------------------------
# Of a trial's run (arrays only: figures are drawn by `sweep report`, never inside a trial).
ART_CONFIG = "config.json"                          # the trial's flat config, secrets redacted
ART_HISTORY = "history.json"                        # {metric: [value per epoch]}
ART_CONFUSION = "confusion_matrix.json"             # {"labels": [...], "matrix": [[...]]}
ART_KERNELS_INITIAL = "kernels/conv1_initial.npy"   # first conv layer's weights before training
ART_KERNELS_FINAL = "kernels/conv1_final.npy"       # ... and after
ART_SAMPLES = "samples.npz"                         # x, y, class_names[, unpermutation]: example inputs
ART_ERROR = "error.txt"                             # the traceback of a trial that failed for good
# Of the parent run.
ART_DECLARATION = "sweep/experiment.json"           # the experiment as it was run
ART_USER_MODULES = "sweep/user_modules"             # the source of each user module the sweep ran (<file>.py)
ART_REPORT_DIR = "report"                           # `sweep report` output
# Of an analytic experiment's run (mlp-param-explosion: no trials).
METRIC_MLP_PARAMS = "mlp_params"                    # step = the input dimension
PARAM_HIDDEN = "hidden"
PARAM_OUTPUTS = "outputs"
ART_PARAM_EXPLOSION = "param_explosion.json"        # [{"label", "input_dim", "params"}]


def trial_filter(parent_run_id: str, trial_id: str) -> str:
    """MLflow search filter for the child run of Tune trial `trial_id` under `parent_run_id`."""
    return f"tags.{TAG_TRIAL_ID} = '{trial_id}' and tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}'"


def children_filter(parent_run_id: str) -> str:
    """MLflow search filter for every child run of `parent_run_id`."""
    return f"tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}'"


# --- Adaptive replicates (`sweep run --until-decided`, cluster/flow/adaptive.py) ---------------------
TAG_WAVE = "wave"                         # on a trial: 0 = the first wave of seeds, 1, 2, ... added ones
TAG_UNTIL_DECIDED = "until_decided"       # on the parent: "true"
TAG_STOPPING_RULE = "stopping_rule"       # the rule in words
TAG_MAX_LOOKS = "max_looks"
TAG_ALPHA_PER_LOOK = "alpha_per_look"     # sweeps before the group-sequential design: Bonferroni alpha per look
TAG_LOOK_SEEDS = "look_seeds"             # JSON list: seeds per side at each look of the design
TAG_SPENDING = "alpha_spending"           # "obf" or "pocock"
TAG_ALPHA = "alpha"                       # two-sided error rate of each claim over all looks
TAG_LOOKS_TAKEN = "looks_taken"
TAG_ADAPTIVE_OUTCOME = "adaptive_outcome"  # "every hypothesis decided" or what is still open, and why
TAG_MAX_SEEDS = "max_seeds"
TAG_TARGET_HALFWIDTH = "target_halfwidth"
ART_LOOKS = "adaptive/looks.json"         # every look: decided, open, cells given more seeds

# --- Collapse: per-class recall from the trial's confusion matrix (trainables/lifecycle.py) ----
METRIC_MIN_CLASS_RECALL = "min_class_recall"  # the worst class's recall on the evaluation split
METRIC_CLASSES_LOST = "classes_lost"          # classes whose recall is at most LOST_RECALL_OF_CHANCE / classes
LOST_RECALL_OF_CHANCE = 0.5                   # a class is lost at or below half the recall of a guesser (1/classes)
COLLAPSE_METRICS = (METRIC_MIN_CLASS_RECALL, METRIC_CLASSES_LOST)


def class_recalls(matrix) -> list[float]:
    """Recall of each class (row = true class) of a confusion matrix; NaN for a class with no samples."""
    out = []
    for row in matrix:
        total = float(sum(row))
        out.append(float(row[len(out)]) / total if total else float("nan"))
    return out


def collapse_metrics(matrix) -> dict[str, float]:
    """{min_class_recall, classes_lost} of a confusion matrix (classes with no samples are skipped)."""
    recalls = [r for r in class_recalls(matrix) if r == r]
    if not recalls:
        return {}
    limit = LOST_RECALL_OF_CHANCE / len(matrix)
    return {METRIC_MIN_CLASS_RECALL: min(recalls), METRIC_CLASSES_LOST: float(sum(r <= limit + 1e-12 for r in recalls))}
