"""The Tune side of `sweep run --until-decided`: a Searcher over cluster.flow.adaptive.Replicates,
the callback that tags each replicate's wave, and the Tuner that runs them."""
from __future__ import annotations

import json
import logging

from cluster.flow.adaptive import (OTHER_KEY, AdaptiveSettings, Replicates, grid_cells, other_runs, other_sides,
                                   settings_from)
from core import store_schema as SS

log = logging.getLogger(__name__)


def _searcher_base():
    from ray.tune.search import Searcher

    return Searcher


class AdaptiveSearcher(_searcher_base()):
    """A Tune Searcher over `Replicates`; logs each look to the parent run (tags and looks.json)."""

    def __init__(self, replicates: Replicates, tracking_uri: str | None = None, parent_run_id: str | None = None,
                 quiet: bool = False):
        super().__init__(metric=None, mode=None)
        self.rep, self.uri, self.parent, self.quiet = replicates, tracking_uri, parent_run_id, quiet
        self._logged = len(replicates.looks)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space is the plan's cells, fixed at construction

    def suggest(self, trial_id: str):
        out = self.rep.next(trial_id)
        self._report_looks()
        return out

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.rep.complete(trial_id, result, error)

    def _report_looks(self) -> None:
        while self._logged < len(self.rep.looks):
            look = self.rep.looks[self._logged]
            self._logged += 1
            if not self.quiet:
                nxt = (f"wave {look.wave + 1}: more seeds for {look.cells_next} cell(s)" if look.cells_next
                       else "stopping")
                print(f"look {look.wave + 1}/{self.rep.settings.max_looks}: {len(look.decided)} decided, "
                      f"{len(look.open)} open; {nxt}" + (f" ({look.note})" if look.note else ""), flush=True)
            self._log_parent()

    def _log_parent(self) -> None:
        if not (self.uri and self.parent):
            return
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            s = self.rep.summary()
            client.set_tag(self.parent, SS.TAG_LOOKS_TAKEN, str(s["looks_taken"]))
            outcome = "every hypothesis decided" if not s["open"] else (
                "open: " + "; ".join(s["open"]))
            if self.rep.finished:
                client.set_tag(self.parent, SS.TAG_ADAPTIVE_OUTCOME, outcome[:5000])
            client.log_text(self.parent, json.dumps([vars(x) for x in self.rep.looks], indent=2), SS.ART_LOOKS)
        except Exception as exc:  # bookkeeping must never take the sweep down
            log.warning("could not log the adaptive look to the parent run: %s", exc)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump(self.rep.state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.rep.load_state(json.load(f))
        self._logged = len(self.rep.looks)

    def get_state(self) -> dict:
        return self.rep.state()

    def set_state(self, state: dict) -> None:
        self.rep.load_state(state)


def _callback_base():
    from ray import tune

    return tune.Callback


class WaveTagger(_callback_base()):
    """Tags each replicate's MLflow child run with its `wave` (derived from its seed's position)."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, seeds: list[int],
                 settings: AdaptiveSettings):
        self.uri, self.experiment_id, self.parent = tracking_uri, experiment_id, parent_run_id
        self.first_seed, self.settings = seeds[0], settings

    def _tag(self, trial) -> None:
        from cluster.tuner.callbacks import _run_id

        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            rid = _run_id(client, trial, self.experiment_id, self.parent)
            seed = trial.config.get("seed")
            if rid and isinstance(seed, int):
                client.set_tag(rid, SS.TAG_WAVE, str(self.settings.wave_of(seed - self.first_seed)))
        except Exception as exc:
            log.warning("could not tag the wave of trial %s: %s", trial.trial_id, exc)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._tag(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._tag(trial)


def train_sides(config: dict, tracking=None, others=None, modules: tuple = ()) -> None:
    """The trial function of an adaptive sweep in a study whose claims compare with another
    experiment's sweep: a trial carrying OTHER_KEY is that experiment's cell and is logged under its
    sweep's parent run (others[name]); the key is removed before training (nothing else sees it)."""
    from trainables.trainable import train

    name = config.get(OTHER_KEY)
    if name is not None:
        if name not in (others or {}):
            from core.errors import ConfigError

            raise ConfigError(f"this trial belongs to the study's sweep of {name!r}, which this sweep cannot "
                              "find (its sweep.json is gone): nowhere to record it")
        config = {k: v for k, v in config.items() if k != OTHER_KEY}
        tracking = others[name]
    return train(config, tracking=tracking, modules=modules)


def other_tracking(record) -> dict:
    """Where the trials of the other side are recorded: experiment -> TrackingInfo of the study's own
    sweep of it ("<study>.<experiment>"), for each `other_experiment` of this sweep's claims; {} outside
    a study. Read from the sweep records, so `sweep resume` finds them as the first run did."""
    from types import SimpleNamespace

    from cluster.flow.adaptive import study_of
    from cluster.folder.record import find_sweep
    from core.errors import ConfigError
    from search_spaces import get_experiment

    try:
        exp = get_experiment(record.experiment)
    except ConfigError:  # a user experiment not loaded here: no claims to compare
        return {}
    study = study_of(SimpleNamespace(experiment=exp), record.name)
    out = {}
    for name in sorted({h.other_experiment for h in exp.hypotheses if h.other_experiment} if study else ()):
        try:
            out[name] = find_sweep(f"{study}.{name}", record.storage_path).tracking_info()
        except ConfigError:
            continue
    return out


def sides_trainable(record, others: dict):
    """`train_sides` with this sweep's tracking info, the other sweeps' and the Ray resources."""
    from ray import tune

    from cluster.flow.user_code import worker_refs

    return tune.with_resources(tune.with_parameters(train_sides, tracking=record.tracking_info(), others=others,
                                                    modules=worker_refs(record)), record.resources)


def make_tuner(plan, opts, record, trainable, run_config):
    """The Tuner of an adaptive sweep: AdaptiveSearcher, num_samples = the most trials possible, reused actors."""
    from ray import tune

    settings = settings_from(opts, plan)
    keys = [k for k in plan.swept_keys if k != "pairing"]
    others = other_runs(plan, record.tracking_uri, opts.name)
    # the other side's cells; their trials are recorded in the study's own sweep of that experiment
    # (the trainable, cluster.tuner.assemble.trainable -> sides_trainable, knows where)
    sides, _ = other_sides(plan, opts.name, record.storage_path, others)
    rep = Replicates(grid_cells(plan), plan.seeds, plan.experiment.hypotheses, keys, settings, others, sides)
    searcher = AdaptiveSearcher(rep, record.tracking_uri, record.parent_run_id, opts.quiet)
    import ray

    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(record.resources.get("cpu", 1), 1)))
    most = (len(rep.cells) + len(rep.other_cells)) * settings.max_seeds
    for cb in run_config.callbacks or []:
        if hasattr(cb, "total"):  # ProgressDisplay: count against the most trials the sweep may run
            cb.total = most
    run_config.callbacks = list(run_config.callbacks or []) + [
        WaveTagger(record.tracking_uri, record.experiment_id, record.parent_run_id, plan.seeds, settings)]
    # num_samples bounds the trials (every cell at --max-seeds), plus one: Tune stops asking the
    # searcher once num_samples trials exist, and the last look (after the last wave, which may fill
    # every cell) happens in that extra `suggest`; the searcher answers it FINISHED, never a trial.
    tune_config = tune.TuneConfig(num_samples=most + 1, search_alg=searcher,
                                  reuse_actors=True,
                                  max_concurrent_trials=opts.max_concurrent or slots)
    if not opts.quiet:
        print(f"until decided: {settings.rule}", flush=True)
    return tune.Tuner(trainable, param_space={}, tune_config=tune_config, run_config=run_config)
