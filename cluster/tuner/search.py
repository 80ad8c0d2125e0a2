"""Schedulers, search algorithms and command-line search spaces for `sweep run`.

Tune's own random search (with grid axes enumerated) needs nothing extra. HyperOpt and Optuna
are used only when their package is importable; both need a single replicate seed, and grid
axes (pairing included) become categorical choices the searcher picks, so `--num-samples` is
then the total number of trials. Per-pairing domains are conditional on the pairing: Optuna
expresses that with a define-by-run space, HyperOpt cannot and is refused for such plans.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import logging
import re
from typing import Any

from cluster.planning.plan import Plan, to_tune_space
from cluster.planning.values import command_items, parse_assignment, parse_value
from search_spaces.domains import Choice, LogUniform, RandInt, Uniform, is_domain
from search_spaces.experiment import Experiment, objective
from core.errors import ConfigError
from trainables.spec import check_keys

log = logging.getLogger(__name__)

SCHEDULERS = ("asha", "none")
SEARCHERS = ("random", "hyperopt", "optuna")
MODEL_BASED = ("hyperopt", "optuna")
DOMAINS = {"loguniform": LogUniform, "uniform": Uniform, "randint": RandInt, "choice": Choice}
_CALL = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.S)


def parse_domain(text: str) -> Any:
    """'loguniform(1e-4, 1e-1)', 'uniform(0, 0.5)', 'randint(1, 5)', 'choice(3, 5, 7)' -> a domain.

    Choice values may be any literal ('choice([50, 10], [100, 10])') or bare words
    ('choice(sgd, adam)').

    Raises:
        ConfigError: unknown domain name, wrong number of bounds, or an impossible space
            (lower bound above upper bound, empty choice).
    """
    m = _CALL.match(text)
    if not m or m.group(1).lower() not in DOMAINS:
        raise ConfigError(f"--sample value {text!r} is not a domain; use one of "
                          "loguniform(LOW, HIGH), uniform(LOW, HIGH), randint(LOW, HIGH), choice(V1, V2, ...)")
    name, body = m.group(1).lower(), m.group(2).strip()
    try:
        args = ast.literal_eval(f"({body},)") if body else ()
    except (ValueError, SyntaxError):
        args = tuple(parse_value(v.strip()) for v in body.split(",") if v.strip())
    if name == "choice":
        return Choice(tuple(tuple(a) if isinstance(a, list) else a for a in args))
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"{name}(...) needs two numeric bounds (LOW, HIGH), got {text!r}")
    if name == "randint" and not all(isinstance(a, int) for a in args):
        raise ConfigError(f"randint(...) needs integer bounds, got {text!r}")
    return DOMAINS[name](*args)


def parse_samples(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """'--sample lr=loguniform(1e-4,1e-1)' (repeatable) -> {"lr": LogUniform(1e-4, 1e-1)}. A mapping
    (cluster.api: sample={"lr": "loguniform(1e-4,1e-1)"}) holds domain texts or domains, same checks."""
    if isinstance(items, dict):
        pairs = [(str(k).strip(), v) for k, v in items.items()]
    else:
        pairs = []
        for item in command_items(items, "--sample"):
            key, _, text = item.partition("=")
            parse_assignment(item, "--sample")  # same "key=value" check and message as --set
            pairs.append((key.strip(), text))
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in ("pairing", "seed"):
            raise ConfigError(f"--sample {key} is not allowed: {key!r} is set by the experiment and --seeds")
        if isinstance(value, str):
            value = parse_domain(value)
        elif not is_domain(value):
            raise ConfigError(f"--sample {key}: {value!r} is not a domain; use one of loguniform(LOW, HIGH), "
                              "uniform(LOW, HIGH), randint(LOW, HIGH), choice(V1, V2, ...)")
        out[key] = value
    check_keys(out)
    return out


def apply_samples(exp: Experiment, samples: dict[str, Any]) -> Experiment:
    """The experiment with `samples` as sampled axes (replacing fixed/grid/per-pairing values of those keys)."""
    if not samples:
        return exp
    per_pairing = {p: {k: v for k, v in vals.items() if k not in samples} for p, vals in exp.per_pairing.items()}
    return dataclasses.replace(
        exp, fixed={k: v for k, v in exp.fixed.items() if k not in samples},
        axes={**exp.axes, **samples}, per_pairing=per_pairing)


def _values(v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    return v.extremes() if is_domain(v) else [v]


def max_epochs(plan: Plan) -> int:
    """The longest epoch budget any trial of the plan can have (ASHA's max_t), from the plan's specs."""
    top = 1
    for cfg, spec in zip(plan.cells(), plan.specs):
        candidates = [spec.train.epochs]
        candidates += _values(plan.axes.get("epochs", []))
        candidates += _values(plan.per_pairing.get(cfg["pairing"], {}).get("epochs", []))
        top = max([top] + [int(c) for c in candidates if isinstance(c, (int, float))])
    return top


def asha_settings(plan: Plan, opts) -> dict[str, int] | None:
    """ASHA's max_t, grace period and reduction factor for this plan, or None without ASHA.

    The grace period is the CLI's, else the experiment's Search, else one twentieth of the
    budget (one default report interval). A grace period that reaches the budget would never
    stop anything (e.g. --smoke), so it then shrinks to a quarter of the budget.
    """
    if check_options(opts, plan)[0] != "asha":
        return None
    search = plan.experiment.search
    max_t = max_epochs(plan)
    grace = opts.grace_period or (search.grace_period if search else max(1, max_t // 20))
    rf = opts.reduction_factor or (search.reduction_factor if search else 3)
    if grace >= max_t:
        shrunk = max(1, max_t // 4)
        log.warning("ASHA grace period %d >= the %d-epoch budget; using %d", grace, max_t, shrunk)
        grace = shrunk
    return {"max_t": max_t, "grace_period": grace, "reduction_factor": rf}


def make_asha(settings: dict[str, int], pairings: int = 1):
    """ASHA over epochs (time_attr="epoch", the key every trial report carries); with several
    pairings, one ASHA per pairing (cluster.tuner.schedulers.PerPairingASHA)."""
    if pairings > 1:
        from cluster.tuner.schedulers import PerPairingASHA

        return PerPairingASHA(time_attr="epoch", **settings)
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="epoch", **settings)


def scheduler_of(opts, plan: Plan | None = None) -> str:
    """The scheduler a sweep runs: --scheduler, else its experiment's Search, else "none"."""
    search = plan.experiment.search if plan is not None else None
    return opts.scheduler or (search.scheduler if search is not None else None) or "none"


def check_options(opts, plan: Plan | None = None) -> tuple[str, str]:
    """(scheduler, searcher) names from RunOptions (the scheduler resolved against `plan`'s
    experiment), checked; raises ConfigError."""
    scheduler = scheduler_of(opts, plan)
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler {scheduler!r} not allowed; use one of {', '.join(SCHEDULERS)}")
    if opts.search not in SEARCHERS:
        raise ConfigError(f"--search {opts.search!r} not allowed; use one of {', '.join(SEARCHERS)}")
    grace, rf = opts.grace_period, opts.reduction_factor
    if (grace is not None or rf is not None) and scheduler != "asha":
        raise ConfigError("--grace-period/--reduction-factor apply to ASHA only; add --scheduler asha")
    if grace is not None and grace < 1:
        raise ConfigError(f"--grace-period must be >= 1 epoch, got {grace}")
    if rf is not None and rf < 2:
        raise ConfigError(f"--reduction-factor must be >= 2, got {rf}")
    if opts.search in MODEL_BASED and importlib.util.find_spec(opts.search) is None:
        raise ConfigError(f"--search {opts.search} needs the {opts.search!r} package, which is not installed: "
                          f"pip install {opts.search} (or pip install -e '.[search]'), or use --search random")
    return scheduler, opts.search


def _check_model_based(plan: Plan, searcher: str) -> None:
    if not plan.sampled:
        raise ConfigError(f"--search {searcher} needs sampled axes (a search experiment or --sample KEY=DOMAIN)")
    if len(plan.seeds) > 1:
        raise ConfigError(f"--search {searcher} searches with one seed; got --seeds {len(plan.seeds)} "
                          "(replicates belong to `sweep confirm`)")
    if plan.explicit:
        raise ConfigError(f"--search {searcher} cannot express a grid axis that only some pairings use "
                          "(its cells are enumerated); use --search random")
    if searcher == "hyperopt" and plan.per_pairing:
        raise ConfigError(f"--search hyperopt cannot express per-pairing settings ({sorted(plan.per_pairing)}); "
                          "use --search optuna (conditional spaces) or --search random")
    seen: dict[str, Any] = {}
    for vals in plan.per_pairing.values():
        for k, v in vals.items():
            if is_domain(v) and seen.setdefault(k, v) != v:
                raise ConfigError(f"--search {searcher} needs one domain per key; {k!r} differs between "
                                  "pairings: use --search random")


def check_search(plan: Plan, opts) -> None:
    """Every check of make_search, without Ray: run by the runner before Ray or MLflow start."""
    _, searcher = check_options(opts, plan)
    if searcher in MODEL_BASED:
        _check_model_based(plan, searcher)


def make_search(plan: Plan, opts):
    """Return (scheduler, search_alg, metric, mode) for the Tuner; all None for a plain grid.

    Raises:
        ConfigError: unknown scheduler/searcher, a searcher package that is not installed, or
            a plan the searcher cannot express.
    """
    scheduler_name, searcher = check_options(opts, plan)
    search = plan.experiment.search
    metric, mode = objective(search)
    settings = asha_settings(plan, opts) if scheduler_name == "asha" else None
    scheduler = make_asha(settings, len(plan.axes["pairing"])) if settings else None
    search_alg = None
    if searcher in MODEL_BASED:
        _check_model_based(plan, searcher)
        if searcher == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(space=OptunaSpace(plan), metric=metric, mode=mode, seed=plan.seeds[0])
        else:
            from ray.tune.search.hyperopt import HyperOptSearch

            search_alg = HyperOptSearch(random_state_seed=plan.seeds[0])
    if scheduler is None and search_alg is None and search is None:
        return None, None, None, None
    return scheduler, search_alg, metric, mode


def tune_space(plan: Plan, opts) -> dict[str, Any]:
    """The Tuner's param_space for the chosen searcher.

    random: `to_tune_space` (grid_search + Tune domains + per-pairing sample_from).
    hyperopt: grid axes become tune.choice, which HyperOpt converts itself.
    optuna: constants only; OptunaSpace suggests everything that varies.
    """
    if opts.search not in MODEL_BASED:
        return to_tune_space(plan)
    single = {k: v[0] for k, v in plan.axes.items() if isinstance(v, list) and len(v) == 1}
    if opts.search == "optuna":
        return {**plan.fixed, **single}
    from ray import tune

    space = to_tune_space(plan)
    for k, v in plan.axes.items():
        if isinstance(v, list) and len(v) > 1:
            space[k] = tune.choice(v)
    return space


class OptunaSpace:
    """Optuna define-by-run space: grid axes as categoricals, then the pairing's own settings."""

    def __init__(self, plan: Plan):
        self.grid = {k: v for k, v in plan.axes.items() if isinstance(v, list) and len(v) > 1}
        self.sampled = {k: v for k, v in plan.axes.items() if is_domain(v)}
        self.per_pairing = plan.per_pairing
        self.pairings = plan.axes["pairing"]

    def __call__(self, trial) -> dict[str, Any]:
        out = {k: Choice(tuple(v)).suggest(trial, k) for k, v in self.grid.items()}
        out.update({k: d.suggest(trial, k) for k, d in self.sampled.items()})
        pairing = out.get("pairing", self.pairings[0])
        out["pairing"] = pairing
        for k, v in self.per_pairing.get(pairing, {}).items():
            out[k] = v.suggest(trial, k) if is_domain(v) else v
        return out

