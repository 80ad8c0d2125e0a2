"""MNIST models (SPEC 2.3), input 1x28x28, 10 classes."""
from __future__ import annotations

from torch import nn

from trainables.models.cifar import check_positive


class MnistMLP(nn.Module):
    """Reshape to (-1, 784) -> FC(784->512) -> ReLU -> FC(512->256) -> ReLU -> FC(256->10); 535,818 params."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        self.net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                 nn.Linear(256, num_classes))

    def forward(self, x):
        return self.net(x.reshape(-1, 784))


class LeNet5(nn.Module):
    """Classic LeNet-5 with sigmoids and average pooling; 61,706 parameters.

    Conv(1->6,5,2) -> Sigmoid -> AvgPool2 -> Conv(6->16,5,0) -> Sigmoid -> AvgPool2 -> FC(400->120)
    -> Sigmoid -> FC(120->84) -> Sigmoid -> FC(84->10).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, num_classes))

    def forward(self, x):
        return self.net(x)


class ModifiedResNet18(nn.Module):
    """torchvision ResNet-18 (no pretrained weights) with a 1-channel stem and FC(512->10); 11,175,370 params.

    The stem and head are replaced after construction, as in the source, so they get PyTorch's
    default initialisation rather than torchvision's.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        check_positive(num_classes=num_classes)
        from torchvision.models import resnet18  # lazy: the other models need torch only

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Linear(512, num_classes)
        self.net = net

    def forward(self, x):
        return self.net(x)
