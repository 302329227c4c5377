"""Fully connected models: logistic regression, MLP, LeNet-300-100."""

from __future__ import annotations

import math

from torch import nn

from raypkg.models.base import Classifier
from raypkg.models.registry import register_model


class MLP(Classifier):
    """Flatten, then ``hidden`` ReLU layers, then the linear head.

    With no hidden layers the features are the flattened input itself, so the model is
    multinomial logistic regression and its "penultimate features" are the inputs.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = ()):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.features(x)


@register_model("logreg", "multinomial logistic regression (features = flattened input)")
def logreg(input_shape, num_classes):
    return MLP(input_shape, num_classes)


@register_model("mlp", "MLP, one hidden ReLU layer of 300 (the DeltaGrad paper's 784-300-10)")
def mlp(input_shape, num_classes, hidden: int = 300):
    return MLP(input_shape, num_classes, (hidden,))


@register_model("lenet300-100", "LeNet-300-100: two hidden ReLU layers of 300 and 100")
def lenet300_100(input_shape, num_classes):
    return MLP(input_shape, num_classes, (300, 100))
