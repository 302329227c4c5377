"""Plug-in datasets: factories ``()`` or ``(options)`` returning (train, test) splits; the
bad ones are refused (tests/unit/test_bad_input.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset


def digits(options):
    """scikit-learn's 8x8 digits, split and normalised as effray's built-in `digits`."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    rng = np.random.default_rng(options.seed)
    train, test = [], []
    for c in np.unique(labels):  # a quarter of each class is test, chosen by the seed
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(0.25 * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    train, test = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    x = torch.from_numpy(images).unsqueeze(1)
    x = (x - x[train].mean()) / x[train].std()
    y = torch.from_numpy(labels)
    return (x[train].contiguous(), y[train].contiguous()), (x[test].contiguous(), y[test].contiguous())


def tabular():
    """Four Gaussian classes in 12 features (240 train / 80 test), as torch Datasets."""
    gen = torch.Generator().manual_seed(0)
    centers = 2.0 * torch.randn(4, 12, generator=gen)

    def split(n):
        y = torch.arange(n) % 4
        return TensorDataset(centers[y] + torch.randn(n, 12, generator=gen), y)

    return split(240), split(80)


def as_list_of_pairs():
    """The same, test split as a plain list of (x, y) items."""
    train, test = tabular()
    return train, [(x, int(y)) for x, y in test]


def wrong_type():
    return "train.csv"


def labels_out_of_range():
    x = torch.randn(20, 3)
    return (x, torch.arange(20) % 3), (x[:5], torch.tensor([0, 1, 2, 3, 4])), 3


def negative_labels():
    x = torch.randn(20, 3)
    return (x, torch.arange(20) % 3 - 1), (x[:5], torch.arange(5) % 3)


def length_mismatch():
    return (torch.randn(20, 3), torch.arange(19) % 2), (torch.randn(5, 3), torch.arange(5) % 2)


def shape_mismatch():
    return (torch.randn(20, 3), torch.arange(20) % 2), (torch.randn(5, 4), torch.arange(5) % 2)


def float_labels():
    return (torch.randn(20, 3), torch.rand(20)), (torch.randn(5, 3), torch.rand(5))


def two_arguments(a, b):
    return tabular()


def nan_inputs():
    x = torch.randn(20, 3)
    x[4, 1] = float("nan")
    x[7, 0] = float("inf")
    return (x, torch.arange(20) % 2), (torch.randn(5, 3), torch.arange(5) % 2)


def one_class():
    return (torch.randn(20, 3), torch.full((20,), 3)), (torch.randn(5, 3), torch.full((5,), 3))


def a_billion_classes():
    return (torch.randn(20, 3), torch.arange(20) % 2), (torch.randn(5, 3), torch.arange(5) % 2), 10**9


def raises():
    raise FileNotFoundError("train.csv")


def exits():
    sys.exit("cannot find the data")


def labels_at_num_classes():
    """Train labels 0..2 declared as 2 classes."""
    return (torch.randn(20, 3), torch.arange(20) % 3), (torch.randn(5, 3), torch.arange(5) % 2), 2


def marks_loading():
    """``tabular`` that leaves a file ``data-was-loaded`` in the working directory: a refusal
    meant to come before the data loads fails the bad-input table's no-new-file check."""
    Path("data-was-loaded").write_text("loaded\n")
    return tabular()


def three_examples():
    """A training split of three examples."""
    return (torch.randn(3, 2), torch.tensor([0, 1, 0])), (torch.randn(2, 2), torch.tensor([0, 1]))
