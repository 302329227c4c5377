"""``synthetic``: a Gaussian mixture of any size, feature or image shape and class count.

Class ``c`` has mean ``mu_c`` and unit isotropic noise: ``x = mu_c + N(0, I)``. The means
have norm ``MEAN_NORM`` whatever the dimension, so two classes are about
``d = MEAN_NORM * sqrt(2)`` apart and the Bayes error between a pair is
``Phi(-d / 2)`` (about 0.2% for MEAN_NORM = 4): learnable, and not trivial in high
dimension where the means must be estimated from noisy samples. For images [C, H, W]
each mean is a random 4x4 pattern per channel, upsampled bilinearly: spatially smooth,
so convolutions have something local to find. Labels are balanced. Means, train and
test draws are fixed by seed and come from separate streams.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.generated import fill_in_chunks, positive_int, sample_shape, seeded_generator, split_sizes

DEFAULT_SHAPE = (3, 32, 32)
MEAN_NORM = 4.0
_PATTERN = 4  # side of the low-resolution pattern behind each image mean
_CHUNK = 4096


def class_means(shape: tuple[int, ...], num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """[K, *shape] means, each of norm ``MEAN_NORM``."""
    if len(shape) == 3:
        c, h, w = shape
        pattern = torch.randn(num_classes, c, min(h, _PATTERN), min(w, _PATTERN), generator=gen)
        means = F.interpolate(pattern, size=(h, w), mode="bilinear", align_corners=False)
    else:
        means = torch.randn(num_classes, *shape, generator=gen)
    norms = means.flatten(1).norm(dim=1).clamp_min(1e-12)
    return means * (MEAN_NORM / norms).view(-1, *([1] * len(shape)))


def sample(means: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` balanced samples ``mu_y + N(0, I)`` in random order."""
    k = len(means)
    y = (torch.arange(n) % k)[torch.randperm(n, generator=gen)]
    x = torch.empty(n, *means.shape[1:], dtype=torch.float32)
    return fill_in_chunks(x, lambda start, stop: means[y[start:stop]] + torch.randn(stop - start, *means.shape[1:],
                                                                                     generator=gen), _CHUNK), y


@register_dataset("synthetic", "Gaussian mixture of any size for timing: train_size (10,000), "
                               "test_size (2,000), num_classes (10), per-sample shape (D,) or "
                               "(C, H, W) (3x32x32); learnable, fixed by seed",
                  sized=True, reads=("num_classes", "shape"))
def build_synthetic(options: DataOptions) -> DataSplits:
    shape = sample_shape("synthetic", options.shape, DEFAULT_SHAPE)
    train_size, test_size = split_sizes("synthetic", options, 10_000, 2_000, math.prod(shape))
    num_classes = positive_int("synthetic", "num_classes", options.num_classes, 10, minimum=2)
    means = class_means(shape, num_classes, seeded_generator(options.seed, 0))
    train_x, train_y = sample(means, train_size, seeded_generator(options.seed, 1))
    test_x, test_y = sample(means, test_size, seeded_generator(options.seed, 2))
    if options.flat:
        train_x, test_x = train_x.flatten(1), test_x.flatten(1)
    return DataSplits("synthetic",
                      IndexedDataset(train_x, train_y, num_classes),
                      IndexedDataset(test_x, test_y, num_classes),
                      augmentable=False)
