"""`sweep run` for analytic experiments (no trials): compute, print, and log one MLflow run."""
from __future__ import annotations

import dataclasses
import json
import time

from cluster.infra import tracking
from core import store_schema as S
from core.errors import ConfigError
from search_spaces.experiment import Experiment

# RunOptions fields an analytic experiment cannot apply (it trains nothing). Their flags and their
# "not given" values (the defaults) are read from RunOptions' one declaration (cluster/flow/options.py).
NOT_APPLICABLE = ("sets", "grids", "samples", "seeds", "num_samples", "pack", "until_decided", "max_seeds",
                  "target_halfwidth", "scheduler", "search", "grace_period", "reduction_factor")


def check_analytic_options(exp: Experiment, opts) -> None:
    """Refuse settings an analytic experiment cannot apply (promise 1: a setting nothing uses is an error).

    Raises:
        ConfigError: naming each such option.
    """
    values, fields = vars(opts), {f.name: f for f in dataclasses.fields(opts)}
    given = []
    for name in NOT_APPLICABLE:
        f = fields[name]
        unset = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if values[name] != unset:
            given.append(f.metadata["cli"]["names"][0])
    if given:
        raise ConfigError(f"experiment {exp.name!r} is analytic (computed, no trials): {', '.join(given)} cannot "
                          "apply to it; run it without them")


def run_analytic(exp: Experiment, tracking_uri: str, name: str | None = None) -> int:
    """Compute the MLP parameter explosion (SPEC 4.2) and log it as the sweep's parent run.

    Metric `mlp_params` is logged with step = input dimension, plus a JSON table artifact, so
    `sweep report` and the MLflow UI show the same numbers the terminal prints.
    """
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from analysis.param_explosion import HIDDEN, OUTPUTS, explosion_table

    uri = tracking.check_tracking_uri(tracking_uri)
    rows = explosion_table()
    width = max(len(r[0]) for r in rows)
    print(f"MLP {list(HIDDEN)} -> {OUTPUTS} parameters by input size (computed, no training):")
    for label, dim, params in rows:
        print(f"  {label:<{width}}  input {dim:>12,}  params {params:>15,}  ({params / 1e6:,.1f}M)")
    client = MlflowClient(tracking_uri=uri)
    exp_id = tracking.get_or_create_experiment(client, exp.name, uri)
    sweep = name or f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id = tracking.create_parent_run(client, exp_id, sweep, exp.name,
                                        {S.TAG_SWEPT_KEYS: json.dumps(["image_size"]), S.TAG_GIT_SHA: tracking.git_sha(),
                                         S.TAG_SEARCH: S.SEARCH_ANALYTIC, S.TAG_SMOKE: "false"},
                                        {S.PARAM_HIDDEN: list(HIDDEN), S.PARAM_OUTPUTS: OUTPUTS},
                                        {"name": exp.name, "description": exp.description, "plots": list(exp.plots),
                                         "analytic": True})
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(S.METRIC_MLP_PARAMS, float(p), now, int(d)) for _, d, p in rows])
    client.log_text(run_id, json.dumps([{"label": lbl, "input_dim": d, "params": p} for lbl, d, p in rows], indent=2),
                    S.ART_PARAM_EXPLOSION)
    client.set_terminated(run_id, "FINISHED")
    print(f"logged to MLflow run {run_id} (sweep {sweep}); report: sweep report {exp.name}")
    return 0
