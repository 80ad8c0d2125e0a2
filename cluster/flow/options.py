"""What `sweep run` and `sweep study` accept (RunOptions, StudyOptions), declared once: each field carries its command-line flag,
from which `sweep run`'s flags (and `sweep study`'s shared ones) are generated; checked before Ray
or MLflow start."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.folder.storage import NAME_RE
from cluster.infra import ray_setup, tracking
from cluster.planning import validate
from cluster.planning.values import parse_grids, parse_sets
from core.errors import ConfigError
from search_spaces.studies import get_study


def finite_float(text: str) -> float:
    """argparse type: a finite number (nan and inf refused with the value named)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _samples(items: list[str] | None) -> dict[str, Any]:
    from cluster.tuner.search import parse_samples

    return parse_samples(items)


def flag(*names: str, parse: Callable[[Any], Any] | None = None, **argparse_kwargs) -> dict[str, Any]:
    """Field metadata: the option's command-line flag(s), argparse's settings and how to parse the value."""
    return {"cli": {"names": names, "parse": parse, "kwargs": argparse_kwargs}}


def opt(default: Any, *names: str, parse: Callable[[Any], Any] | None = None, **argparse_kwargs):
    """A dataclass field with its command-line flag."""
    kwargs = {"default_factory": default} if callable(default) and default in (dict, tuple, list) else {"default": default}
    return field(**kwargs, metadata=flag(*names, parse=parse, **argparse_kwargs))


