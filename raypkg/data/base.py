"""Indexed in-memory datasets: every sample knows its index in the full training set."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class IndexedDataset:
    """One split: labels and sample indices in memory, inputs in memory or on disk.

    ``x``: float32 [N, *input_shape] (features or images, already normalised), or
    ``ImageFiles`` (``raypkg.data.stream``) that decode when indexed; ``y``: int64 [N];
    ``index``: int64 [N], the position of each sample in the split it was taken from,
    kept through ``subset`` so selections and deletions name samples the same way everywhere.
    """

    x: torch.Tensor  # or ImageFiles: same indexing, read from disk
    y: torch.Tensor
    num_classes: int
    index: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = torch.arange(len(self.y), dtype=torch.long)
        assert len(self.x) == len(self.y) == len(self.index)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.index[i]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def streamed(self) -> bool:
        """True when ``x`` is read from disk as needed (``--data-path stream``)."""
        return not isinstance(self.x, torch.Tensor)

    def subset(self, positions) -> "IndexedDataset":
        """The samples at ``positions`` (positions in this object, not ``index`` values)."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        x = self.x.subset(positions) if self.streamed else self.x[positions]
        return IndexedDataset(x, self.y[positions], self.num_classes, self.index[positions])

    def to(self, device) -> "IndexedDataset":
        return IndexedDataset(self.x.to(device), self.y.to(device), self.num_classes,
                              self.index.to(device))


@dataclass
class DataSplits:
    """What a dataset builder returns: train and test splits plus how to treat them."""

    name: str
    train: IndexedDataset
    test: IndexedDataset
    # Images that take random crop (with padding) and horizontal flip during training.
    augmentable: bool = False
    crop_padding: int = 4
    flip: bool = True
    # How the data is held (streamed from disk or in memory) and why, for the run's first line.
    note: str | None = None
    # With --label-noise: the training samples whose label was changed (``raypkg.data.noise``).
    noisy: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape
