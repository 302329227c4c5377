"""ImageFolder trees of JPEG digits, generated from sklearn's real digits (upscaled, tinted,
shifted, noised): image files in ImageFolder's own layout without a download, for
`effray bench data` (in-memory vs streamed loading as the set grows).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

VAL_PER_CLASS = 100  # validation images per class, the same files in every tree


def digit_images(count: int, label: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` RGB uint8 images [count, S, S, 3] of digit ``label`` from sklearn's digits:
    upscaled, shifted by up to S/8 pixels, a random ink and background colour, noise."""
    from PIL import Image

    from raypkg.data.sources.digits import load_digits_arrays

    images, labels = load_digits_arrays()
    sources = images[labels == label]  # [n, 8, 8] in [0, 1]
    out = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    shift = max(1, image_size // 8)
    for i in range(count):
        small = Image.fromarray((sources[i % len(sources)] * 255).astype(np.uint8))
        ink = np.asarray(small.resize((image_size, image_size), Image.BILINEAR), dtype=np.float32) / 255
        ink = np.roll(ink, tuple(rng.integers(-shift, shift + 1, 2)), axis=(0, 1))
        background, colour = rng.uniform(0.0, 0.35, 3), rng.uniform(0.5, 1.0, 3)
        pixels = background + (colour - background) * ink[..., None] + rng.normal(0, 0.04, (image_size, image_size, 3))
        out[i] = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    return out


def write_trees(root: Path, sizes: list[int], image_size: int, seed: int) -> dict[int, Path]:
    """One ImageFolder tree per size under ``root`` (10 classes, balanced, a shared val
    split of VAL_PER_CLASS per class); the files are written once, for the largest size,
    and the other trees hard-link to them."""
    from PIL import Image
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    largest = max(sizes)
    per_class = [largest // 10 + (c < largest % 10) for c in range(10)]
    files = root / "files"
    for c in tqdm(range(10), desc="writing images", unit="class", disable=None, leave=False):
        for split, count in (("train", per_class[c]), ("val", VAL_PER_CLASS)):
            folder = files / split / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            for i, pixels in enumerate(digit_images(count, c, image_size, rng)):
                Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    trees = {}
    for size in sizes:
        tree = root / f"n{size}"
        for c in range(10):
            for split, count in (("train", size // 10 + (c < size % 10)), ("val", VAL_PER_CLASS)):
                (tree / split / str(c)).mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    os.link(files / split / str(c) / f"{i:06d}.jpg", tree / split / str(c) / f"{i:06d}.jpg")
        trees[size] = tree
    return trees
