"""Every command the README shows works as written: `sweep` commands parse and name real
experiments, `make` targets exist, `python -m` modules exist and accept the flags shown, and the
`mlflow` commands use options MLflow has. Commands are read from every code block: fenced blocks
with or without a language, and indented blocks."""
from __future__ import annotations

import ast
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from cluster.cli import build_parser
from search_spaces import EXPERIMENTS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PROGRAMS = ("sweep", "make", "python", "mlflow", ".venv/bin/mlflow", ".venv/bin/sweep", ".venv/bin/python")
PLACEHOLDERS = {"<timestamp>": "20260101-000000", "HEAD_IP": "10.0.0.1", "YOUR-BUCKET": "bucket"}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language or "", body) of every fenced block, and ("indented", body) of every indented block."""
    blocks = [(lang, body) for lang, body in re.findall(r"^```([A-Za-z]*)\n(.*?)^```", text, flags=re.S | re.M)]
    outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for block in re.findall(r"(?:^\n)((?:^(?: {4}|\t).*\n)+)", outside, flags=re.M):
        blocks.append(("indented", "\n".join(line[4:] for line in block.splitlines())))
    return blocks


def commands(text: str) -> list[tuple[str, str]]:
    """(block kind, command) for each line of a code block that starts with a known program."""
    out = []
    for lang, body in code_blocks(text):
        for line in body.replace("\\\n", " ").splitlines():
            line = re.split(r"\s{2,}#|\s#\s", line.strip())[0].strip()
            if line and line.split()[0] in PROGRAMS:
                out.append((lang or "unlabelled", line))
    return out


COMMANDS = commands(README.read_text())


def _argv(command: str) -> list[str]:
    for k, v in PLACEHOLDERS.items():
        command = command.replace(k, v)
    return shlex.split(command)


def test_readme_shows_commands_in_every_kind_of_block():
    kinds = {kind for kind, _ in COMMANDS}
    assert {"bash", "unlabelled", "indented"} <= kinds, kinds
    assert sum(1 for _, c in COMMANDS if c.startswith("sweep ")) >= 10
    text = README.read_text()
    assert text.index("make demo") < text.index("## Concepts") and "make test" in text.split("## Concepts")[0]


def test_extractor_sees_unlabelled_and_indented_blocks():
    text = "x\n\n```\nsweep list  # all\n```\n\n    make bench   # short\n    python -m benchmarks.run --short\n"
    assert commands(text) == [("unlabelled", "sweep list"), ("indented", "make bench"),
                              ("indented", "python -m benchmarks.run --short")]


@pytest.mark.parametrize("command", [c for _, c in COMMANDS if c.split()[0].endswith("sweep")])
def test_readme_sweep_command_parses(command):
    args = build_parser().parse_args(_argv(command)[1:])
    target = getattr(args, "experiment", None) or getattr(args, "study", None)
    if target and ".py" in target:  # a user module: README's my_study.py is examples/my_study.py
        file, _, name = target.partition(":")
        tree = ast.parse((ROOT / "examples" / Path(file).name).read_text())
        if name:
            assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                        if isinstance(t, ast.Name)}
            assert name in assigned, f"examples/{Path(file).name} defines no {name}"
    elif getattr(args, "experiment", None):
        assert args.experiment in EXPERIMENTS


@pytest.mark.parametrize("command", [c for _, c in COMMANDS if c.startswith("make ")])
def test_readme_make_target_exists(command):
    makefile = (ROOT / "Makefile").read_text()
    for target in _argv(command)[1:]:
        if "=" not in target:
            assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target


def test_make_targets_named_in_prose_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make ([a-z-]+)`", README.read_text())):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


@pytest.mark.parametrize("command", [c for _, c in COMMANDS if c.split()[0].endswith("python")])
def test_readme_python_module_exists_and_takes_the_flags(command):
    argv = _argv(command)
    assert argv[1] == "-m", command
    module = argv[2]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} not found"
    source = Path(spec.origin).read_text()
    if module.startswith("benchmarks."):
        source += (ROOT / "benchmarks" / "common.py").read_text()  # benchmark_main's shared flags
    for flag in argv[3:]:
        flag = flag.strip("[]")
        if flag.startswith("--"):
            assert f'"{flag}"' in source, f"{module} has no {flag} option"


@pytest.mark.parametrize("command", [c for _, c in COMMANDS if c.split()[0].endswith("mlflow")])
def test_readme_mlflow_command_uses_real_options(command):
    import click
    from mlflow.cli import cli

    argv = _argv(command)
    sub = cli.get_command(click.Context(cli), argv[1])  # some subcommands (ui) load lazily
    assert sub is not None, f"mlflow has no {argv[1]!r} command"
    known = {opt for p in sub.params for opt in p.opts}
    for arg in argv[2:]:
        if arg.startswith("--"):
            assert arg.split("=")[0] in known, f"mlflow {argv[1]} has no {arg}"
