"""Object-localisation models (SPEC 2.4): input 1x64x64, output sigmoid (cx, cy, w, h) in [0, 1]."""
from __future__ import annotations

from torch import nn


class MLPDetector(nn.Module):
    """Flatten -> FC(4096->512) -> ReLU -> FC(512->256) -> ReLU -> FC(256->4) -> Sigmoid; 2,230,020 params."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 512), nn.ReLU(),
                                 nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 4), nn.Sigmoid())

    def forward(self, x):
        return self.net(x)


class CNNDetector(nn.Module):
    """Three [Conv(3x3, pad 1) -> ReLU -> MaxPool2] blocks (16, 32, 64) -> FC(4096->256) -> ReLU -> FC(256->4)
    -> Sigmoid.

    1,073,156 parameters; the pooling takes 64 px down to 8.
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(),
                                  nn.Linear(256, 4), nn.Sigmoid())

    def forward(self, x):
        return self.head(self.features(x))