@dataclass(frozen=True)
class RunOptions:
    """Everything `sweep run` accepts, checked in __post_init__ (before Ray or MLflow start)."""

    experiment: str
    seeds: int | None = opt(None, "--seeds", type=int, help="replicates per cell (default: the experiment's, 3 for most)")
    sets: dict[str, Any] = opt(dict, "--set", parse=parse_sets, action="append", metavar="KEY=VALUE",
                               help="override a setting (repeatable)")
    grids: dict[str, list] = opt(dict, "--grid", parse=parse_grids, action="append", metavar="KEY=V1,V2",
                                 help="sweep a key over values (repeatable)")
    smoke: bool = opt(False, "--smoke", action="store_true",
                      help="tiny epochs/data: any experiment in < 2 min on 2 cores")
    # None: the experiment's Search.num_samples (4 with --smoke), else 1
    num_samples: int | None = opt(None, "--num-samples", type=int,
                                  help="Tune num_samples: samples of a search (default: the experiment's, else 1)")
    address: str | None = opt(None, "--address", help="Ray cluster: auto | ray://HOST:10001 (default: start local Ray)")
    tracking_uri: str = opt(tracking.DEFAULT_TRACKING_URI, "--tracking-uri",
                            help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    cpus_per_trial: float | None = opt(None, "--cpus-per-trial", type=finite_float,
                                       help="CPUs (and torch threads) per trial (default 1)")
    gpus_per_trial: float | None = opt(None, "--gpus-per-trial", type=finite_float,
                                       help="fractional GPUs per trial (default 0.25 if GPUs)")
    max_concurrent: int | None = opt(None, "--max-concurrent", type=int, help="trials running at once (default: as many as fit)")
    name: str | None = opt(None, "--name", help="sweep name (default EXPERIMENT-YYYYmmdd-HHMMSS-xxxx, xxxx random)")
    storage_path: str | None = opt(None, "--storage-path",
                                   help="Tune storage: local/shared path or cloud URI (default ./ray_results)")
    data_root: str | None = opt(None, "--data-root", help="where CIFAR-10/MNIST files live (config key data_root)")
    max_failures: int = opt(2, "--max-failures", type=int, help="retries per trial (FailureConfig)")
    scheduler: str | None = opt(None, "--scheduler", choices=["asha", "none"],
                                help="trial scheduler (default: the experiment's)")
    search: str = opt("random", "--search", help="search algorithm: random (Tune's), hyperopt, optuna")
    samples: dict[str, Any] = opt(dict, "--sample", parse=_samples, action="append", metavar="KEY=DOMAIN",
                                  help="search a key: loguniform(LO,HI), uniform(LO,HI), randint(LO,HI), choice(V1,V2,...)")
    grace_period: int | None = opt(None, "--grace-period", type=int,
                                   help="ASHA: epochs before the first stop (default: the experiment's)")
    reduction_factor: int | None = opt(None, "--reduction-factor", type=int,
                                       help="ASHA: keep 1/N of the trials at each rung")
    ship_code: bool = opt(True, "--no-ship-code", action="store_false",
                          help="with --address: use the project installed on the nodes instead of shipping this dir")
    quiet: bool = False
    verbose: bool = opt(False, "--verbose", action="store_true",
                        help="Ray's, Tune's and MLflow's own logs on the console (default: <storage>/<sweep>/driver.log)")
    pack: int = opt(1, "--pack", type=int, metavar="K",
                    help="train up to K trials of one architecture as one vmapped model per Tune trial "
                         "(README, Performance; conv models stay unpacked on CPU)")
    allow_large: bool = opt(False, "--yes", "--allow-large", action="store_true",
                            help="run a sweep of more than 10,000 trials (refused otherwise)")
    until_decided: bool = opt(False, "--until-decided", action="store_true",
                              help="add seeds, wave by wave, to cells whose hypotheses are still open "
                                   "(cluster/flow/adaptive.py)")
    max_seeds: int | None = opt(None, "--max-seeds", type=int, metavar="N",
                                help="--until-decided: at most N seeds per cell (default 12)")
    target_halfwidth: float | None = opt(None, "--target-halfwidth", type=finite_float, metavar="H",
                                         help="--until-decided: also add seeds while a cell's accuracy interval is "
                                              "wider than ±H (e.g. 0.05)")
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


def _only(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """--only "a,b" (or, from cluster.api, a list of names) -> ("a", "b")."""
    items = (text or "").split(",") if isinstance(text, str) or text is None else list(text)
    return tuple(str(x).strip() for x in items if str(x).strip())


@dataclass
class StudyOptions:
    """Everything `sweep study` accepts, checked before Ray or MLflow start. Options it shares with
    `sweep run` (same field name) take their flag from RunOptions' declaration
    (cluster.flow.options.cli_fields): declared once."""

    study: str
    smoke: bool = False
    only: tuple[str, ...] = field(default=(), metadata=flag(
        "--only", parse=_only, help="comma-separated experiments of the study to run (default: all)"))
    name: str | None = field(default=None, metadata=flag(
        "--name", help="study name on disk (default study-NAME[-smoke]); the same name resumes"))
    until_decided: bool = False
    max_seeds: int | None = None
    target_halfwidth: float | None = None
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI
    storage_path: str | None = None
    address: str | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None
    data_root: str | None = None
    out: str | None = field(default=None, metadata=flag("--out", help="study report folder (default reports/<study name>)"))
    quiet: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        study = get_study(self.study)
        unknown = [e for e in self.only if e not in study.experiments]
        if unknown:
            raise ConfigError(f"--only names experiments not in study {study.name!r}: {unknown}; "
                              f"the study has {', '.join(study.experiments)}")
        if self.name is not None and not NAME_RE.match(self.name):
            raise ConfigError(f"--name {self.name!r} must be letters, digits, '_', '.', '-' (max 128 chars)")
        if not self.until_decided and (self.max_seeds is not None or self.target_halfwidth is not None):
            raise ConfigError("--max-seeds and --target-halfwidth apply to --until-decided only")

    @property
    def study_name(self) -> str:
        return self.name or f"study-{self.study}" + ("-smoke" if self.smoke else "")


def cli_fields(cls) -> list[tuple[dataclasses.Field, dict[str, Any]]]:
    """(field, its flag declaration) for every field of `cls` with a flag; a field that declares none but
    shares its name with a RunOptions field borrows RunOptions' declaration (one declaration per option)."""
    run = {f.name: f.metadata["cli"] for f in dataclasses.fields(RunOptions) if "cli" in f.metadata}
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("cli") or (run.get(f.name) if cls is not RunOptions else None)
        if spec is not None:
            out.append((f, spec))
    return out


def add_flags(parser: argparse.ArgumentParser, cls) -> None:
    """Add one flag per declared option of `cls` to `parser` (defaults: the dataclass's)."""
    for f, spec in cli_fields(cls):
        kwargs = dict(spec["kwargs"])
        if spec["parse"] is None and f.default is not dataclasses.MISSING and kwargs.get("action") is None:
            kwargs["default"] = f.default
        parser.add_argument(*spec["names"], dest=f.name, **kwargs)


def flag_values(cls, args: argparse.Namespace) -> dict[str, Any]:
    """{field: value as given on the command line} for every declared option of `cls` (unparsed:
    `from_kwargs` parses each as declared)."""
    given = vars(args)
    return {f.name: given[f.name] for f, _ in cli_fields(cls)}


def _aliases(cls) -> dict[str, str]:
    """Keyword -> field: each declared option also answers to its flag's name ("set" for --set,
    "yes" for --yes), except a flag that negates its field (--no-ship-code)."""
    out = {}
    for f, spec in cli_fields(cls):
        if spec["kwargs"].get("action") == "store_false":
            continue
        for flag_name in spec["names"]:
            out.setdefault(flag_name.lstrip("-").replace("-", "_"), f.name)
    return out


def from_kwargs(cls, values: dict[str, Any], **fixed: Any):
    """`cls` built from keyword arguments (cluster.api; the CLI through `from_args`): each key a field of
    `cls` or its flag's name (`set=` for `sets`); a declared option's value goes through its declared
    parse (which takes the command line's form, e.g. ["lr=0.1"], or the parsed one, {"lr": 0.1});
    then `cls`'s own checks. `fixed` are fields set by the caller, taken as they are.

    Raises:
        ConfigError: an unknown keyword (close matches named), an option given twice, or a bad value.
    """
    import difflib

    fields = {f.name: f for f in dataclasses.fields(cls)}
    aliases = _aliases(cls)
    parsers = {f.name: spec["parse"] for f, spec in cli_fields(cls)}
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {name: name for name in fixed}
    for key, value in values.items():
        name = key if key in fields else aliases.get(key)
        if name is None:
            known = sorted(set(fields) | set(aliases))
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; options: {', '.join(known)}"
            raise ConfigError(f"unknown option {key!r} for {cls.__name__}{hint}")
        if name in given_as:
            raise ConfigError(f"option {name!r} given twice (as {given_as[name]!r} and as {key!r}); give it once")
        given_as[name] = key
        parse = parsers.get(name)
        out[name] = parse(value) if parse is not None else value
    return cls(**out, **fixed)


def from_args(cls, args: argparse.Namespace, **values: Any):
    """`cls` built from parsed arguments (each declared option parsed as declared) plus `values`."""
    return from_kwargs(cls, flag_values(cls, args), **values)
