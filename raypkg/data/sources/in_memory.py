"""Turn loaded train/test tensors into normalised in-memory ``DataSplits``.

Shared by every builder whose raw data arrives as images (uint8 pixels or floats in
[0, 1]): one mean and standard deviation per channel, measured on the training split
only and applied to both splits, then optional flattening to features.
"""

from __future__ import annotations

from typing import Iterable

import torch

from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.errors import UsageError

_CHUNK = 4096  # images converted at a time, so uint8 -> float32 never needs a float64 copy


def channel_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) standard deviation of images [N, C, H, W].

    Accumulated in float64 chunk by chunk, so a 50,000-image uint8 set is never copied
    whole into float64.
    """
    return chunked_mean_std(x[start:start + _CHUNK] for start in range(0, x.shape[0], _CHUNK))


def chunked_mean_std(chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``channel_mean_std`` of the images that ``chunks`` yields, one chunk held at a time
    (the streamed path decodes its chunks from disk)."""
    total = total_sq = None
    count = 0
    for chunk in chunks:
        chunk = chunk.to(torch.float64)
        if total is None:
            total = torch.zeros(chunk.shape[1], dtype=torch.float64)
            total_sq = torch.zeros(chunk.shape[1], dtype=torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return mean, std.clamp_min(1e-12)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, scale: float) -> torch.Tensor:
    """float32 ``(x / scale - mean) / std`` per channel, computed chunk by chunk."""
    out = torch.empty(x.shape, dtype=torch.float32)
    shift = mean.to(torch.float32).view(1, -1, 1, 1)
    inv = (1.0 / std).to(torch.float32).view(1, -1, 1, 1)
    for start in range(0, x.shape[0], _CHUNK):
        chunk = x[start:start + _CHUNK].to(torch.float32)
        if scale != 1.0:
            chunk = chunk / scale
        out[start:start + _CHUNK] = (chunk - shift) * inv
    return out


def stratified_sample(dataset: str, split: tuple[torch.Tensor, torch.Tensor], size: int | None, seed: int,
                      flag: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` examples of ``split`` (images, labels), each class in its share (largest
    remainders first), drawn by ``seed``, in the split's order; ``size`` None keeps it whole.
    More than the split holds is one line naming ``flag``."""
    images, labels = split
    if size is None:
        return split
    if size > len(labels):
        raise UsageError(f"{dataset} {flag} {size}: the split holds {len(labels):,} examples; give at most that")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    share = counts * size / len(labels)
    take = share.floor().long()
    take[(take - share).argsort(stable=True)[:size - int(take.sum())]] += 1  # the largest remainders
    picks = [members[torch.randperm(len(members), generator=generator)[:k]]
             for members, k in zip((torch.nonzero(labels == c).flatten() for c in classes), take.tolist())]
    kept = torch.cat(picks).sort().values
    return images[kept], labels[kept]


def image_splits(name: str, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                 num_classes: int, *, flat: bool, augmentable: bool = False, scale: float = 1.0,
                 crop_padding: int = 4, normalize: bool = True) -> DataSplits:
    """Normalise the images [N, C, H, W] of ``train`` and ``test`` (each: images, labels) per
    channel with train statistics and wrap them.

    ``scale`` divides the raw values first (255 for uint8 pixels), so the statistics are
    those of the [0, 1] images; ``normalize=False`` stops there (pixels in [0, 1]). With ``flat`` the images become feature vectors
    [N, C*H*W] and are never augmented. Every split's ``index`` is ``arange(N)``.
    """
    (train_x, train_y), (test_x, test_y) = train, test
    if normalize:
        mean, std = channel_mean_std(train_x)
        mean, std = mean / scale, std / scale
    else:
        mean, std = torch.zeros(train_x.shape[1]), torch.ones(train_x.shape[1])
    train_x = normalise(train_x, mean, std, scale)
    test_x = normalise(test_x, mean, std, scale)
    if flat:
        train_x, test_x = train_x.flatten(1), test_x.flatten(1)
        augmentable = False
    return DataSplits(name, IndexedDataset(train_x, torch.as_tensor(train_y, dtype=torch.long), num_classes),
                      IndexedDataset(test_x, torch.as_tensor(test_y, dtype=torch.long), num_classes),
                      augmentable=augmentable, crop_padding=crop_padding)
