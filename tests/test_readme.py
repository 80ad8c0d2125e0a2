"""Every `sweep` command the README shows parses, names a real experiment, and make targets exist."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cluster.cli import build_parser
from recipe_checks import doc_commands
from search_spaces import EXPERIMENTS

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [c for c in doc_commands(ROOT / "README.md") if c.startswith("sweep ")]


def test_readme_shows_sweep_commands():
    assert len(COMMANDS) >= 10
    text = (ROOT / "README.md").read_text()
    assert text.index("make demo") < text.index("## Concepts") and "make test" in text.split("## Concepts")[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_sweep_command_parses(command):
    argv = shlex.split(command.split("  #")[0])[1:]
    argv = [a.replace("<timestamp>", "20260101-000000") for a in argv]
    args = build_parser().parse_args(argv)
    if getattr(args, "experiment", None):
        assert args.experiment in EXPERIMENTS


def test_make_targets_in_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make ([a-z-]+)`", (ROOT / "README.md").read_text())):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
