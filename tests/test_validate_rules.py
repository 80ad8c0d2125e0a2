"""Rules of cluster.planning.validate checked on the functions themselves (no CLI, under a second
each): the sanity bounds are inclusive, only cuda_graphs=true asks for a GPU, the default memory
limit is half the machine. Listed first for validate.py in tests/mutation/sample.py, so a mutant that
breaks one of these rules fails here at once instead of starting a sweep in the slower tables."""
from __future__ import annotations

import pytest


# The sanity upper bounds (README "Validation"), each stated by the config class that owns the key:
# the bound itself is a value a user may give; the next value above it is refused with a message
# naming the value and the bound.
UPPER_BOUNDS = {"lr": 10.0, "epochs": 100_000, "weight_decay": 1.0, "batch_size": 10_000_000,
                "eval_batch_size": 10_000_000, "t_max": 100_000, "spatial_resolution": 4096, "resize": 4096}


def _owners(key):
    """The config classes that read `key` (every dataset's and the training settings)."""
    from trainables.config import TrainConfig
    from trainables.data import DATASETS

    classes = [TrainConfig, *dict.fromkeys(d.config for d in DATASETS.values())]
    return [cls for cls in classes if key in cls.keys()]


@pytest.mark.parametrize("key, bound", UPPER_BOUNDS.items())
def test_sanity_upper_bounds_are_inclusive(key, bound):
    import math
    import re

    from core.errors import ConfigError

    owners = _owners(key)
    assert owners
    for cls in owners:
        base = {"pairing": "three_layer_mlp/edges"} if "pairing" in cls.keys() else {}
        cls(**base, **{key: bound})  # the largest allowed value passes
        above = bound + 1 if isinstance(bound, int) else math.nextafter(bound, math.inf)
        with pytest.raises(ConfigError, match=re.escape(f"{key}={above!r} is above {bound:g}, the largest value")):
            cls(**base, **{key: above})


def test_cuda_graphs_false_needs_no_gpu():
    """Only cuda_graphs=true asks for a GPU: `--set cuda_graphs=false` runs on a machine without CUDA
    and with --gpus-per-trial 0, locally or on a cluster without GPUs."""
    from cluster.planning.plan import make_plan
    from cluster.planning.validate import check_device_cluster, check_device_local, cuda_setting
    from search_spaces import get_experiment

    plan = make_plan(get_experiment("edge-data-per-class"), sets={"cuda_graphs": False}, seeds=1, smoke=True)
    assert cuda_setting(plan) is None
    check_device_local(plan, 0, local=True)
    check_device_cluster(plan, 0.0)


def test_default_memory_limit_is_half_of_this_machine(monkeypatch):
    """README "Validation": one trial's data may use half of the physical memory unless
    $SWEEP_MAX_TRIAL_MEMORY_GB says otherwise."""
    from cluster.planning import validate

    monkeypatch.delenv(validate.MEMORY_ENV, raising=False)
    monkeypatch.setattr(validate, "physical_memory", lambda: 24 * 2 ** 30)
    assert validate.memory_limit() == 12 * 2 ** 30
    monkeypatch.setenv(validate.MEMORY_ENV, "3.5")
    assert validate.memory_limit() == 3_500_000_000


def test_a_path_under_a_file_is_named_as_such_not_as_a_link_loop(tmp_path):
    """check_paths words each OSError by its errno: a data_root below a plain file (ENOTDIR) "cannot be
    used: Not a directory"; only ELOOP is called a symbolic link loop."""
    import re
    from types import SimpleNamespace

    from cluster.planning.validate import check_paths
    from core.errors import ConfigError

    afile = tmp_path / "afile"
    afile.write_text("x")
    plan = SimpleNamespace(fixed={"data_root": str(afile / "below")}, axes={}, per_pairing={})
    with pytest.raises(ConfigError, match=re.escape("cannot be used: Not a directory")) as err:
        check_paths(plan)
    assert "link loop" not in str(err.value)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="symbolic link loop"):
        check_paths(SimpleNamespace(fixed={"data_root": str(loop / "x")}, axes={}, per_pairing={}))


def test_memory_message_gives_the_estimate_to_a_tenth_of_a_gb(monkeypatch):
    """The refusal names the estimate as computed (peak_bytes / 1e9, one decimal), not rounded down to
    whole GB, and the limit."""
    import re

    from cluster.planning import validate
    from cluster.planning.plan import make_plan
    from core.errors import ConfigError
    from search_spaces import get_experiment
    from trainables.data import DATASETS

    plan = make_plan(get_experiment("edge-data-per-class"), seeds=1, smoke=True)
    monkeypatch.setitem(DATASETS, "edges", DATASETS["edges"].__class__(
        **{**DATASETS["edges"].__dict__, "peak_bytes": lambda d: 2_700_000_000}))
    monkeypatch.setenv(validate.MEMORY_ENV, "1")
    with pytest.raises(ConfigError, match=re.escape("about 2.7 GB of memory")) as err:
        validate.check_memory(plan)
    assert "limit of 1.0 GB" in str(err.value)
