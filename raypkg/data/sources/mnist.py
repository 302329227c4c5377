"""``mnist``: the real MNIST from ``--data-dir`` in torchvision's layout (idx files under MNIST/raw,
read and checked by ``raypkg.data.sources.idx``; ``--download`` fetches them through torchvision)."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from raypkg.data.base import DataSplits
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.idx import read_torchvision_layout
from raypkg.data.sources.in_memory import image_splits

FILES = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"


@register_dataset("mnist", "MNIST 1x28x28, 10 classes (60,000 train / 10,000 test) from "
                           "--data-dir (MNIST/raw/ idx files); --download fetches it",
                  reads=("data_dir", "download"), needs_dir=True)
def build_mnist(options: DataOptions) -> DataSplits:
    from torchvision.datasets import MNIST

    train, test = read_torchvision_layout("mnist", MNIST, options, FILES)
    return image_splits("mnist", train, test, 10, flat=options.flat, scale=255.0, normalize=options.normalize)


def write_mnist(root, train: tuple, test: tuple) -> Path:
    """Write ``(images, labels)`` pairs (uint8 ``[N, H, W]``, labels 0-255) as MNIST's own idx
    files under ``root/MNIST/raw``, the files ``build_mnist`` reads: the four are written in a
    hidden folder that is renamed into place, so a failure leaves no half of a dataset."""
    folder = Path(root) / "MNIST"
    tmp = Path(root) / f".MNIST.{os.getpid()}.tmp"
    try:
        (tmp / "raw").mkdir(parents=True)
        for split, (images, labels) in (("train", train), ("t10k", test)):
            images, labels = np.asarray(images, np.uint8), np.asarray(labels, np.uint8)
            with open(tmp / "raw" / f"{split}-images-idx3-ubyte", "wb") as f:
                f.write(struct.pack(">IIII", 2051, *images.shape))  # 0x0803: ubyte, 3 dims; sizes big-endian
                f.write(images.tobytes())
            with open(tmp / "raw" / f"{split}-labels-idx1-ubyte", "wb") as f:
                f.write(struct.pack(">II", 2049, len(labels)))  # 0x0801: ubyte, 1 dim
                f.write(labels.tobytes())
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / "raw"


SAMPLE_SIZES = (5000, 1000)  # a sized set's train / test images by default: the sample issue 48 checked


def export_mnist(dataset: str, root, train_size: int | None, test_size: int | None, seed: int) -> str:
    """Write one-channel image ``dataset`` (pixels in [0, 1], e.g. ``digits-aug``) as MNIST idx
    files under ``root`` (``effray write-mnist``): so that ``--dataset mnist --data-dir root``
    reads it through torchvision's loader, the path real MNIST takes. A sized set (generated or
    sampled) is ``SAMPLE_SIZES`` unless sizes are given; a fixed-size one takes none. Returns
    the line that says what was written where."""
    from raypkg.data.registry import DATASETS, dataset_entry, load_dataset
    from raypkg.errors import UsageError
    from raypkg.paths import check_writable_dir

    check_writable_dir(root, "write-mnist DIRECTORY")
    if (Path(root) / "MNIST").exists():
        raise UsageError(f"{str(Path(root) / 'MNIST')!r} exists: give a directory without an MNIST folder")
    if dataset_entry(dataset).needs_dir:
        loadable = ", ".join(n for n, e in DATASETS.items() if not e.needs_dir)
        raise UsageError(f"write-mnist writes a dataset it can load without a directory ({loadable}); {dataset} is "
                         "read from its own files in a directory: give one of those")
    if dataset_entry(dataset).sized:
        train_size, test_size = (SAMPLE_SIZES[0] if train_size is None else train_size,
                                 SAMPLE_SIZES[1] if test_size is None else test_size)
    elif (train_size, test_size) != (None, None):
        sized = ", ".join(n for n, e in DATASETS.items() if e.sized)
        raise UsageError(f"--train-size and --test-size set the size of a sized dataset ({sized}); "
                         f"{dataset} has a fixed size")
    data = load_dataset(dataset, train_size=train_size, test_size=test_size, seed=seed, normalize=False)
    shape = tuple(data.train.x.shape[1:])
    if len(shape) != 3 or shape[0] != 1:
        raise UsageError(f"{dataset} has examples of shape {list(shape)}; MNIST's files hold one-channel images "
                         "[1, H, W] (e.g. digits-aug)")
    if data.num_classes > 256:
        raise UsageError(f"{dataset} has {data.num_classes} classes; MNIST's label files hold one byte a label")
    lo, hi = float(min(data.train.x.min(), data.test.x.min())), float(max(data.train.x.max(), data.test.x.max()))
    if lo < 0 or hi > 1:
        raise UsageError(f"{dataset}'s pixels span [{lo:g}, {hi:g}]; MNIST's files hold pixels in [0, 1] as bytes")

    def as_bytes(split):  # [N, 1, H, W] in [0, 1] -> uint8 [N, H, W], as MNIST stores them
        return (split.x[:, 0] * 255).round().to(torch.uint8).numpy(), split.y.numpy()

    Path(root).mkdir(parents=True, exist_ok=True)
    folder = write_mnist(root, as_bytes(data.train), as_bytes(data.test))
    return f"wrote {len(data.train):,} / {len(data.test):,} {dataset} images (train / test) to {folder}"
