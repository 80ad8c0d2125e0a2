"""A study of your own: one model and one experiment, in your own file (README "Your own models").

    sweep run my_study.py:TINY --smoke        # this experiment, tiny epochs
    sweep study my_study.py --smoke           # every experiment of this file
    sweep list models                         # tiny_cnn, "from my_study.py"
"""
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from search_spaces import Experiment, Hypothesis
from trainables.models import register_model


@register_model("tiny_cnn")
class TinyCNN(nn.Module):
    """Conv(1->F, k, reflect) -> ReLU -> global average pool -> FC(F->classes)."""

    PAIRS_WITH = {"edges": {"kernel_size": 5}}  # "tiny_cnn/edges": the edge protocol plus this default

    def __init__(self, num_filter: int = 4, kernel_size: int = 3, num_classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, num_filter, kernel_size, padding=(kernel_size - 1) // 2, padding_mode="reflect")
        self.fc = nn.Linear(num_filter, num_classes)

    @staticmethod
    def check_fits(kwargs: dict, input_shape: tuple) -> None:
        k = kwargs.get("kernel_size", 3)
        if not 1 <= k <= input_shape[-1]:
            raise ConfigError(f"kernel_size must be in [1, {input_shape[-1]}], got {k}")

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


TINY = Experiment(
    name="tiny-vs-simple-cnn",
    description="A one-convolution CNN vs the SimpleCNN as training images per class grow",
    pairings=("tiny_cnn/edges", "simple_cnn/edges"), fixed={"lr": 1e-2, "epochs": 300},
    axes={"data_per_class": [10, 30]}, smoke={"epochs": 3, "data_per_class": [10]},
    plots=("accuracy_vs_data", "curves", "kernels"),
    hypotheses=(Hypothesis("SimpleCNN > TinyCNN on val_acc at data_per_class=10", better="simple_cnn/edges",
                           worse="tiny_cnn/edges", at={"data_per_class": 10}),),
)
