"""``fashion-mnist``: Zalando's Fashion-MNIST, MNIST's format with clothes instead of digits.

Read from ``--data-dir`` in torchvision's ``FashionMNIST`` layout (``--download`` fetches it
there), or, with no ``--data-dir``, from the gzipped idx files that Debian's
``dataset-fashion-mnist`` package installs (``DEBIAN_DIR``): the one real, full-size image
set a machine with only the package registries can have. ``--train-size``/``--test-size``
take a class-stratified sample of a split, drawn by ``--seed`` (a stated subset, for a model
too slow for the whole set on a CPU).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from raypkg.data.base import DataSplits
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.data_dir import data_root, open_torchvision
from raypkg.data.sources.in_memory import image_splits, stratified_sample
from raypkg.errors import UsageError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist puts its four files
DEBIAN_FILES = "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz"
FILES = "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"
GET_IT = "`apt-get install dataset-fashion-mnist`"


@register_dataset("fashion-mnist", "Fashion-MNIST 1x28x28, 10 classes of clothing (60,000 / 10,000): Debian's "
                                   "dataset-fashion-mnist files, or --data-dir in torchvision's layout "
                                   "(FashionMNIST/raw/); --download fetches it there; --train-size/--test-size: a "
                                   "class-stratified sample, drawn by --seed", sized=True)
def build_fashion_mnist(options: DataOptions) -> DataSplits:
    if options.data_dir is None and not options.download:
        train, test = (read_debian(split) for split in ("train", "t10k"))
    else:
        train, test = read_torchvision(options)
    train = stratified_sample("fashion-mnist", train, options.train_size, 2 * options.seed, "train_size")
    test = stratified_sample("fashion-mnist", test, options.test_size, 2 * options.seed + 1, "test_size")
    return image_splits("fashion-mnist", train, test, 10, flat=options.flat, scale=255.0, normalize=options.normalize)


def read_torchvision(options: DataOptions) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Both splits through ``torchvision.datasets.FashionMNIST`` under --data-dir."""
    from torchvision.datasets import FashionMNIST

    try:
        root = data_root("fashion-mnist", options, FILES)
        splits = [open_torchvision("fashion-mnist", root, options, FILES,
                                   lambda train=train: FashionMNIST(root, train=train, download=options.download))
                  for train in (True, False)]
    except UsageError as err:
        raise UsageError(f"{err} (or {GET_IT} and leave out --data-dir)") from None
    # .data: uint8 [N, 28, 28] as stored; .targets: int64 [N]
    return tuple((split.data.unsqueeze(1), split.targets) for split in splits)


def read_debian(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split (``train`` or ``t10k``) from the Debian package's gzipped idx files."""
    paths = [DEBIAN_DIR / f"{split}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"fashion-mnist: {missing[0]} not found: {GET_IT} (it puts {DEBIAN_FILES} in "
                         f"{DEBIAN_DIR}), or give --data-dir DIR holding {FILES} (add --download to fetch it there)")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UsageError(f"fashion-mnist: {paths[0]} holds {list(images.shape)} images and {paths[1]} "
                         f"{list(labels.shape)} labels: not one image [H, W] per label; reinstall with {GET_IT}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def read_idx(path: Path) -> np.ndarray:
    """A gzipped idx file of unsigned bytes (magic 0x0000 08 DIMS, DIMS big-endian sizes, then
    the bytes), as uint8 of its shape; a file that is not one is a one-line ``UsageError``."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
        zero, kind, dims = struct.unpack(">HBB", data[:4])
        shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
        if zero != 0 or kind != 0x08 or len(data) != 4 + 4 * dims + int(np.prod(shape)):
            raise ValueError("not an idx file of unsigned bytes")
    except (OSError, EOFError, struct.error, ValueError) as err:
        raise UsageError(f"fashion-mnist: {path} is not a readable idx file ({err}): reinstall with {GET_IT}") from None
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)
