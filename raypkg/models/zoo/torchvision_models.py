"""torchvision's ImageNet ResNet-50 (He et al. 2016, Table 1), wrapped in the zoo's
feature/head split, randomly initialised (no pretrained weights: nothing downloads).

``forward_features`` runs everything up to the global average pool and flattens
(2048 features); ``head`` is torchvision's ``fc`` rebuilt for the class count. For small
images (at most 64 pixels a side: CIFAR, TinyImageNet, digits) the 7x7 stride-2 stem and
its max-pool would leave too little map, so the stem becomes a 3x3 stride-1 convolution
and the max-pool is dropped, as the CIFAR-style ResNets do. A stem for other than 3
input channels is rebuilt with the same geometry.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from raypkg.models.registry import register_model
from raypkg.models.zoo.conv_base import ConvClassifier, init_kaiming

SMALL_INPUT_MAX_SIDE = 64


class TorchvisionResNet(ConvClassifier):
    def __init__(self, name: str, make_net: Callable[[], nn.Module], input_shape: tuple[int, ...],
                 num_classes: int, small_input: bool | None = None):
        super().__init__(name, input_shape)  # checks the input shape before the build
        net = make_net()
        channels, height, width = self.image_shape
        if small_input is None:
            small_input = max(height, width) <= SMALL_INPUT_MAX_SIDE
        self.small_input = small_input
        stem_width = net.conv1.out_channels
        if small_input:
            net.conv1 = nn.Conv2d(channels, stem_width, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif channels != net.conv1.in_channels:
            net.conv1 = nn.Conv2d(channels, stem_width, 7, stride=2, padding=3, bias=False)
        init_kaiming(net.conv1)
        self.features = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool,
            net.layer1, net.layer2, net.layer3, net.layer4,
            net.avgpool, nn.Flatten(),
        )
        self.head = nn.Linear(net.fc.in_features, num_classes)


@register_model(
    "resnet50",
    "torchvision ResNet-50 (random init); inputs <= 64 px get a 3x3 stride-1 stem and no "
    "max-pool (CIFAR-style)",
)
def resnet50(input_shape, num_classes, small_input: bool | None = None):
    from torchvision.models import resnet50 as tv_resnet50  # torchvision imports slowly

    return TorchvisionResNet("resnet50", lambda: tv_resnet50(weights=None), input_shape,
                             num_classes, small_input)
