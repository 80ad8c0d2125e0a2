"""Driver-side MLflow: check the tracking URI, create the sweep's parent run, close trial runs.

Trials create and fill their own child runs (trainables.tracking); the driver owns the parent run
and a Tune callback that marks runs stopped early by a scheduler or failed for good.
"""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trainables.errors import ConfigError
from trainables.tracking import param_value, redact

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str, timeout: float = 5.0) -> str:
    """Validate the scheme and reachability of a tracking URI before any run starts.

    Returns:
        The URI, with a relative sqlite path made absolute (trials may run in other directories).

    Raises:
        ConfigError: unsupported scheme, unwritable sqlite directory, or unreachable server.
    """
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in SCHEMES:
        raise ConfigError(f"tracking URI {uri!r} has unsupported scheme {scheme or '(none)'!r}; use one of "
                          f"{', '.join(s + '://' for s in SCHEMES)} (MLflow 3 has no file store: use sqlite:///mlflow.db)")
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"sqlite tracking URI must look like sqlite:///path/to/mlflow.db, got {uri!r}")
        db = Path(path).expanduser().resolve()
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise ConfigError(f"cannot write the MLflow database {db}: directory {db.parent} is missing or not writable")
        return f"sqlite:///{db}"
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (user-given server)
                if resp.status != 200:
                    raise ConfigError(f"MLflow server {uri} answered {resp.status} on /health")
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):  # basic-auth servers refuse /health without credentials
                raise ConfigError(f"MLflow server {uri} answered HTTP {exc.code} on /health") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConfigError(f"MLflow tracking server {uri} is unreachable ({getattr(exc, 'reason', exc)}); "
                              f"start one with `sweep server` or pass another --tracking-uri") from None
    return uri


def artifact_root_for(uri: str) -> str | None:
    """For a local sqlite store, artifacts live beside the database in ./mlartifacts."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


# The MLflow 3 UI opens an experiment on the page its kind names; without the tag it shows the GenAI
# "Overview / Traces" page, empty for these experiments. Tag and value as the UI (3.x) writes them.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def get_or_create_experiment(client, name: str, uri: str) -> str:
    """The experiment's id, created if missing; either way tagged to open on the runs table."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND_TAG not in (exp.tags or {}):  # a kind chosen in the UI is kept
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root_for(uri),
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def ui_url(experiment_id: str | None, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's page of an experiment's runs table (the UI routes with a #/ hash)."""
    return f"{base}/#/experiments/{experiment_id}/runs" if experiment_id else base


def ui_hint(uri: str, experiment_id: str | None) -> str:
    """How to browse a sweep's runs: the server's runs page, or `mlflow ui` on a local store first."""
    if uri.startswith(("http://", "https://")):
        return ui_url(experiment_id, uri.rstrip("/"))
    return f"mlflow ui --backend-store-uri {uri}  (then open {ui_url(experiment_id)})"


def create_parent_run(client, experiment_id: str, sweep: str, experiment: str, tags: dict[str, str],
                      params: dict[str, Any], declaration: dict[str, Any]) -> str:
    """Create the sweep's parent run with its tags, fixed params and declaration artifact."""
    from mlflow.entities import Param, RunTag

    run = client.create_run(experiment_id, run_name=sweep,
                            tags={"sweep": sweep, "experiment": experiment, "role": "sweep", **tags})
    items = [Param(k, param_value(v)[:6000]) for k, v in sorted(redact(params).items())]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i:i + 100])
    client.log_text(run.info.run_id, json.dumps(redact(declaration), indent=2, default=str), "sweep/experiment.json")
    client.log_batch(run.info.run_id, tags=[RunTag("mlflow.note.content", declaration.get("description", ""))])
    return run.info.run_id


def find_parent_run(client, sweep: str):
    """The parent run of sweep `sweep` in any experiment, or None."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.sweep = '{sweep}' and tags.role = 'sweep'", max_results=1)
    return runs[0] if runs else None
