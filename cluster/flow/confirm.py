"""`sweep confirm SEARCH`: rerun a search's best configuration per model with fresh seeds.

The single best trial of a search is an optimistic estimate (the maximum of many noisy draws),
so its configuration is rerun as a plain grid sweep over N seeds the search never used, and the
results table reports mean ± 95% CI. The confirmation sweep logs into the search's MLflow
experiment; its parent run carries `confirms` (the search's name) and the search's parent run
gets `confirmed_by` (the confirmation sweep's name, comma-separated with --top > 1).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core import store_schema as S

# Trial params that are not part of the configuration to rerun: replaced (seed, pairing),
# set by the runner (threads), or test-only (fail_at_epoch).
NOT_CONFIG = ("seed", "pairing", "threads", "fail_at_epoch", "trial_id")


@dataclass(frozen=True)
class Best:
    """One configuration chosen from a search.

    Attributes:
        pairing: "model/dataset".
        rank: 1 = best of its pairing.
        run_id: the search trial it comes from.
        value: that trial's final metric (the optimistic estimate).
        config: every config key of the trial except NOT_CONFIG (what the rerun uses).
        searched: the values of the search's swept keys (for display).
    """

    pairing: str
    rank: int
    run_id: str
    value: float
    config: dict[str, Any]
    searched: dict[str, Any]


def pick_best(trials: list[dict[str, Any]], metric: str, mode: str, top: int = 1,
              swept_keys: tuple[str, ...] = ()) -> list[Best]:
    """The `top` best distinct configurations per pairing among completed trials.

    Args:
        trials: one dict per completed trial: run_id, params (typed), metrics.
        metric, mode: what to rank by ("max" or "min").
        top: configurations per pairing.
        swept_keys: keys shown in `Best.searched`.

    Ties (common with accuracy on 150 validation images) go to the lower final val_loss.

    Raises:
        ConfigError: no completed trial has `metric`.
    """
    sign = -1.0 if mode == "max" else 1.0

    def order(t):
        loss = t["metrics"].get("val_loss", math.inf) if metric != "val_loss" else 0.0
        return sign * t["metrics"][metric], loss

    scored = sorted((t for t in trials if _finite(t["metrics"].get(metric))), key=order)
    if not scored:
        raise ConfigError(f"no completed trial logged {metric!r}; nothing to confirm")
    out: list[Best] = []
    seen: dict[str, list[dict]] = {}
    for t in scored:
        pairing = t["params"]["pairing"]
        config = _applied({k: v for k, v in t["params"].items() if k not in NOT_CONFIG}, pairing)
        taken = seen.setdefault(pairing, [])
        if len(taken) >= top or config in taken:
            continue
        taken.append(config)
        searched = {k: t["params"][k] for k in swept_keys if k != "pairing" and k in t["params"]}
        out.append(Best(pairing, len(taken), t["run_id"], float(t["metrics"][metric]), config, searched))
    return out


def _applied(config: dict[str, Any], pairing: str) -> dict[str, Any]:
    """The keys of a logged config that its pairing uses: stores written before strict keys also
    logged settings a pairing ignored (e.g. kernel_size on an MLP), which a rerun would refuse."""
    from trainables.spec import resolve_config

    try:
        unused = resolve_config({**config, "pairing": pairing}, strict=False).unused
    except Exception:  # an invalid old value: let the confirmation's own plan report it
        return config
    return {k: v for k, v in config.items() if k not in unused}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def confirmation_experiment(search_experiment: str, search: str, bests: list[Best], seeds: int,
                            seed_start: int):
    """An in-memory Experiment: the pairings of `bests`, each with its configuration, as a grid over seeds.

    Keys with the same value in every configuration become `fixed`; the rest are per pairing.
    """
    from search_spaces.experiment import Experiment

    pairings = tuple(b.pairing for b in bests)
    if len(set(pairings)) != len(pairings):
        raise ConfigError("one confirmation sweep takes one configuration per pairing")
    keys = set().union(*(b.config for b in bests))
    common = {k: bests[0].config[k] for k in sorted(keys)
              if all(k in b.config and b.config[k] == bests[0].config[k] for b in bests)}
    per_pairing = {b.pairing: {k: v for k, v in b.config.items() if k not in common} for b in bests}
    return Experiment(
        name=search_experiment,
        description=f"Confirmation of search {search}: its best configuration per model, rerun with "
                    f"{seeds} fresh seeds",
        pairings=pairings, fixed=common, per_pairing={p: v for p, v in per_pairing.items() if v},
        seeds=seeds, seed_start=seed_start, plots=("leaderboard", "curves", "kernels"))


@dataclass(frozen=True)
class SearchRecord:
    """What `sweep confirm` reads of a search from the tracking store.

    Attributes:
        parent: the search's parent run (mlflow Run).
        client: the MlflowClient of the store.
        experiment: the search's experiment name.
        metric, mode: what the search optimised ("max" or "min").
        trials: one dict per completed trial: run_id, params (typed), metrics.
        seeds: every seed a trial of the search used (completed or not).
        pairings: every pairing a trial of the search ran.
        swept_keys: the keys the search swept (shown with each best configuration).
    """

    parent: Any
    client: Any
    experiment: str
    metric: str
    mode: str
    trials: tuple[dict[str, Any], ...]
    seeds: tuple[int, ...]
    pairings: tuple[str, ...]
    swept_keys: tuple[str, ...]


def load_search(tracking_uri: str, search: str) -> SearchRecord:
    """The search's parent run, metric/mode, swept keys, completed trials and every seed it used.

    The user modules the search loaded (its parent run's tag `user_modules`) are loaded again,
    hash-checked, before anything of its experiment is looked up.

    Raises:
        ConfigError: no sweep of that name in the store, it ran no completed trial, or one of its
            user modules is gone or changed.
    """
    from mlflow.tracking import MlflowClient

    from analysis.load import find_parent, parse_value

    from cluster.flow import user_code

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = find_parent(client, sweep=search)
    tags = parent.data.tags
    user_code.reload_tagged(tags, search)  # a user experiment's modules, as the search ran them (changed: refused)
    metric, mode = _objective(tracking_uri, parent.info.run_id, tags.get(S.TAG_EXPERIMENT, ""))
    flt = S.children_filter(parent.info.run_id)
    runs, token = [], None
    while True:
        page = client.search_runs([parent.info.experiment_id], flt, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    trials = [{"run_id": r.info.run_id, "params": {k: parse_value(v) for k, v in r.data.params.items()},
               "metrics": dict(r.data.metrics)}
              for r in runs if r.data.tags.get(S.TAG_STATUS_REASON) == S.STATUS_COMPLETED]
    if not trials:
        raise ConfigError(f"search {search!r} has no completed trials ({len(runs)} trials in all); "
                          "nothing to confirm")
    seeds = [int(s) for r in runs for s in [parse_value(r.data.params.get(S.PARAM_SEED, r.data.tags.get(S.TAG_SEED)))]
             if isinstance(s, int)]
    return SearchRecord(
        parent=parent, client=client, metric=metric, mode=mode, trials=tuple(trials), seeds=tuple(seeds),
        pairings=tuple(sorted({r.data.tags.get(S.TAG_PAIRING, "") for r in runs} - {""})),
        experiment=tags.get(S.TAG_EXPERIMENT) or client.get_experiment(parent.info.experiment_id).name,
        swept_keys=tuple(json.loads(tags.get(S.TAG_SWEPT_KEYS, "[]"))))


def _objective(tracking_uri: str, run_id: str, experiment: str) -> tuple[str, str]:
    """metric/mode from the stored declaration, else the registry entry, else the default."""
    import tempfile

    import mlflow.artifacts

    from search_spaces.experiment import objective

    try:  # the declaration stored with the sweep says what the search optimised
        with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=S.ART_DECLARATION,
                                                       dst_path=tmp, tracking_uri=tracking_uri)
            search = json.loads(Path(path).read_text()).get("search") or {}
    except Exception:  # missing artifact: MlflowException/OSError depending on the store
        search = {}
    if search:
        return objective(search)
    try:
        from search_spaces import get_experiment

        return objective(get_experiment(experiment).search)
    except ConfigError:
        return objective(None)


def _free_name(base: str, storage: str, client) -> str:
    from cluster.infra.tracking import find_parent_run

    name, i = base, 1
    while ("://" not in storage and (Path(storage) / name).exists()) or find_parent_run(client, name):
        i += 1
        name = f"{base}-{i}"
    return name


def confirm_sweep(search: str, seeds: int = 5, top: int = 1, tracking_uri: str = "sqlite:///mlflow.db",
                  storage_path: str | None = None, name: str | None = None, **run_options) -> int:
    """Rerun the best configuration(s) of search `search` with `seeds` fresh seeds.

    Args:
        search: the search sweep's name.
        seeds: replicates per configuration (>= 2 for a confidence interval).
        top: configurations per pairing; rank k runs as its own sweep `<name>-top<k>`.
        tracking_uri: the store holding the search (the confirmation logs there too).
        storage_path: Tune storage (default: the search's, when it is a local folder that exists).
        name: confirmation sweep name (default `<search>-confirm`).
        run_options: other RunOptions fields (address, max_concurrent, cpus_per_trial, quiet, ...).

    Returns:
        The worst exit code of the confirmation sweeps (0 ok, 1 some trials failed).

    Raises:
        ConfigError: bad --seeds/--top, unknown search, or no completed trial.
    """
    from cluster.infra import tracking
    from cluster.flow.options import RunOptions
    from cluster.flow.run import run_sweep
    from cluster.folder.storage import resolve_storage

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    uri = tracking.check_tracking_uri(tracking_uri)
    s = load_search(uri, search)
    parent, client = s.parent, s.client
    bests = pick_best(list(s.trials), s.metric, s.mode, top, s.swept_keys)
    for pairing in sorted(set(s.pairings) - {b.pairing for b in bests}):
        print(f"note: {pairing} has no completed trial in {search}; it is not confirmed", flush=True)
    seed_start = max(s.seeds, default=9) + 1  # never a seed the search used
    if storage_path is None:
        stored = parent.data.tags.get(S.TAG_STORAGE_PATH, "")
        storage_path = stored if stored and "://" not in stored and Path(stored).is_dir() else None
    storage = resolve_storage(storage_path)
    ranks = sorted({b.rank for b in bests})
    names, code = [], 0
    for rank in ranks:
        group = [b for b in bests if b.rank == rank]
        base = (name or f"{search}-confirm") + (f"-top{rank}" if len(ranks) > 1 else "")
        sweep = _free_name(base, storage, client) if name is None else base
        if name is not None and tracking.find_parent_run(client, sweep) is not None:
            raise ConfigError(f"a sweep named {sweep!r} is already in the tracking store; pick another --name")
        exp = confirmation_experiment(s.experiment, search, group, seeds, seed_start)
        tags = {S.TAG_CONFIRMS: search, S.TAG_CONFIRMS_RUN_ID: parent.info.run_id, S.TAG_CONFIRM_RANK: str(rank),
                S.TAG_CONFIRM_METRIC: s.metric, S.TAG_CONFIRM_MODE: s.mode, S.TAG_KIND: S.KIND_CONFIRMATION,
                S.TAG_SEARCH_BEST: json.dumps({b.pairing: {"value": b.value, "run_id": b.run_id,
                                                       "searched": b.searched} for b in group}, default=str)}
        opts = RunOptions(experiment=s.experiment, name=sweep, tracking_uri=uri, storage_path=storage,
                          num_samples=1, **run_options)
        if not opts.quiet:
            for b in group:
                print(f"confirming {b.pairing} (rank {rank}, search {s.metric}={b.value:.4g}, run {b.run_id}): "
                      + ", ".join(f"{k}={v}" for k, v in b.searched.items()), flush=True)
        try:
            code = max(code, run_sweep(opts, definition=exp, tags=tags))
        finally:
            if tracking.find_parent_run(client, sweep) is not None:  # it started: link it even if interrupted
                names.append(sweep)
                client.set_tag(parent.info.run_id, S.TAG_CONFIRMED_BY, ",".join(names))
    if not run_options.get("quiet"):
        from analysis.confirmation import confirmation_table, format_confirmation

        print(f"\nSearch {search}: best trial vs its confirmation over {seeds} fresh seeds "
              f"({s.metric}, mean ± 95% CI):")
        print(format_confirmation(confirmation_table(uri, search)))
    return code
