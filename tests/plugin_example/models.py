"""Plug-in models: factories ``(input_shape, num_classes) -> nn.Module``; the bad ones are
refused (tests/unit/test_bad_input.py)."""

from __future__ import annotations

import math
import sys

from torch import nn

from raypkg.models import Classifier


def mlp(input_shape, num_classes):
    """The built-in `mlp` as a plain nn.Sequential (one hidden ReLU layer of 300)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 300), nn.ReLU(),
                         nn.Linear(300, num_classes))


class BNNet(nn.Module):
    """Batch norm, and a last layer called neither `fc` nor `head`."""

    def __init__(self, input_shape, num_classes, width=32):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width),
                                  nn.BatchNorm1d(width), nn.ReLU())
        self.scores = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.scores(self.body(x))


def bn_net(input_shape, num_classes):
    """A small batch-norm MLP whose classifier layer is `scores`."""
    return BNNet(input_shape, num_classes)


class OwnClassifier(Classifier):
    """Follows effray's Classifier contract itself: used as it is, not wrapped."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.Tanh())
        self.head = nn.Linear(16, num_classes)

    def forward_features(self, x):
        return self.features(x)


def not_a_module(input_shape, num_classes):
    return {"weights": None}


def wrong_size(input_shape, num_classes):
    return mlp(input_shape, num_classes + 1)


def softmax_output(input_shape, num_classes):
    return nn.Sequential(mlp(input_shape, num_classes), nn.Softmax(dim=1))


def no_linear(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Identity())


def no_arguments():
    return mlp((64,), 10)


NOT_CALLABLE = 3


def raises(input_shape, num_classes):
    raise RuntimeError("no weights file")


def exits(input_shape, num_classes):
    sys.exit(3)


class Frozen(nn.Module):
    """Every parameter frozen: nothing to train."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = mlp(input_shape, num_classes)
        self.net.requires_grad_(False)

    def forward(self, x):
        return self.net(x)


def frozen(input_shape, num_classes):
    return Frozen(input_shape, num_classes)


class BreaksInTraining(nn.Module):
    """Works in eval mode (the shape check), breaks in train mode."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = mlp(input_shape, num_classes)

    def forward(self, x):
        if self.training:
            raise RuntimeError("a training-only branch is broken")
        return self.net(x)


def breaks_in_training(input_shape, num_classes):
    return BreaksInTraining(input_shape, num_classes)
