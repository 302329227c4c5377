"""``fashion-mnist``: Zalando's Fashion-MNIST, MNIST's format with clothes instead of digits.

Read from ``--data-dir`` in torchvision's ``FashionMNIST`` layout (``--download`` fetches it
there), or, with no ``--data-dir``, from the gzipped idx files that Debian's
``dataset-fashion-mnist`` package installs (``DEBIAN_DIR``): the one real, full-size image
set a machine with only the package registries can have. ``--train-size``/``--test-size``
take a class-stratified sample of a split, drawn by ``--seed`` (a stated subset, for a model
too slow for the whole set on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import torch

from raypkg.data.base import DataSplits
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.idx import idx_paths, read_idx_set, read_torchvision_layout
from raypkg.data.sources.in_memory import image_splits, stratified_sample
from raypkg.errors import UsageError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist puts its four files
DEBIAN_FILES = "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz"
FILES = "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"
DEBIAN_PACKAGE = "dataset-fashion-mnist"


@register_dataset("fashion-mnist", "Fashion-MNIST 1x28x28, 10 classes of clothing (60,000 / 10,000): Debian's "
                                   "dataset-fashion-mnist files, or --data-dir in torchvision's layout "
                                   "(FashionMNIST/raw/); --download fetches it there; --train-size/--test-size: a "
                                   "class-stratified sample, drawn by --seed",
                  sized=True, reads=("data_dir", "download"))
def build_fashion_mnist(options: DataOptions) -> DataSplits:
    if options.data_dir is None and not options.download:
        train, test = read_debian()
    else:
        from torchvision.datasets import FashionMNIST

        train, test = read_torchvision_layout("fashion-mnist", FashionMNIST, options, FILES, elsewhere=debian_hint())
    train = stratified_sample("fashion-mnist", train, options.train_size, 2 * options.seed, "train_size")
    test = stratified_sample("fashion-mnist", test, options.test_size, 2 * options.seed + 1, "test_size")
    return image_splits("fashion-mnist", train, test, 10, flat=options.flat, scale=255.0, normalize=options.normalize)


def debian_installed() -> bool:
    """Are Debian's four files where the package puts them?"""
    return all(p.is_file() for p in idx_paths(DEBIAN_DIR))


def debian_hint() -> str:
    """What a --data-dir refusal adds: the Debian files, installed or to install."""
    if debian_installed():
        return f" (or leave out --data-dir to read the installed {DEBIAN_PACKAGE} files in {DEBIAN_DIR})"
    return f" (or `apt-get install {DEBIAN_PACKAGE}` and leave out --data-dir)"


def read_debian() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Both splits from the Debian package's gzipped idx files (``raypkg.data.sources.idx``)."""
    paths = idx_paths(DEBIAN_DIR)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"fashion-mnist: {missing[0]} not found: `apt-get install {DEBIAN_PACKAGE}` (it puts "
                         f"{DEBIAN_FILES} in {DEBIAN_DIR}), or give --data-dir DIR holding {FILES} (add --download "
                         "to fetch it there)")
    return read_idx_set(paths, 10, f"it is not the file {DEBIAN_PACKAGE} installed: reinstall the package "
                                   f"(`apt-get --reinstall install {DEBIAN_PACKAGE}`), or give --data-dir DIR "
                                   f"holding {FILES}")
