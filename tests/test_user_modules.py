"""User modules: loading a user's file, registering its models/datasets/pairings/experiments with the
same checks as built-ins, refusing clashes, and the hash check trials make (core.user_modules)."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from core import registry, user_modules
from core.errors import ConfigError
from search_spaces import EXPERIMENTS
from trainables.models import MODELS
from trainables.pairings import PAIRINGS
from trainables.spec import resolve_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_study.py"

pytestmark = pytest.mark.usefixtures("clean_user_registries")  # tests/conftest.py


def write(folder: Path, name: str, *parts: str) -> Path:
    path = folder / name
    path.write_text("".join(textwrap.dedent(p) for p in parts))
    return path


def test_example_registers_model_pairing_and_experiment_with_their_origin(tmp_path):
    path = tmp_path / "my_study.py"
    path.write_text(EXAMPLE.read_text())
    module, ref = user_modules.load_file(path)
    assert ref.name == "my_study" and ref.path == str(path.resolve()) and len(ref.sha256) == 64
    assert MODELS["tiny_cnn"] is module.TinyCNN
    assert "tiny_cnn/edges" in PAIRINGS and EXPERIMENTS["tiny-vs-simple-cnn"] is module.TINY
    assert registry.origin_of("model", "tiny_cnn") == "my_study.py"
    assert registry.origin_of("experiment", "tiny-vs-simple-cnn") == "my_study.py"
    assert registry.origin_of("model", "simple_cnn") == registry.BUILTIN
    # the same strict checks as a built-in model: constructor keys, unused keys, shape rules
    assert resolve_config({"pairing": "tiny_cnn/edges", "num_filter": 2}).model_kwargs["num_filter"] == 2
    with pytest.raises(ConfigError, match="'hidden_dims' is not used by pairing tiny_cnn/edges"):
        resolve_config({"pairing": "tiny_cnn/edges", "hidden_dims": (3,)})
    with pytest.raises(ConfigError, match="kernel_size must be in"):
        resolve_config({"pairing": "tiny_cnn/edges", "kernel_size": 99})
    with pytest.raises(ConfigError, match="unknown config key 'num_filtr'"):
        resolve_config({"pairing": "tiny_cnn/edges", "num_filtr": 2})
    # loading the unchanged file again is a no-op
    assert user_modules.load_file(path)[0] is module


MODEL = """
    from torch import nn
    from trainables.models import register_model

    @register_model({name!r})
    class M(nn.Module):
        def __init__(self, width: int = 3, num_classes: int = 3):
            super().__init__()
            self.fc = nn.Linear(28 * 28, num_classes)

        def forward(self, x):
            return self.fc(x.flatten(1))
"""


def test_a_name_clash_with_a_builtin_is_refused_and_nothing_stays_registered(tmp_path):
    path = write(tmp_path, "clash.py", MODEL.format(name="fresh_model"), """
    @register_model("simple_cnn")
    class N(M):
        pass
    """)
    with pytest.raises(ConfigError, match=r"model 'simple_cnn' from clash.py clashes with the built-in model "
                                          r"'simple_cnn'; give yours another name"):
        user_modules.load_file(path)
    assert "fresh_model" not in MODELS and "clash" not in sys.modules
    assert MODELS["simple_cnn"].__module__ == "trainables.models.edge"


def test_two_modules_may_not_register_the_same_name(tmp_path):
    user_modules.load_file(write(tmp_path, "first.py", MODEL.format(name="shared_name")))
    with pytest.raises(ConfigError, match="from second.py clashes with the model 'shared_name' from first.py"):
        user_modules.load_file(write(tmp_path, "second.py", MODEL.format(name="shared_name")))


def test_an_experiment_clashing_with_a_builtin_or_naming_an_unknown_plot_is_refused(tmp_path):
    exp = """
        from search_spaces import Experiment
        E = Experiment(name={name!r}, description="d", pairings=("simple_cnn/edges",), plots={plots!r})
    """
    with pytest.raises(ConfigError, match="clashes with the built-in experiment 'edge-data-per-class'"):
        user_modules.load_file(write(tmp_path, "e1.py", exp.format(name="edge-data-per-class", plots=())))
    with pytest.raises(ConfigError, match="unknown plot 'curvs'. Did you mean 'curves'"):
        user_modules.load_file(write(tmp_path, "e2.py", exp.format(name="mine", plots=("curvs",))))
    assert "mine" not in EXPERIMENTS


def test_a_module_that_raises_names_file_and_line(tmp_path):
    path = write(tmp_path, "broken.py", MODEL.format(name="half_registered"), "\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"user module broken.py failed to load \(line 14\): RuntimeError: boom"):
        user_modules.load_file(path)
    assert "half_registered" not in MODELS and "broken" not in sys.modules


@pytest.mark.parametrize("name, message", [
    ("json.py", "would shadow the module 'json'"),
    ("trainables.py", "would shadow the module 'trainables'"),
    ("my-study.py", "must be a Python module name"),
    ("study.txt", "must be a Python file ending in .py"),
])
def test_file_names_that_cannot_be_modules_are_refused(tmp_path, name, message):
    with pytest.raises(ConfigError, match=message):
        user_modules.load_file(write(tmp_path, name, "X = 1\n"))


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="user module 'nowhere/x.py' does not exist"):
        user_modules.load_file("nowhere/x.py")


def test_a_changed_file_is_noticed_by_trials_and_reloaded_by_the_driver(tmp_path):
    path = write(tmp_path, "evolving.py", MODEL.format(name="evolving_model"))
    _, ref = user_modules.load_file(path)
    path.write_text(path.read_text().replace("width: int = 3", "width: int = 4"))
    user_modules.ensure([ref])  # a reused worker keeps the recorded version it already runs
    user_modules.LOADED.pop("evolving")  # a fresh worker process reads the file: refused
    with pytest.raises(ConfigError, match=r"user module evolving.py .* changed since the sweep recorded it"):
        user_modules.ensure([ref])
    module, ref2 = user_modules.load_file(path)  # the driver reads the new version
    assert ref2.sha256 != ref.sha256 and MODELS["evolving_model"] is module.M
    assert registry.origin_of("model", "evolving_model") == "evolving.py"


def test_a_ref_without_path_is_imported_by_name_as_ray_ships_it(tmp_path, monkeypatch):
    """On a cluster the worker has no driver path: the module comes from Ray's py_modules copy."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    path = write(shipped, "shipped_mod.py", MODEL.format(name="shipped_model"))
    ref = user_modules.ModuleRef("shipped_mod", user_modules.file_sha256(path)).for_cluster()
    with pytest.raises(ConfigError, match="not importable on this worker"):
        user_modules.ensure([ref])
    monkeypatch.syspath_prepend(str(shipped))
    user_modules.ensure([ref])
    assert "shipped_model" in MODELS
    assert user_modules.ModuleRef.from_dict(ref.to_dict()) == ref


