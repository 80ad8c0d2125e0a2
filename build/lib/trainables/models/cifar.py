"""CIFAR-10 models (SPEC 2.2), input 3x32x32: the LAB, BASE and PARAM MLPs and CNNs."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from core.errors import ConfigError

CIFAR_INPUT = 3 * 32 * 32


def check_positive(**values: object) -> None:
    """Raise ConfigError unless every value is an int >= 1 (shared by the image models)."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value!r} is not allowed; expected an integer >= 1")


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    # Conv(i->o, 3, 1): every CIFAR CNN of the sources uses 3x3 kernels with zero padding 1.
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class LabMLP(nn.Module):
    """Flatten -> [FC -> ReLU -> Dropout] per hidden layer -> FC(->classes) (LAB).

    Every Linear gets Kaiming-uniform weights (nonlinearity relu) and zero bias, as in LAB.
    With the defaults it has 820,874 parameters.

    Args:
        hidden_dims: widths of the hidden layers.
        dropout: dropout probability after each hidden ReLU, in [0, 1).
        num_classes: output logits.

    Raises:
        ConfigError: empty or non-positive hidden_dims, dropout outside [0, 1).
    """

    def __init__(self, hidden_dims: Sequence[int] = (256, 128), dropout: float = 0.1, num_classes: int = 10):
        super().__init__()
        dims = tuple(hidden_dims)
        if not dims:
            raise ConfigError("hidden_dims=() is not allowed; expected at least one hidden width")
        check_positive(num_classes=num_classes, **{f"hidden_dims[{i}]": d for i, d in enumerate(dims)})
        if isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise ConfigError(f"dropout={dropout!r} is not allowed; expected a float in [0, 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = CIFAR_INPUT
        for width in dims:
            layers += [nn.Linear(prev, width), nn.ReLU(), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)
        for module in self.net:
            if isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.net(x)


class LabCNN(nn.Module):
    """Conv(3->16) -> ReLU -> MaxPool2 -> Conv(16->32) -> ReLU -> MaxPool2 -> FC(2048->128) -> ReLU -> FC(128->10).

    268,650 parameters (LAB).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        self.features = nn.Sequential(_conv(3, 16), nn.ReLU(), nn.MaxPool2d(2),
                                      _conv(16, 32), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 8 * 8, 128), nn.ReLU(),
                                        nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class BaseCNN(nn.Module):
    """Conv(3->32) -> ReLU -> MaxPool2 -> Conv(32->64) -> ReLU -> MaxPool2 -> FC(4096->10).

    Called SimpleCNN in BASE (renamed: the edge task owns that name); 60,362 parameters.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        self.net = nn.Sequential(_conv(3, 32), nn.ReLU(), nn.MaxPool2d(2),
                                 _conv(32, 64), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(64 * 8 * 8, num_classes))

    def forward(self, x):
        return self.net(x)


class SimpleMLP(nn.Module):
    """Flatten -> FC(3072->hidden) -> ReLU -> FC(hidden->10); 308,310 parameters at hidden 100 (PARAM)."""

    def __init__(self, hidden_dim: int = 100, num_classes: int = 10):
        super().__init__()
        check_positive(hidden_dim=hidden_dim, num_classes=num_classes)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(CIFAR_INPUT, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, num_classes))

    def forward(self, x):
        return self.net(x)


class MLPBaseline(SimpleMLP):
    """SimpleMLP with 512 hidden units: 1,578,506 parameters (BASE)."""

    def __init__(self, hidden_dim: int = 512, num_classes: int = 10):
        super().__init__(hidden_dim, num_classes)


class ConvNet(nn.Module):
    """Conv(3->8) -> ReLU -> Conv(8->16) -> ReLU -> MaxPool2 -> FC(4096->10); 42,362 parameters (PARAM)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        self.net = nn.Sequential(_conv(3, 8), nn.ReLU(), _conv(8, 16), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(16 * 16 * 16, num_classes))

    def forward(self, x):
        return self.net(x)


class ConvNetSmall(nn.Module):
    """Conv(3->4) -> ReLU -> MaxPool2 -> Conv(4->8) -> ReLU -> MaxPool2 -> FC(512->10); 5,538 parameters.

    The PARAM notebook has no code for this class; it is rebuilt from the prose (SPEC 5.7).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        self.net = nn.Sequential(_conv(3, 4), nn.ReLU(), nn.MaxPool2d(2),
                                 _conv(4, 8), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(8 * 8 * 8, num_classes))

    def forward(self, x):
        return self.net(x)


class ConvNetTiny(nn.Module):
    """Three [Conv -> ReLU -> MaxPool2] blocks (4, 8, 16 filters) -> FC(256->10); 4,146 parameters (PARAM)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        self.net = nn.Sequential(_conv(3, 4), nn.ReLU(), nn.MaxPool2d(2),
                                 _conv(4, 8), nn.ReLU(), nn.MaxPool2d(2),
                                 _conv(8, 16), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(16 * 4 * 4, num_classes))

    def forward(self, x):
        return self.net(x)
