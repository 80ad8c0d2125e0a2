"""Checks shared by the recipe and docs tests: is this shell command one the project accepts?

A command is checked against the real parser of the tool it calls: `sweep` with the CLI's
argparse parser, `ray` with Ray's click commands, and the recipe files it names must exist.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "cluster" / "recipes"
ENV_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def load_k8s() -> dict[str, dict]:
    """The KubeRay manifest's documents by kind."""
    docs = yaml.safe_load_all((RECIPES / "kuberay-rayjob.yaml").read_text())
    return {d["kind"]: d for d in docs if d}


def find_key(node, key: str) -> list:
    """Every value stored under `key` anywhere in a parsed YAML tree."""
    if isinstance(node, dict):
        return ([node[key]] if key in node else []) + [
            v for child in node.values() for v in find_key(child, key)]
    if isinstance(node, list):
        return [v for child in node for v in find_key(child, key)]
    return []


def parse_sweep(argv: list[str]):
    """Parse `sweep ...` argv (without the program name) with the CLI's parser.

    Raises AssertionError naming the command when the parser refuses it, and when a
    `sweep run` names an experiment that does not exist.
    """
    from cluster.cli import build_parser
    from search_spaces import EXPERIMENTS

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`sweep {shlex.join(argv)}` is refused by the CLI parser") from exc
    if args.command == "run":
        assert args.experiment in EXPERIMENTS, f"unknown experiment {args.experiment!r} in recipe"
    if args.command == "server":
        from cluster.infra.server import server_command

        server_command(host=args.host, port=args.port, backend_store_uri=args.backend_store_uri,
                       artifacts_destination=args.artifacts_destination, app_name=args.app_name,
                       workers=args.workers)
    return args


def check_ray(argv: list[str]) -> click.Context:
    """Parse `ray ...` argv with Ray's own click commands (no cluster needed)."""
    from ray.scripts.scripts import cli

    cmd, name, args = cli, "ray", list(argv)
    while isinstance(cmd, click.Group):
        name, args = args[0], args[1:]
        cmd = cmd.get_command(click.Context(cli), name)
        assert cmd is not None, f"`ray {shlex.join(argv)}`: no ray command {name!r}"
    try:
        ctx = cmd.make_context(name, args)
    except click.UsageError as exc:
        raise AssertionError(f"`ray {shlex.join(argv)}`: {exc}") from exc
    for value in ctx.params.values():  # config files named on the command line must exist
        if isinstance(value, str) and value.startswith("cluster/recipes/"):
            assert (ROOT / value).is_file(), f"`ray {shlex.join(argv)}`: no file {value}"
    if ctx.params.get("entrypoint"):  # `ray job submit ... -- COMMAND`
        check_command(shlex.join(ctx.params["entrypoint"]))
    return ctx


def check_command(line: str) -> str:
    """Check one shell command line; return the tool it runs.

    Raises:
        AssertionError: the command is refused, names a missing file, disagrees with a
            recipe, or runs a tool this checker does not know (add a check for it).
    """
    argv = shlex.split(line, comments=True)
    env = {}
    while argv and ENV_ASSIGN.match(argv[0]):
        key, _, value = argv.pop(0).partition("=")
        env[key] = value
    if "EXPERIMENT" in env:
        from search_spaces import EXPERIMENTS

        assert env["EXPERIMENT"] in EXPERIMENTS, f"unknown experiment {env['EXPERIMENT']!r}"
    if not argv:
        return "env"
    tool, args = argv[0], argv[1:]
    if tool == "sweep":
        parse_sweep(args)
    elif tool == "ray":
        check_ray(args)
    elif tool in ("sh", "bash") and args[:1] == ["-c"]:
        check_command(args[1])
    elif tool == "sbatch":
        script = next(a for a in args if not a.startswith("-"))
        assert (ROOT / script).is_file(), f"no batch script {script}"
        rest = args[args.index(script) + 1:]
        parse_sweep(["run", env.get("EXPERIMENT", "edge-data-per-class"), *rest])
    elif tool == "docker":
        _check_docker(args)
    elif tool == "kubectl":
        _check_kubectl(args)
    elif tool == "export":
        import mlflow.environment_variables as mev

        for item in args:
            name = item.partition("=")[0]
            assert hasattr(mev, name), f"MLflow reads no environment variable {name}"
    elif tool in ("pip", "python") and "install" in args:
        assert "." in args or "-e" in args, f"`{line}` does not install this project"
    else:
        raise AssertionError(f"no check for `{line}`: add one to tests/recipe_checks.py")
    return tool


def _image() -> str:
    return load_k8s()["RayJob"]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
        "containers"][0]["image"]


def _check_docker(args: list[str]) -> None:
    if args[0] == "build":
        dockerfile = args[args.index("-f") + 1]
        assert (ROOT / dockerfile).is_file() and args[-1] == ".", "build from the repo root"
        assert args[args.index("-t") + 1] == _image(), "docker tag != image in the KubeRay manifest"
    elif args[0] == "push":
        assert args[1] == _image()
    else:
        raise AssertionError(f"no check for `docker {shlex.join(args)}`")


def _check_kubectl(args: list[str]) -> None:
    k8s = load_k8s()
    if args[:2] == ["apply", "-f"]:
        assert (ROOT / args[2]).is_file()
    elif args[:3] == ["create", "secret", "generic"]:
        keys = {a.split("=", 1)[1].split("=", 1)[0] for a in args if a.startswith("--from-literal=")}
        refs = {(r["name"], r["key"]) for r in find_key(list(k8s.values()), "secretKeyRef")}
        assert refs == {(args[3], k) for k in keys}, f"secret {args[3]}{keys} != manifest refs {refs}"
    elif args[0] == "logs":
        label = args[args.index("-l") + 1]
        assert label == f"job-name={k8s['RayJob']['metadata']['name']}"
    elif args[0] == "port-forward":
        svc, ports = args[1], args[2]
        assert svc == f"svc/{k8s['Service']['metadata']['name']}"
        remote = int(ports.split(":")[1])
        assert remote in [p["port"] for p in k8s["Service"]["spec"]["ports"]]
    else:
        raise AssertionError(f"no check for `kubectl {shlex.join(args)}`")


def comment_commands(path: Path) -> list[str]:
    """Commands shown in a recipe's header comments (`#   tool ...` lines)."""
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"^#   (\S.*)$", line)
        if m and not m.group(1).startswith("#"):
            out.append(m.group(1))
    return out


def doc_commands(path: Path, section: str | None = None) -> list[str]:
    """Commands in a Markdown file's ```bash blocks (continuation lines joined), optionally only
    those under the level-2 heading `section` (up to the next level-2 heading)."""
    text = path.read_text()
    if section is not None:
        match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
        assert match, f"{path} has no '## {section}' section"
        text = match.group(1)
    cmds = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if cmd.strip() and not cmd.lstrip().startswith("#"):
                cmds.append(cmd.strip())
    return cmds
