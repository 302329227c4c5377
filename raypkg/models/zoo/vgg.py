"""VGG configuration C (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015, Table 1, column C), CIFAR-style.

Thirteen convolutions in five blocks, 64-64 | 128-128 | 256-256-256 | 512-512-512 |
512-512-512, where the last convolution of blocks 3 to 5 is 1x1 (what sets C apart from
D); each block ends in a 2x2 max-pool. As in the CIFAR adaptations used by the
sparse-training papers (SNIP, SET/RigL-ITOP, AGENT), every convolution is followed by
batch norm, the map is average-pooled to 1x1 and the three fully connected layers shrink
from 4096 to 512 units: 512 -> 512 -> 512 -> classes, 16 weight layers in all.
Pools use ceil mode, so odd maps round up and a 1x1 map stays 1x1: 8x8 digits and 28x28
MNIST go through all five blocks.
"""

from __future__ import annotations

from torch import nn

from raypkg.models.registry import register_model
from raypkg.models.zoo.conv_base import ConvClassifier, init_kaiming

# (out_channels, kernel_size) per conv; "M" is a 2x2 max-pool.
CONFIG_C = [
    (64, 3), (64, 3), "M",
    (128, 3), (128, 3), "M",
    (256, 3), (256, 3), (256, 1), "M",
    (512, 3), (512, 3), (512, 1), "M",
    (512, 3), (512, 3), (512, 1), "M",
]


class VGG(ConvClassifier):
    def __init__(self, name: str, input_shape: tuple[int, ...], num_classes: int,
                 config: list, hidden: int = 512):
        super().__init__(name, input_shape)
        layers: list[nn.Module] = []
        in_channels = self.image_shape[0]
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            out_channels, kernel = item
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        layers += [
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, num_classes)
        init_kaiming(self)


@register_model(
    "vgg-c",
    "VGG-16 configuration C (1x1 convs in the last three blocks), CIFAR-style: batch norm, "
    "global pooling, fc 512-512 and the linear head",
)
def vgg_c(input_shape, num_classes):
    return VGG("vgg-c", input_shape, num_classes, CONFIG_C)
