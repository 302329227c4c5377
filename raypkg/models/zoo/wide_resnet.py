"""Wide residual networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

WRN-d-k: a 3x3 conv of 16 maps, three groups of n = (d - 4) / 6 pre-activation blocks
B(3,3) with 16k, 32k, 64k maps (stride 1, 2, 2), then batch norm, ReLU, global average
pooling and the linear head (Sec. 2, Table 1). Each block is
BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3 added to the shortcut; where the width or
stride changes the shortcut is a 1x1 convolution of the pre-activated input.
Dropout between the convolutions (Sec. 2.4) is 0 by default.
WRN-28-2 has 1.47M parameters, WRN-16-8 11.0M, WRN-22-8 17.2M (10 classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raypkg.errors import UsageError
from raypkg.models.registry import register_model
from raypkg.models.zoo.conv_base import ConvClassifier, init_kaiming


class PreActBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(act)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + skip


class WideResNet(ConvClassifier):
    def __init__(self, name: str, input_shape: tuple[int, ...], num_classes: int,
                 depth: int, widen: int, dropout: float = 0.0):
        super().__init__(name, input_shape)
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        layers: list[nn.Module] = [nn.Conv2d(self.image_shape[0], 16, 3, padding=1, bias=False)]
        in_width = 16
        for group, width in enumerate(widths):
            for i in range(n):
                stride = 2 if group > 0 and i == 0 else 1
                layers.append(PreActBlock(in_width, width, stride, dropout))
                in_width = width
        layers += [nn.BatchNorm2d(in_width), nn.ReLU(inplace=True),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_width, num_classes)
        init_kaiming(self)


def _wrn(depth: int, widen: int):
    name = f"wrn-{depth}-{widen}"
    assert (depth - 4) % 6 == 0, name

    @register_model(
        name,
        f"Wide ResNet {depth}-{widen} (Zagoruyko & Komodakis 2016): pre-activation blocks, "
        f"{(depth - 4) // 6} per group of {16 * widen}-{32 * widen}-{64 * widen} maps; "
        "dropout=0 by default",
    )
    def build(input_shape, num_classes, dropout: float = 0.0):
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"model {name!r}: dropout must be in [0, 1); got {dropout}")
        return WideResNet(name, input_shape, num_classes, depth, widen, dropout)

    return build


wrn_16_8 = _wrn(16, 8)
wrn_22_8 = _wrn(22, 8)
wrn_28_2 = _wrn(28, 2)
