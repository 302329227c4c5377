"""What every convolutional model in the zoo shares.

* Input shapes. A dataset hands a model its per-sample shape: ``(C, H, W)`` for images,
  ``(H, W)`` for single-channel images, or ``(D,)`` for flat features. Conv models view
  flat features as a square single-channel image when D is a perfect square
  (64 -> 1x8x8 digits, 784 -> 1x28x28 MNIST) and refuse anything else with a
  ``UsageError`` naming the model and the shape.
* He (Kaiming) initialisation of every convolution (He et al., "Delving Deep into
  Rectifiers", ICCV 2015, Eq. 10: zero-mean normal with std sqrt(2 / n)), batch-norm
  scales at 1 and shifts at 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raypkg.errors import UsageError
from raypkg.models.base import Classifier


def image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The ``(C, H, W)`` a conv model sees for samples of ``input_shape``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and min(shape) >= 1:
        return shape  # type: ignore[return-value]
    if len(shape) == 2 and min(shape) >= 1:
        return (1, *shape)  # type: ignore[return-value]
    if len(shape) == 1 and shape[0] >= 1:
        side = math.isqrt(shape[0])
        if side * side == shape[0]:
            return (1, side, side)
    raise UsageError(
        f"model {model!r} needs image input (C, H, W) or flat features whose count is a "
        f"perfect square (e.g. 64 -> 1x8x8); got input shape {shape}"
    )


class ConvClassifier(Classifier):
    """A classifier over images whose ``forward_features`` first views its input as images.

    Subclasses set ``self.features`` (images -> [B, feature_dim]) and ``self.head``.
    """

    features: nn.Module

    def __init__(self, model: str, input_shape: tuple[int, ...]):
        super().__init__()
        self.image_shape = image_shape(model, input_shape)

    def as_image(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` viewed as [B, C, H, W]; images of the model's channels at another height and
        width pass as they are (progressive resizing trains on smaller ones)."""
        if x.dim() == 4 and x.shape[1] == self.image_shape[0] and tuple(x.shape[2:]) != self.image_shape[1:]:
            return x
        return x.reshape(x.shape[0], *self.image_shape)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.as_image(x))


def init_kaiming(module: nn.Module) -> None:
    """He-normal convolutions (fan-out, ReLU gain); batch norm at scale 1, shift 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
