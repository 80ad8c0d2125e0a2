"""User modules in the driver (cluster.flow.user_code, cluster.api, the CLI), without Ray: targets,
refusals with exit code 2, listing origins, entry points, what trials get, what a report notes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.cli import main
from cluster.flow import user_code
from core import registry, user_modules
from core.errors import ConfigError
from search_spaces import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_study.py"

pytestmark = pytest.mark.usefixtures("clean_user_registries")  # tests/conftest.py


@pytest.fixture
def study(tmp_path, monkeypatch) -> Path:
    shutil.copy(EXAMPLE, tmp_path / "my_study.py")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "my_study.py"


def test_targets_name_a_module_level_variable_or_an_experiment_name(study):
    assert user_code.experiment_name("my_study.py:TINY") == "tiny-vs-simple-cnn"
    assert user_code.experiment_name("my_study.py:tiny-vs-simple-cnn") == "tiny-vs-simple-cnn"
    assert user_code.experiment_name("edge-data-per-class") == "edge-data-per-class"
    with pytest.raises(ConfigError, match="names a module; add :NAME for one of its experiments"):
        user_code.experiment_name("my_study.py")
    assert user_modules.parse_target("acme.studies:X") == ("acme.studies", "X")
    assert user_modules.parse_target("edge-data-per-class") is None


@pytest.mark.parametrize("argv, message", [
    (["run", "my_study.py:TINY", "--set", "hidden_dims=3"], "'hidden_dims' is not used by any pairing of tiny-vs-simple-cnn"),
    (["run", "my_study.py:TINY", "--grid", "kernel_size=3,99"], "kernel_size must be in [1, 28], got 99"),
    (["run", "my_study.py:NOPE"], "my_study.py defines no experiment 'NOPE' at module level; its experiments: TINY"),
    (["run", "missing.py:TINY"], "user module 'missing.py' does not exist"),
    (["study", "my_study.py", "--only", "nope"], "--only names experiments not in study 'my_study'"),
])
def test_bad_input_with_a_user_module_exits_2_before_anything_runs(study, argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in study.parent.iterdir()) == ["my_study.py"]  # no store, no sweep folder


def test_a_clash_with_a_builtin_exits_2_naming_both(study, capsys):
    study.write_text(study.read_text().replace('name="tiny-vs-simple-cnn"', 'name="edge-data-per-class"'))
    assert main(["run", "my_study.py:TINY", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "experiment 'edge-data-per-class' from my_study.py clashes with the built-in experiment" in err
    assert EXPERIMENTS["edge-data-per-class"].pairings == ("simple_cnn/edges", "three_layer_mlp/edges")


def test_list_shows_where_each_entry_came_from(study, capsys):
    assert main(["list", "models", "-m", "my_study.py"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(x.startswith("tiny_cnn ") and x.endswith("(from my_study.py)") for x in lines)
    assert all("(from" not in x for x in lines if x.startswith("simple_cnn "))
    assert main(["list", "-m", "my_study.py"]) == 0
    assert any(x.startswith("tiny-vs-simple-cnn") and x.endswith("(from my_study.py)")
               for x in capsys.readouterr().out.splitlines())
    assert main(["list", "pairings", "-m", "my_study.py"]) == 0
    assert "tiny_cnn/edges" in capsys.readouterr().out


def test_study_of_a_file_runs_its_experiments_in_order(study):
    s = user_code.module_study("my_study.py")
    assert s.name == "my_study" and s.experiments == ("tiny-vs-simple-cnn",)
    assert registry.origin_of("study", "my_study") == "my_study.py"


def test_an_entry_point_plugin_is_loaded_with_its_origin(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "acme_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "studies.py").write_text(EXAMPLE.read_text().replace("tiny", "acme").replace("TINY", "ACME"))
    monkeypatch.syspath_prepend(str(tmp_path))
    from importlib.metadata import EntryPoint

    eps = [EntryPoint("acme", "acme_plugin.studies", user_code.ENTRY_POINT_GROUP)]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: eps if group == user_code.ENTRY_POINT_GROUP else [])
    assert user_code.experiment_name("acme-vs-simple-cnn") == "acme-vs-simple-cnn"  # found through the plugin
    assert registry.origin_of("model", "acme_cnn") == "acme_plugin.studies"
    (ref,) = [r for r in user_modules.loaded_refs() if r.name == "acme_plugin.studies"]
    assert ref.kind == user_modules.PACKAGE
    assert main(["list", "models"]) == 0
    assert "(from acme_plugin.studies)" in capsys.readouterr().out


def test_trials_get_the_refs_local_with_path_cluster_without(study):
    _, ref = user_modules.load_file(study)
    meta = {user_code.TAG_USER_MODULES: [ref.to_dict()], "options": {"address": None}}
    assert user_code.worker_refs(meta) == (ref,)
    meta["options"]["address"] = "127.0.0.1:6379"
    assert user_code.worker_refs(meta) == (ref.for_cluster(),) and user_code.worker_refs(meta)[0].path == ""
    assert user_code.ship_paths([ref]) == [str(study)]


def test_a_model_registered_from_the_notebook_itself_is_refused_with_the_reason():
    from torch import nn

    from search_spaces import Experiment, register_experiment
    from trainables.models import register_model

    @register_model("cell_model")
    class CellModel(nn.Module):
        PAIRS_WITH = {"edges": {}}

        def __init__(self, num_classes: int = 3):
            super().__init__()
            self.fc = nn.Linear(784, num_classes)

    assert registry.origin_of("model", "cell_model") == __name__
    exp = register_experiment(Experiment("cell-exp", "d", ("cell_model/edges",)))
    with pytest.raises(ConfigError, match="model 'cell_model' was registered from .*not from a module file: Ray's workers"):
        user_code.sweep_refs(exp)


def test_a_report_notes_a_changed_or_missing_module(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("X = 1\n")
    tag = json.dumps([user_modules.ModuleRef("m", user_modules.file_sha256(path), str(path)).to_dict()])
    assert user_modules.recorded_changes(tag) == []
    path.write_text("X = 2\n")
    (note,) = user_modules.recorded_changes(tag)
    assert note.startswith("user module m.py") and "changed since this sweep ran" in note
    path.unlink()
    assert "is gone since this sweep ran" in user_modules.recorded_changes(tag)[0]


def test_a_module_importing_pairings_first_keeps_its_own_pairings(tmp_path):
    """trainables.pairings imported for the first time by a user's register_model: the user's
    pairing must still be the user's (not taken for a built-in)."""
    shutil.copy(EXAMPLE, tmp_path / "my_study.py")
    code = ("from core import user_modules, registry\nimport trainables.models\n"
            "user_modules.load_file('my_study.py')\n"
            "print(registry.origin_of('pairing', 'tiny_cnn/edges'))\n"
            "user_modules.LOADED.clear()\nuser_modules.load_file('my_study.py')\nprint('reloaded')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["my_study.py", "reloaded"]


def test_api_progress_modes():
    from cluster import api

    assert api._with_defaults({}, "none", True)["quiet"] is True
    assert api._with_defaults({}, "console", True) | {"tracking_uri": "x"} == {
        "quiet": False, "progress": "console", "tracking_uri": "x"}
    assert api._with_defaults({}, "auto", True)["progress"] == "none"  # not in Jupyter: silent
    assert "progress" not in api._with_defaults({}, "auto", False)  # StudyOptions: quiet only
    with pytest.raises(ConfigError, match="progress='loud'"):
        api._with_defaults({}, "loud", True)


def _captured_run(monkeypatch):
    """cluster.flow.run.run_sweep replaced: the RunOptions it gets, no sweep."""
    import cluster.flow.run as run_module

    got = []

    def run_sweep(opts, definition=None, tags=None, on_start=None):
        got.append(opts)
        return 0

    monkeypatch.setattr(run_module, "run_sweep", run_sweep)
    return got


def test_the_api_and_the_cli_build_the_same_run_options(monkeypatch, tmp_path):
    """One declaration: `sweep run ... --set/--grid/--sample/--yes` and api.run(set=, grid=, sample=, yes=)
    (flag names or field names, parsed or command-line values) give equal RunOptions."""
    from cluster import api
    from cluster.cli import main

    got = _captured_run(monkeypatch)
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main(["run", "edge-data-per-class", "--smoke", "--seeds", "2", "--set", "lr=0.05", "--grid",
                 "epochs=1,2", "--sample", "weight_decay=loguniform(1e-5,1e-3)", "--yes", "--no-ship-code",
                 "--tracking-uri", uri]) == 0
    api.run("edge-data-per-class", smoke=True, seeds=2, set={"lr": 0.05}, grid={"epochs": [1, 2]},
            sample={"weight_decay": "loguniform(1e-5,1e-3)"}, yes=True, ship_code=False, tracking_uri=uri,
            progress="console")
    api.run("edge-data-per-class", smoke=True, seeds=2, sets=["lr=0.05"], grids=["epochs=1,2"],
            samples=["weight_decay=loguniform(1e-5,1e-3)"], allow_large=True, ship_code=False,
            tracking_uri=uri, progress="console")
    assert got[0] == got[1] == got[2]
    assert got[0].sets == {"lr": 0.05} and got[0].grids == {"epochs": [1, 2]} and got[0].allow_large


@pytest.mark.parametrize("kwargs, message", [
    ({"sedds": 3}, "unknown option 'sedds' for RunOptions; did you mean seeds"),
    ({"set": {"lr": 0.1}, "sets": {"lr": 0.2}}, "option 'sets' given twice"),
    ({"grid": {"lr": []}}, "--grid lr needs at least one value"),
    ({"sample": {"seed": "randint(1,3)"}}, "--sample seed is not allowed"),
    ({"sample": {"lr": 0.1}}, "--sample lr: 0.1 is not a domain"),
    ({"set": 5}, "--set takes"),
    ({"max_failures": -1}, "--max-failures must be >= 0"),
    ({"cpus_per_trial": float("nan")}, "cpus"),
])
def test_the_api_refuses_bad_options_before_anything_runs(monkeypatch, kwargs, message):
    from cluster import api

    got = _captured_run(monkeypatch)
    with pytest.raises(ConfigError, match=message):
        api.run("edge-data-per-class", **kwargs)
    assert got == []


def test_notebook_progress_stream_keeps_one_redrawn_line():
    from cluster.infra.notebook import DisplayStream

    s = DisplayStream()
    s.write("\r[ 1s] 1/4 trials done")
    s.write("\r[ 2s] 2/4 trials done")
    s.write("\r[ 3s] x: FAILED\n")
    s.write("\r[ 4s] 3/4 trials done")
    assert s.text() == "[ 3s] x: FAILED\n[ 4s] 3/4 trials done"
    s.flush()  # outside a notebook: no error


def test_resume_reloads_recorded_modules_and_refuses_a_changed_or_tampered_record(study):
    _, ref = user_modules.load_file(study)
    meta = {"name": "s1", user_code.TAG_USER_MODULES: [ref.to_dict()]}
    tags = {user_code.TAG_USER_MODULES: json.dumps([ref.to_dict()])}
    user_modules.LOADED.clear()
    registry.forget(ref.origin)
    assert user_code.reload_recorded(meta, tags) == [ref] and "tiny-vs-simple-cnn" in EXPERIMENTS
    other = user_modules.ModuleRef("my_study", "0" * 64, str(study))
    with pytest.raises(ConfigError, match="not the ones its MLflow parent run recorded"):
        user_code.reload_recorded(meta, {user_code.TAG_USER_MODULES: json.dumps([other.to_dict()])})
    study.write_text(study.read_text() + "\n# edited\n")
    user_modules.LOADED.clear()
    with pytest.raises(ConfigError, match="changed since the sweep recorded it"):
        user_code.reload_recorded(meta, tags)
    study.unlink()
    with pytest.raises(ConfigError, match="its user module .* is gone; put it back"):
        user_code.reload_recorded(meta, tags)


def test_an_experiment_object_passed_to_the_api_is_registered_as_the_callers():
    from search_spaces import Experiment

    exp = Experiment("object-exp", "d", ("simple_cnn/edges",))
    assert user_code.experiment_name(exp) == "object-exp"
    assert registry.origin_of("experiment", "object-exp") == __name__
    assert user_code.experiment_name(exp) == "object-exp"  # the same object again: no clash


def _search_store(tmp_path: Path, ref: user_modules.ModuleRef) -> str:
    """An MLflow store holding a finished search `s-search` of my_study.py's experiment (two completed
    trials of tiny_cnn/edges), its parent run tagged with the module as the driver tags it."""
    from mlflow.tracking import MlflowClient

    from core import store_schema as S

    uri = f"sqlite:///{tmp_path}/search.db"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("tiny-vs-simple-cnn")
    parent = client.create_run(exp_id, run_name="s-search", tags={
        S.TAG_ROLE: S.ROLE_SWEEP, S.TAG_SWEEP: "s-search", S.TAG_EXPERIMENT: "tiny-vs-simple-cnn",
        S.TAG_SWEPT_KEYS: json.dumps(["lr"]), S.TAG_USER_MODULES: json.dumps([ref.to_dict()])}).info.run_id
    for seed, lr, acc in ((0, 0.01, 0.6), (1, 0.05, 0.8)):
        run = client.create_run(exp_id, tags={S.TAG_PARENT_RUN_ID: parent, S.TAG_STATUS_REASON: S.STATUS_COMPLETED,
                                              S.TAG_PAIRING: "tiny_cnn/edges"}).info.run_id
        for key, value in {"pairing": "tiny_cnn/edges", "seed": seed, "lr": lr, "epochs": 3,
                           "data_per_class": 10}.items():
            client.log_param(run, key, value)
        client.log_metric(run, "val_acc", acc)
        client.set_terminated(run)
    client.set_terminated(parent)
    return uri


def test_confirm_of_a_user_search_loads_its_recorded_modules_and_refuses_a_changed_one(study, tmp_path, monkeypatch):
    """`sweep confirm` of a search of my_study.py's experiment, in a new process (nothing loaded): the search's
    modules come back from its parent run's tag (hash-checked), so its user pairing is planned; an edited
    module is refused with exit 2 before any sweep starts."""
    _, ref = user_modules.load_file(study)
    uri = _search_store(tmp_path, ref)
    user_modules.LOADED.clear()
    registry.forget(ref.origin)  # a fresh driver: tiny_cnn is unknown until the search's module is loaded
    sys.modules.pop(ref.name, None)
    assert "tiny-vs-simple-cnn" not in EXPERIMENTS
    got = _captured_run(monkeypatch)
    assert main(["confirm", "s-search", "--seeds", "2", "--tracking-uri", uri,
                 "--storage-path", str(tmp_path / "rr")]) == 0
    (opts,) = got
    assert opts.experiment == "tiny-vs-simple-cnn" and registry.origin_of("model", "tiny_cnn") == "my_study.py"
    assert user_code.sweep_refs(EXPERIMENTS["tiny-vs-simple-cnn"]) == [ref]  # recorded with the confirmation

    study.write_text(study.read_text() + "\n# edited after the search\n")
    user_modules.LOADED.clear()
    registry.forget(ref.origin)
    assert main(["confirm", "s-search", "--seeds", "2", "--tracking-uri", uri,
                 "--storage-path", str(tmp_path / "rr")]) == 2
    assert len(got) == 1
