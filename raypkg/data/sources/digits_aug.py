"""``digits-aug``: an MNIST-sized 1x28x28 set generated from the real scikit-learn digits.

Each generated image is one real 8x8 digit, placed like MNIST places its digits (the
8x8 image stretched over the central 20x20 box of a 28x28 canvas), then distorted by a
random affine map (rotation, anisotropic scale, shear, translation: the kind of
distortions LeCun et al. 1998 used to grow MNIST's training set for LeNet-5) and
Gaussian pixel noise. Upsampling and distortion are one affine sampling grid and one
bilinear ``F.grid_sample`` per chunk of the batch: 70,000 images take about 1.1 s on two
idle CPU cores (1.9 s of CPU time); nothing is cached on disk.

Train images are drawn only from the digits' stratified train split and test images only
from its test split (the same split ``digits`` uses for that seed), so no source digit
is shared between them. Classes are balanced (counts differ by at most one) and every
source digit of a class is used equally often (up to one). Everything is fixed by seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from raypkg.data.base import DataSplits
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.digits import DIGITS_TEST_FRACTION, load_digits_arrays, stratified_split
from raypkg.data.sources.generated import fill_in_chunks, seeded_generator, split_sizes
from raypkg.data.sources.in_memory import image_splits

CANVAS = 28  # MNIST image side
DIGIT_BOX = 20  # MNIST digits are fitted into a 20x20 box in the middle of the canvas
MAX_ROTATION_DEG = 15.0
SCALE_RANGE = (0.85, 1.15)  # per axis
MAX_SHEAR = 0.25  # x += shear * y
MAX_SHIFT_PX = 3.0
NOISE_STD = 0.08  # on the [0, 1] pixel scale, before clipping
_CHUNK = 8192


def balanced_sources(labels: np.ndarray, pool: np.ndarray, n: int,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (label, source position) pairs: classes balanced, each source used ~equally.

    Class ``c`` gets ``n // K`` samples (+1 for the first ``n % K`` classes); its source
    digits are taken in a fresh random order, cycling through the pool.
    """
    pool_labels = torch.from_numpy(labels[pool])
    classes = torch.unique(pool_labels)
    k = len(classes)
    ys, sources = [], []
    for i, c in enumerate(classes.tolist()):
        count = n // k + (1 if i < n % k else 0)
        members = torch.from_numpy(pool)[pool_labels == c]
        order = torch.cat([torch.randperm(len(members), generator=gen)
                           for _ in range(max(1, math.ceil(count / len(members))))])[:count]
        ys.append(torch.full((count,), c, dtype=torch.long))
        sources.append(members[order])
    shuffle = torch.randperm(n, generator=gen)
    return torch.cat(ys)[shuffle], torch.cat(sources)[shuffle]


def sampling_maps(n: int, gen: torch.Generator) -> torch.Tensor:
    """``theta`` [n, 2, 3] (as for ``F.affine_grid``): output canvas coords -> 8x8 source coords.

    Forward map in normalised canvas coordinates: ``p_out = A p + t`` with
    ``A = R(rotation) @ Shear @ diag(sx, sy)``; sampling needs its inverse, then the
    stretch of the 20x20 box to the full source (factor CANVAS / DIGIT_BOX).
    """
    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)

    angle = uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG) * math.pi / 180.0
    sx, sy = uniform(*SCALE_RANGE), uniform(*SCALE_RANGE)
    shear = uniform(-MAX_SHEAR, MAX_SHEAR)
    shift = uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX), uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    zeros, ones = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    shear_m = torch.stack([torch.stack([ones, shear], -1), torch.stack([zeros, ones], -1)], -2)
    scale_m = torch.diag_embed(torch.stack([sx, sy], -1))
    a = rotation @ shear_m @ scale_m
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]  # = sx * sy > 0
    adjugate = torch.stack([torch.stack([a[:, 1, 1], -a[:, 0, 1]], -1),
                            torch.stack([-a[:, 1, 0], a[:, 0, 0]], -1)], -2)
    inverse = adjugate / det[:, None, None] * (CANVAS / DIGIT_BOX)
    t = torch.stack(shift, -1) * (2.0 / CANVAS)  # pixels -> normalised coordinates
    offset = -(inverse @ t.unsqueeze(-1))
    return torch.cat([inverse, offset], -1).to(torch.float32)


def sampling_grid(theta: torch.Tensor, size: int = CANVAS) -> torch.Tensor:
    """The grid ``F.affine_grid(theta, [n, 1, size, size], align_corners=False)`` returns.

    Computed by broadcasting ``theta @ (x, y, 1)`` over pixel centres: the same numbers
    up to float rounding, about 3x faster on CPU than affine_grid's batched matmul.
    """
    centres = (torch.arange(size, dtype=theta.dtype) * 2 + 1) / size - 1
    x, y = centres.view(1, 1, size), centres.view(1, size, 1)
    t = theta[:, :, :, None, None]  # [n, 2, 3, 1, 1]
    return torch.stack([t[:, 0, 0] * x + t[:, 0, 1] * y + t[:, 0, 2],
                        t[:, 1, 0] * x + t[:, 1, 1] * y + t[:, 1, 2]], dim=-1)


def generate(source_images: torch.Tensor, n: int, labels: np.ndarray, pool: np.ndarray,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` distorted 1x28x28 images in [0, 1] (float32) and their labels."""
    y, sources = balanced_sources(labels, pool, n, gen)
    theta = sampling_maps(n, gen)

    def distort(start: int, stop: int) -> torch.Tensor:
        batch = F.grid_sample(source_images[sources[start:stop]], sampling_grid(theta[start:stop]), mode="bilinear",
                              padding_mode="zeros", align_corners=False)
        batch += NOISE_STD * torch.randn(batch.shape, generator=gen)
        return batch.clamp_(0.0, 1.0)

    return fill_in_chunks(torch.empty(n, 1, CANVAS, CANVAS, dtype=torch.float32), distort, _CHUNK), y


@register_dataset("digits-aug", "MNIST-sized 1x28x28 digits (60,000 train / 10,000 test by "
                                "default; train_size/test_size) generated from the real "
                                "digits by random affine distortion and noise, fixed by seed", sized=True)
def build_digits_aug(options: DataOptions) -> DataSplits:
    train_size, test_size = split_sizes("digits-aug", options, 60_000, 10_000, CANVAS * CANVAS)
    images, labels = load_digits_arrays()
    train_pool, test_pool = stratified_split(labels, DIGITS_TEST_FRACTION, options.seed)
    source = torch.from_numpy(images).unsqueeze(1)  # [1797, 1, 8, 8]
    train_x, train_y = generate(source, train_size, labels, train_pool, seeded_generator(options.seed, 0))
    test_x, test_y = generate(source, test_size, labels, test_pool, seeded_generator(options.seed, 1))
    return image_splits("digits-aug", (train_x, train_y), (test_x, test_y), 10, flat=options.flat,
                        normalize=options.normalize)
