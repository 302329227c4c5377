"""``cifar10`` and ``cifar100``: the real sets through torchvision (python pickled batches)."""

from __future__ import annotations

import torch

from raypkg.data.base import DataSplits
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.data_dir import data_root, open_torchvision
from raypkg.data.sources.in_memory import image_splits


def _load(name: str, dataset_class, num_classes: int, files: str, options: DataOptions) -> DataSplits:
    root = data_root(name, options, files)
    train = open_torchvision(name, root, options, files,
                             lambda: dataset_class(root, train=True, download=options.download))
    test = open_torchvision(name, root, options, files,
                            lambda: dataset_class(root, train=False, download=False))

    def images(split) -> torch.Tensor:  # torchvision keeps uint8 [N, 32, 32, 3] (HWC)
        return torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous()

    # Per-channel mean/std of the training images (the usual CIFAR normalisation);
    # random crop (padding 4) and horizontal flip during training.
    return image_splits(name, (images(train), torch.tensor(train.targets)),
                        (images(test), torch.tensor(test.targets)), num_classes, flat=options.flat,
                        augmentable=True, scale=255.0, crop_padding=4, normalize=options.normalize)


@register_dataset("cifar10", "CIFAR-10 3x32x32, 10 classes (50,000 / 10,000) from --data-dir "
                             "(cifar-10-batches-py/); crop+flip augmentation; --download fetches it",
                  reads=("data_dir", "download"), needs_dir=True)
def build_cifar10(options: DataOptions) -> DataSplits:
    from torchvision.datasets import CIFAR10

    return _load("cifar10", CIFAR10, 10, "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
                 options)


@register_dataset("cifar100", "CIFAR-100 3x32x32, 100 fine classes (50,000 / 10,000) from "
                              "--data-dir (cifar-100-python/); crop+flip augmentation; "
                              "--download fetches it", reads=("data_dir", "download"), needs_dir=True)
def build_cifar100(options: DataOptions) -> DataSplits:
    from torchvision.datasets import CIFAR100

    return _load("cifar100", CIFAR100, 100, "cifar-100-python/{train,test,meta}", options)
