"""Residual networks for small images (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016).

Two families share one BasicBlock (two 3x3 convolutions, batch norm, ReLU after the sum):

* ResNet-20/32/56, the paper's CIFAR-10 networks (Sec. 4.2): a 3x3 conv of 16 maps,
  then three stages of n blocks with 16, 32, 64 maps (stride 1, 2, 2), depth 6n + 2,
  global average pooling and the linear head. Shortcuts are option A (Sec. 3.3):
  identity, and where a stage halves the map and doubles the width, strided
  subsampling plus zero channels, so shortcuts carry no parameters (0.27M / 0.46M /
  0.85M parameters, Table 6).
* ResNet-18/34 with the CIFAR stem used across the coreset and sparse-training papers:
  the ImageNet ResNet's BasicBlock stages (64, 128, 256, 512 maps; 2-2-2-2 or 3-4-6-3
  blocks) behind a 3x3 stride-1 stem with no max-pool; downsampling shortcuts are
  option B (1x1 conv + batch norm). 11.17M / 21.28M parameters for 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raypkg.models.registry import register_model
from raypkg.models.zoo.conv_base import ConvClassifier, init_kaiming


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut: keep every ``stride``-th pixel, append zero channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # padded in x's (C, H, W, B) order when x is stored batch-innermost (the sparse kernels'
        # layout, raypkg.sparsity.kernels), so the sum with the block's output keeps that layout
        if x.dim() == 4 and not x.is_contiguous() and x.permute(1, 2, 3, 0).is_contiguous():
            x = x.permute(1, 2, 3, 0)[:, :: self.stride, :: self.stride]
            return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.extra_channels)).permute(3, 0, 1, 2)
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option B: a strided 1x1 convolution and batch norm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, option: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif option == "A":
            self.shortcut = OptionAShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ConvClassifier):
    """3x3 stem, stages of BasicBlocks (the first stage at stride 1, then stride 2),
    global average pooling, linear head."""

    def __init__(self, name: str, input_shape: tuple[int, ...], num_classes: int,
                 widths: tuple[int, ...], blocks: tuple[int, ...], option: str):
        super().__init__(name, input_shape)
        channels = self.image_shape[0]
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        in_width = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_width, width, stride, option))
                in_width = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_width, num_classes)
        init_kaiming(self)


def _he_cifar(name: str, depth: int):
    n = (depth - 2) // 6

    @register_model(
        name,
        f"ResNet-{depth} for CIFAR (He et al. 2016): 16-32-64 maps, {n} blocks per stage, "
        "option A (parameter-free) shortcuts",
    )
    def build(input_shape, num_classes):
        return CifarResNet(name, input_shape, num_classes, (16, 32, 64), (n, n, n), "A")

    return build


def _cifar_stem(name: str, blocks: tuple[int, ...]):
    @register_model(
        name,
        f"ResNet-{name[6:]} CIFAR-style: 3x3 stride-1 stem, no max-pool, BasicBlocks "
        f"{'-'.join(map(str, blocks))} of 64-128-256-512 maps, 1x1 projection shortcuts",
    )
    def build(input_shape, num_classes):
        return CifarResNet(name, input_shape, num_classes, (64, 128, 256, 512), blocks, "B")

    return build


resnet20 = _he_cifar("resnet20", 20)
resnet32 = _he_cifar("resnet32", 32)
resnet56 = _he_cifar("resnet56", 56)
resnet18 = _cifar_stem("resnet18", (2, 2, 2, 2))
resnet34 = _cifar_stem("resnet34", (3, 4, 6, 3))
