"""Pretrained linear probes (SPEC 2.5): frozen backbones that make features, and the trained head.

Only `LinearProbe` is a registered model: the backbone runs once, when the feature cache is
built (trainables/data/features.py), never inside the training loop.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.errors import ConfigError, UnknownName
from trainables.models.cifar import check_positive


@dataclass(frozen=True)
class BackboneSpec:
    """One frozen feature extractor.

    Attributes:
        make: builds the architecture with random weights (pretrained=False).
        make_pretrained: builds it with the hub's pretrained weights (needs internet or a warm cache).
        dim: feature width of the (B, dim) output.
        classifier_prefix: state_dict prefix of the ImageNet classifier a full checkpoint may
            carry; those keys are dropped because the backbone ends before the classifier.
        hub_source: where make_pretrained fetches from (for error messages).
    """

    make: Callable[[], nn.Module]
    make_pretrained: Callable[[], nn.Module]
    dim: int
    classifier_prefix: str
    hub_source: str


def _resnet18(pretrained: bool) -> nn.Module:
    from torchvision.models import ResNet18_Weights, resnet18
    net = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1 if pretrained else None)
    # Identity in place of fc == "every child but fc" with the pooled map flattened to (B, 512),
    # and it keeps torchvision's key names so torchvision checkpoints load strictly.
    net.fc = nn.Identity()
    return net


def _vit_s16(pretrained: bool) -> nn.Module:
    import timm
    # num_classes=0 removes the classifier: forward returns the pooled class token (B, 384).
    return timm.create_model("vit_small_patch16_224", pretrained=pretrained, num_classes=0)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(lambda: _resnet18(False), lambda: _resnet18(True), 512, "fc.",
                             "torchvision ResNet18_Weights.IMAGENET1K_V1 (download.pytorch.org)"),
    "vit_s16": BackboneSpec(lambda: _vit_s16(False), lambda: _vit_s16(True), 384, "head.",
                            "timm vit_small_patch16_224 (huggingface.co)"),
}


def get_backbone(name: str) -> BackboneSpec:
    """Look up a backbone; raises UnknownName with close matches."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownName("backbone", name, BACKBONES) from None


def _read_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    """Load a state_dict safely (weights_only / safetensors); ConfigError if it is not one."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and safetensors errors differ; all mean "not a checkpoint"
        raise ConfigError(f"weights={str(path)!r} is not a readable PyTorch checkpoint "
                          f"({type(err).__name__}: {str(err)[:200]}); expected a state_dict saved with "
                          "torch.save or a .safetensors file") from None
    # Common wrappers: {"state_dict": ...} (Lightning) and {"model": ...} (timm/DeiT training).
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ConfigError(f"weights={str(path)!r} holds a {type(state).__name__}, not a state_dict "
                          "(a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _strict_load(net: nn.Module, state: Mapping[str, torch.Tensor], name: str, path: Path,
                 classifier_prefix: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith(classifier_prefix)}
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{label} ({len(items)}): {items[:4]}" for label, items in
                 (("missing keys", missing), ("unexpected keys", unexpected),
                  ("shape mismatches", shapes)) if items]
        raise ConfigError(f"weights={str(path)!r} is not a checkpoint for backbone {name!r}: "
                          + "; ".join(parts) + f". Allowed: a state_dict of {name} (known backbones: "
                          + ", ".join(sorted(BACKBONES)) + ")")
    net.load_state_dict(state, strict=True)


def build_backbone(name: str, weights: str | None = None) -> nn.Module:
    """Build a frozen feature extractor in eval mode; forward maps images (B,3,224,224) to (B, dim).

    Args:
        name: key of BACKBONES ("resnet18" or "vit_s16").
        weights: None fetches the pretrained weights from the hub (torchvision/timm; a warm local
            cache works offline); a path loads that local state_dict with `weights_only=True`
            (or safetensors) and checks every key and shape.

    Raises:
        UnknownName: unknown backbone.
        ConfigError: the hub is unreachable, the file is missing, is not a checkpoint, or holds
            weights of another architecture.
    """
    spec = get_backbone(name)
    if weights is None:
        try:
            net = spec.make_pretrained()
        except Exception as err:  # URLError, huggingface_hub errors, ...: all mean "no weights"
            raise ConfigError(
                f"could not get pretrained weights for backbone {name!r} from {spec.hub_source} "
                f"({type(err).__name__}: {str(err)[:200]}). Offline? Download them on a connected "
                "machine and pass the file with --set weights=PATH") from None
    else:
        path = Path(os.path.expanduser(weights))
        if not path.is_file():
            raise ConfigError(f"weights={weights!r}: no such file; expected a local checkpoint of {name}")
        net = spec.make()
        _strict_load(net, _read_checkpoint(path), name, path, spec.classifier_prefix)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class LinearProbe(nn.Module):
    """FC(in_features -> num_classes) trained on frozen backbone features.

    5,130 parameters on ResNet-18 features (512-d), 3,850 on ViT-S/16 features (384-d).

    Args:
        in_features: feature width; None takes it from `backbone` (512 when neither is given).
        num_classes: output logits.
        backbone: name of the backbone that made the features (sets in_features).

    Raises:
        ConfigError: non-positive sizes, or in_features that contradicts the backbone's width.
    """

    # The backbone is the dataset's setting (cifar10_features); in_features is derived from it.
    NOT_CONFIG = ("backbone",)

    def __init__(self, in_features: int | None = None, num_classes: int = 10,
                 backbone: str | None = None):
        super().__init__()
        if backbone is not None:
            dim = get_backbone(backbone).dim
            if in_features is not None and in_features != dim:
                raise ConfigError(f"in_features={in_features} contradicts backbone={backbone!r}, "
                                  f"whose features are {dim}-d")
            in_features = dim
        in_features = 512 if in_features is None else in_features
        check_positive(in_features=in_features, num_classes=num_classes)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.fc(x)
