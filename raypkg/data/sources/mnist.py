"""``mnist``: the real MNIST through ``torchvision.datasets.MNIST`` (idx files on disk)."""

from __future__ import annotations

from raypkg.data.base import DataSplits
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.data_dir import data_root, open_torchvision
from raypkg.data.sources.in_memory import image_splits

FILES = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"


@register_dataset("mnist", "MNIST 1x28x28, 10 classes (60,000 train / 10,000 test) from "
                           "--data-dir (MNIST/raw/ idx files); --download fetches it")
def build_mnist(options: DataOptions) -> DataSplits:
    from torchvision.datasets import MNIST

    root = data_root("mnist", options, FILES)
    train = open_torchvision("mnist", root, options, FILES,
                             lambda: MNIST(root, train=True, download=options.download))
    test = open_torchvision("mnist", root, options, FILES,
                            lambda: MNIST(root, train=False, download=False))
    # .data: uint8 [N, 28, 28] exactly as stored in the idx file; .targets: int64 [N].
    return image_splits("mnist", (train.data.unsqueeze(1), train.targets),
                        (test.data.unsqueeze(1), test.targets), 10, flat=options.flat, scale=255.0,
                        normalize=options.normalize)
