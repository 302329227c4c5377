"""Symmetric label noise on the training split (``--label-noise P``, any dataset).

Exactly round(P * N) of the N training labels, at positions drawn uniformly without
replacement, are each replaced by one of the other C - 1 classes, drawn uniformly: the
"symmetric" noise of the noisy-label literature (e.g. Han et al. 2018, Co-teaching;
Mirzasoleiman et al. 2020, Crust), with an exact count of changed labels instead of an
independent coin per label. The test split is never touched. The draw depends only on
the data seed (``--seed``), not on the method that trains, so every method run on the
same seed sees the same noisy labels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.errors import UsageError

NOISE_STREAM = 0x4E4F495345  # the label-noise draw's own random stream of the data seed


def check_label_noise(fraction: float) -> None:
    """``fraction`` must be in [0, 1) (one line otherwise)."""
    if not 0 <= fraction < 1:
        raise UsageError(f"--label-noise must be in [0, 1) (the fraction of training labels changed), "
                         f"got {fraction:g}")


def add_label_noise(splits: DataSplits, fraction: float, seed: int) -> DataSplits:
    """``splits`` with round(fraction * N) training labels changed to another class;
    ``splits.noisy`` holds their positions (sorted). ``fraction`` 0 returns ``splits``."""
    check_label_noise(fraction)
    if fraction == 0:
        return splits
    train, classes = splits.train, splits.num_classes
    if classes < 2:
        raise UsageError(f"--label-noise needs at least 2 classes to change a label to, {splits.name} has {classes}")
    rng = np.random.default_rng([NOISE_STREAM, seed])
    n = len(train)
    positions = torch.from_numpy(np.sort(rng.choice(n, size=round(fraction * n), replace=False)))
    shifts = torch.from_numpy(rng.integers(1, classes, size=len(positions)))  # 1..C-1: never the same class
    y = train.y.clone()
    y[positions] = (y[positions] + shifts.to(y.device)) % classes
    noisy_train = IndexedDataset(train.x, y, classes, train.index)
    return dataclasses.replace(splits, train=noisy_train, noisy=positions)
