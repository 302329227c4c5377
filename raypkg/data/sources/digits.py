"""scikit-learn's bundled handwritten digits (1,797 8x8 images): the default dataset."""

from __future__ import annotations

import numpy as np
import torch

from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.data.registry import DataOptions, register_dataset

DIGITS_TEST_FRACTION = 0.25


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images scaled to [0, 1], shape [1797, 8, 8], and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test positions, each class split in the same proportion, fixed by seed."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def to_splits(name: str, x: np.ndarray, y: np.ndarray, train_pos, test_pos, num_classes: int,
              flat: bool, normalize: bool = True) -> DataSplits:
    """Normalise with train statistics (one mean/std per channel) and wrap as tensors."""
    x = torch.from_numpy(x)
    if x.dim() == 3:  # [N, H, W] -> [N, 1, H, W]
        x = x.unsqueeze(1)
    if normalize:
        x = (x - x[train_pos].mean()) / x[train_pos].std()
    if flat:
        x = x.flatten(1)
    y = torch.from_numpy(y)
    train = IndexedDataset(x[train_pos].contiguous(), y[train_pos].contiguous(), num_classes)
    test = IndexedDataset(x[test_pos].contiguous(), y[test_pos].contiguous(), num_classes)
    return DataSplits(name, train, test, augmentable=False)


@register_dataset("digits", "scikit-learn's bundled 8x8 handwritten digits, 10 classes "
                            "(1,347 train / 450 test, stratified by seed); the default")
def build_digits(options: DataOptions) -> DataSplits:
    images, labels = load_digits_arrays()
    train_pos, test_pos = stratified_split(labels, DIGITS_TEST_FRACTION, options.seed)
    return to_splits("digits", images, labels, train_pos, test_pos, 10, options.flat, options.normalize)
