"""benchmarks/key_path: the files a `--set KEY=VALUE` crosses, in the driver and in the trial.

The tool backs a figure of the README (and of issue 21's note); these checks keep it measuring:
the driver part must reach the spec, the trial part must reach where the value is used, and a
file that only gets the built result (the loop gets the model, not its kernel size) is not counted.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package

from benchmarks.key_path import crossed  # noqa: E402


def test_lr_is_followed_from_the_parser_to_the_training_loop():
    files = crossed("worktree", "lr=0.0123", depth=0)
    assert {"cluster/planning/values.py", "cluster/planning/plan.py", "trainables/spec.py"} <= set(files["driver"])
    assert "trainables/loop.py" not in files["driver"]  # the driver never trains
    assert {"trainables/trainable.py", "trainables/spec.py", "trainables/loop.py"} <= set(files["trial"])
    assert not [f for f in files["driver"] + files["trial"] if f.startswith(("tests/", "benchmarks/", ".venv"))]


def test_a_model_key_reaches_the_model_and_not_the_training_loop():
    files = crossed("worktree", "kernel_size=5", depth=0)
    assert "trainables/models/edge.py" in files["driver"]  # the preflight builds the model
    assert {"trainables/models/edge.py", "trainables/trainable.py"} <= set(files["trial"])
    assert "trainables/loop.py" not in files["trial"]  # the loop gets the built model, not its settings
