"""Text for `sweep list`: experiments, models with parameter counts, pairings, config keys."""
from __future__ import annotations

from core import registry
from search_spaces import EXPERIMENTS


def _from(kind: str, name: str) -> str:
    """"" for a built-in entry, else "  (from my_study.py)": where user code registered it."""
    origin = registry.origin_of(kind, name)
    return "" if origin == registry.BUILTIN else f"  (from {origin})"


def render(what: str) -> str:
    """`sweep list WHAT`. The experiment list reads only search_spaces (no torch, no Ray): the
    trainables' registries are imported for models, pairings and keys alone. Entries registered by
    user modules (loaded first, like installed plugins) say where they came from."""
    if what == "experiments":
        width = max(map(len, EXPERIMENTS))
        return "\n".join(f"{n:<{width}}  {e.description}{_from('experiment', n)}" for n, e in EXPERIMENTS.items())
    from trainables.config import TrainConfig
    from trainables.data import DATASETS
    from trainables.models import model_config_keys
    from trainables.pairings import PAIRINGS

    if what == "models":
        return _models()
    if what == "pairings":
        return "\n".join(f"{n:<34} protocol: {p.defaults.get('optimizer')} lr={p.defaults.get('lr')}{_from('pairing', n)}"
                         for n, p in PAIRINGS.items())
    if what == "datasets":
        width = max(map(len, DATASETS))
        return "\n".join(f"{n:<{width}}  {d.kind:<9}  {d.summary}{_from('dataset', n)}" for n, d in DATASETS.items())
    keys = sorted(TrainConfig.keys())
    lines = ["training: " + ", ".join(keys)]
    for name, spec in DATASETS.items():
        lines.append(f"dataset {name}: " + ", ".join(sorted(spec.config.keys())))
    for name, p in PAIRINGS.items():
        keys = model_config_keys(p.model)
        if keys:
            lines.append(f"model args of {name}: " + ", ".join(sorted(keys)))
    return "\n".join(lines)


def _models() -> str:
    """Each registered model with its parameter count in its pairing's default configuration."""
    import torch

    from trainables.models import build_model, count_params
    from trainables.pairings import PAIRINGS
    from trainables.spec import resolve_config

    rows = []
    for name, p in PAIRINGS.items():
        kwargs = resolve_config({"pairing": name}).model_kwargs
        with torch.device("meta"):
            try:
                total, trainable = count_params(build_model(p.model, **kwargs))
            except Exception as exc:  # a model needing real tensors at build time still gets listed
                rows.append(f"{p.model:<20} {p.dataset:<18} ({type(exc).__name__})")
                continue
        rows.append(f"{p.model:<20} {p.dataset:<18} {total:>12,} params ({trainable:,} trainable){_from('model', p.model)}")
    return "\n".join(rows)
