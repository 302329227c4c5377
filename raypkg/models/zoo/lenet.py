"""LeNet-5 (LeCun et al., "Gradient-based learning applied to document recognition", 1998).

The modern variant: ReLU and max-pooling instead of scaled tanh and trainable
subsampling, a full C3 connection table. On 1x32x32 input it is the paper's C1-S2-C3-S4
(6 and 16 maps of 5x5 convolutions, 16x5x5 = 400 features) followed by F5 (120), F6
(84) and the output layer; on 28x28 MNIST C1 is padded by 2, the usual adaptation.
Smaller images (8x8 digits) keep every convolution "same"-padded and end on a
16 x s x s map with s = min(5, map size); larger ones are average-pooled to 5x5 so the
fully connected part keeps its 400 inputs.
"""

from __future__ import annotations

from torch import nn

from raypkg.models.registry import register_model
from raypkg.models.zoo.conv_base import ConvClassifier, init_kaiming


class LeNet5(ConvClassifier):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__("lenet5", input_shape)
        channels, height, width = self.image_shape
        side = min(height, width)
        pad1 = 0 if side >= 32 else 2  # 32x32 -> 28x28 (paper); smaller images stay put
        side = side + 2 * pad1 - 4
        side = (side + 1) // 2
        pad2 = 0 if side >= 10 else 2  # 14x14 -> 10x10 (paper); smaller maps stay put
        side = side + 2 * pad2 - 4
        side = (side + 1) // 2
        pooled = min(5, side)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=pad1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(pooled), nn.Flatten(),
            nn.Linear(16 * pooled * pooled, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(84, num_classes)
        init_kaiming(self)


@register_model(
    "lenet5",
    "LeNet-5 (conv 6-16, fc 120-84), ReLU + max-pool; padded so 8x8 digits work too",
)
def lenet5(input_shape, num_classes):
    return LeNet5(input_shape, num_classes)
