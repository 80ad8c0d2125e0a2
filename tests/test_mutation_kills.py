"""Tests written for survivors of the sampled mutation run (tests/mutation/sample.py): each pins a
behaviour a cosmic-ray mutant changed without any test noticing."""
from __future__ import annotations

import pytest
from scipy import stats as sps


@pytest.mark.parametrize("a, b", [([0.80, 0.86], [0.60, 0.64, 0.70]), ([0.50, 0.58, 0.61, 0.55], [0.30, 0.41])])
def test_diff_interval_with_a_two_seed_side_is_the_welch_t_interval(a, b):
    """A side of two values: the Welch t-interval of the difference of means (scipy's, independently)."""
    from analysis.stats import diff_interval

    d, low, high = diff_interval(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert (low, high) == pytest.approx((max(ref.low, -1.0), min(ref.high, 1.0)), rel=1e-9)


def test_pairing_keys_are_training_dataset_model_and_evaluator_keys():
    from trainables.config import TrainConfig
    from trainables.data import get_dataset
    from trainables.evaluators import EVALUATOR_CONFIGS
    from trainables.pairings import get_pairing
    from trainables.spec import pairing_keys

    name = "three_layer_mlp/edges"
    keys = pairing_keys(name)
    data_keys = set(get_dataset(get_pairing(name).dataset).config.keys())
    assert {"data_per_class", "valid_per_class"} <= data_keys <= keys
    assert set(TrainConfig.keys()) <= keys and {"lr", "epochs", "hidden_dims"} <= keys
    assert all(set(cls.keys()) <= keys for cls in EVALUATOR_CONFIGS.values())
    assert "kernel_size" not in pairing_keys(name) and "kernel_size" in pairing_keys("simple_cnn/edges")


def test_image_datasets_memory_estimate_is_three_copies_of_the_uint8_files():
    """The data-memory check's estimate for the fixed image datasets: decoded, cached and split,
    three uint8 copies of every image (the dataset registry's peak_bytes, read by cluster.planning.validate)."""
    from trainables.data import DATASETS

    assert DATASETS["mnist"].peak_bytes(None) == 3 * 70_000 * 28 * 28
    assert DATASETS["cifar10"].peak_bytes(None) == 3 * 60_000 * 3 * 32 * 32


def test_randint_with_equal_bounds_is_one_value():
    """randint(3, 3) is a valid (degenerate) domain; only low > high is refused."""
    from core.errors import ConfigError
    from search_spaces.domains import RandInt

    assert RandInt(3, 3).describe() == "randint(3, 3)"
    with pytest.raises(ConfigError, match="lower bound 4 must be <= upper bound 3"):
        RandInt(4, 3)


def test_mlflow_retries_back_off_doubling_up_to_ten_seconds(tracking_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    from trainables import tracking as T

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("r")
    parent = client.create_run(exp_id).info.run_id
    run = T.TrialRun(T.TrackingInfo(tracking_uri, exp_id, parent, "s", "r", retry_s=1000), "t", None, "t", {})
    slept, calls = [], []
    monkeypatch.setattr(T.time, "sleep", slept.append)

    def flaky():
        calls.append(1)
        if len(calls) < 7:
            raise OSError("server away")
        return "ok"

    assert run._retry(flaky) == "ok"
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_plain_grid_gets_no_scheduler_search_metric_or_mode():
    from cluster.flow.options import RunOptions
    from cluster.planning.plan import make_plan
    from cluster.tuner.search import make_search
    from search_spaces import get_experiment

    plan = make_plan(get_experiment("edge-data-per-class"), smoke=True)
    assert plan.experiment.search is None
    assert make_search(plan, RunOptions("edge-data-per-class")) == (None, None, None, None)


class _RecordingOps:
    """A trial's MLflow calls, recorded (no store): what TrialRun asked for, in order."""

    def __init__(self):
        self.batches: list[dict] = []

    def find_run(self, experiment_id, flt):
        return None

    def create_run(self, experiment_id, tags, run_name):
        return "run-1"

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.batches.append({"metrics": tuple(metrics), "params": tuple(params), "tags": tuple(tags)})


@pytest.fixture
def recorded_run(monkeypatch):
    from trainables import tracking as T

    ops = _RecordingOps()
    monkeypatch.setattr(T, "trial_ops", lambda info: ops)
    return T.TrialRun(T.TrackingInfo("sqlite:///unused.db", "0", "parent", "s", "e"), "t", None, "t", {}), ops


def test_params_go_in_batches_of_at_most_100_each_param_once(recorded_run):
    """MLflow takes at most 100 params per log_batch: 250 params are 3 calls, none written twice."""
    run, ops = recorded_run
    run.log_params({f"p{i:03d}": i for i in range(250)})
    sizes = [len(b["params"]) for b in ops.batches]
    assert sizes == [100, 100, 50]
    keys = [k for b in ops.batches for k, _ in b["params"]]
    assert keys == [f"p{i:03d}" for i in range(250)]


def test_final_scalars_are_logged_at_step_0(recorded_run):
    run, ops = recorded_run
    run.add_final({"n_params": 606, "best_val_acc": 0.75})
    run.flush()
    assert [(k, v, s) for k, v, _, s in ops.batches[-1]["metrics"]] == [("n_params", 606.0, 0), ("best_val_acc", 0.75, 0)]


def test_buffered_metrics_are_written_once_5_seconds_have_passed(recorded_run, monkeypatch):
    """flush_if_due writes the buffer when the previous write is FLUSH_S (5 s) old, not before."""
    from trainables import tracking as T

    run, ops = recorded_run
    now = [1000.0]
    monkeypatch.setattr(T.time, "monotonic", lambda: now[0])
    run.flush()
    written = len(ops.batches)
    run.add(1, {"train_loss": 0.5})
    now[0] += 4.99
    run.flush_if_due()
    assert len(ops.batches) == written  # 4.99 s: still buffered
    now[0] += 0.01
    run.flush_if_due()
    assert len(ops.batches) == written + 1 and ops.batches[-1]["metrics"][0][:2] == ("train_loss", 0.5)
    assert run.buffer == []