def test_a_user_dataset_and_explicit_pairing_get_the_same_key_checks(tmp_path):
    path = write(tmp_path, "withdata.py", MODEL.format(name="flat_model"), """
    from dataclasses import dataclass
    import torch
    from core.config_base import ConfigBase
    from trainables.data import DataBundle, DatasetSpec, register_dataset
    from trainables.pairings import register_pairing

    @dataclass(frozen=True)
    class NoiseConfig(ConfigBase):
        n_samples: int = 12

    def build(cfg, seed):
        c = NoiseConfig.from_config(cfg)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(c.n_samples, 1, 28, 28, generator=g)
        y = torch.arange(c.n_samples) % 3
        return DataBundle(x, y, x, y, 3)

    register_dataset("noise", DatasetSpec(build, NoiseConfig, "random images", "synthetic",
                                          lambda c: (1, 28, 28), lambda c: 3, {"n_samples": 6},
                                          peak_bytes=lambda c: 2 * c.n_samples * 28 * 28 * 4))
    register_pairing("flat_model", "noise", optimizer="sgd", lr=0.1, epochs=2, batch_size=4)
    """)
    user_modules.load_file(path)
    spec = resolve_config({"pairing": "flat_model/noise", "n_samples": 9, "width": 5})
    assert spec.data.n_samples == 9 and spec.model_kwargs["width"] == 5
    with pytest.raises(ConfigError, match="'kernel_size' is not used by pairing flat_model/noise"):
        resolve_config({"pairing": "flat_model/noise", "kernel_size": 3})
    bad = write(tmp_path, "baddefaults.py", MODEL.format(name="other_model"), """
    from trainables.pairings import register_pairing
    register_pairing("other_model", "edges", optimizer="sgd", lr=0.1, kernel_size=3)
    """)
    with pytest.raises(ConfigError, match="pairing 'other_model/edges' from baddefaults.py: 'kernel_size' is not used"):
        user_modules.load_file(bad)
    assert "other_model/edges" not in PAIRINGS and "other_model" not in MODELS


def test_a_synthetic_user_dataset_must_declare_its_memory(tmp_path):
    """As for the built-in datasets (the driver's memory check): a synthetic one without peak_bytes is refused,
    and nothing it registered stays."""
    path = write(tmp_path, "nomem.py", """
    from dataclasses import dataclass
    from core.config_base import ConfigBase
    from trainables.data import DatasetSpec, register_dataset

    @dataclass(frozen=True)
    class NoiseConfig(ConfigBase):
        n_samples: int = 12

    register_dataset("noise2", DatasetSpec(lambda cfg: None, NoiseConfig, "random", "synthetic",
                                           lambda c: (1, 4, 4), lambda c: 2, {"n_samples": 4}, peak_bytes=None))
    """)
    with pytest.raises(ConfigError, match="'noise2' from nomem.py: peak_bytes must be a function"):
        user_modules.load_file(path)
    from trainables.data import DATASETS

    assert "noise2" not in DATASETS


def test_a_one_argument_user_builder_still_gets_its_settings_and_the_seed(tmp_path):
    """Builders written before they got the seed apart (`build(cfg)`, reading cfg["seed"]) keep
    working: they are handed their dataset's settings and the trial's seed in one mapping."""
    path = write(tmp_path, "oldbuild.py", """
    from dataclasses import dataclass
    import torch
    from core.config_base import ConfigBase
    from trainables.data import DataBundle, DatasetSpec, register_dataset

    SEEN = []

    @dataclass(frozen=True)
    class NoiseConfig(ConfigBase):
        n_samples: int = 12

    def build(cfg):
        c = NoiseConfig.from_config(cfg)
        SEEN.append((c.n_samples, cfg["seed"]))
        x = torch.randn(c.n_samples, 1, 4, 4, generator=torch.Generator().manual_seed(cfg["seed"]))
        y = torch.arange(c.n_samples) % 2
        return DataBundle(x, y, x, y, 2)

    register_dataset("oldnoise", DatasetSpec(build, NoiseConfig, "random", "synthetic", lambda c: (1, 4, 4),
                                             lambda c: 2, {"n_samples": 4}, peak_bytes=lambda c: 1))
    """)
    module, _ = user_modules.load_file(path)
    from trainables.data import build_data

    bundle = build_data("oldnoise", module.NoiseConfig(n_samples=5), seed=7)
    assert module.SEEN == [(5, 7)] and len(bundle.y_train) == 5
