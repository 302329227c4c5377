"""``imagefolder``: TinyImageNet / ImageNet-style class folders read with torchvision.

Layout (``torchvision.datasets.ImageFolder``)::

    DATA_DIR/train/<class>/**/*.jpg|png|...     (TinyImageNet: train/<wnid>/images/*.JPEG)
    DATA_DIR/val/<class>/**/*.jpg|png|...       (or test/ when there is no val/)

TinyImageNet's own validation layout (``val/images/*.JPEG`` with
``val/val_annotations.txt`` naming each file's class) is read as well. Class indices
come from the train folders (sorted names, as ImageFolder numbers them) and the
validation images are labelled by name with the same numbering.

Every image is resized (shorter side to ``image_size``, then a centre crop to a square)
and normalised. ``--data-path memory`` decodes them all once into one float32 tensor (for
sets that fit in RAM: TinyImageNet at 64x64 is about 5 GB); ``stream`` keeps only paths
and labels and reads the pixels from disk as they are needed (``raypkg.data.stream``);
``auto`` (default) streams when the decoded train split would exceed 4 GiB.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.data.registry import DataOptions, register_dataset
from raypkg.data.sources.data_dir import data_root
from raypkg.data.sources.generated import positive_int
from raypkg.data.sources.in_memory import chunked_mean_std, image_splits
from raypkg.data.stream import PIXEL_SCALE, ImageFiles, choose_data_path, image_transform, pixel_chunks
from raypkg.errors import UsageError

DEFAULT_IMAGE_SIZE = 64
STATS_CHUNK = 512  # streamed images decoded at a time for the channel statistics
FILES = "train/<class>/*.jpg and val/<class>/*.jpg (ImageFolder layout)"


def _read_all(samples: list[tuple[str, int]], loader, transform, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every (path, label) into one uint8 tensor [N, 3, S, S] (threads: PIL releases the GIL)."""
    from tqdm.auto import tqdm

    if not samples:
        raise UsageError(f"no images found for the {what} split")

    def read(sample):
        try:
            return transform(loader(sample[0]))
        except OSError as err:  # missing file, or not an image PIL can decode
            raise UsageError(f"cannot read image {sample[0]}: {err}") from None

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        images = list(tqdm(pool.map(read, samples), total=len(samples), desc=f"reading {what}",
                           unit="img", disable=None, leave=False))
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return torch.stack(images), labels


def _tinyimagenet_val(val_dir: str, class_to_idx: dict[str, int]) -> list[tuple[str, int]] | None:
    """Samples from TinyImageNet's ``val/val_annotations.txt`` layout, or None if not that layout."""
    annotations = os.path.join(val_dir, "val_annotations.txt")
    if not os.path.isfile(annotations):
        return None
    samples = []
    with open(annotations) as f:
        for line in f:
            if not line.strip():
                continue
            filename, wnid = line.split("\t")[:2]
            if wnid not in class_to_idx:
                raise UsageError(f"{annotations} names class {wnid!r}, which has no folder in train/")
            samples.append((os.path.join(val_dir, "images", filename), class_to_idx[wnid]))
    return samples


def _eval_samples(eval_dir: str, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) for the evaluation split, labelled with the train numbering."""
    from torchvision.datasets import ImageFolder

    tiny = _tinyimagenet_val(eval_dir, class_to_idx)
    if tiny is not None:
        return tiny
    try:
        folder = ImageFolder(eval_dir, allow_empty=True)
    except FileNotFoundError as err:
        raise UsageError(f"no class folders in {eval_dir} ({err})") from None
    unknown = sorted(set(folder.classes) - set(class_to_idx))
    if unknown:
        raise UsageError(f"{eval_dir} has class folders that train/ lacks: {', '.join(unknown[:5])}")
    return [(path, class_to_idx[folder.classes[label]]) for path, label in folder.samples]


@register_dataset("imagefolder", "TinyImageNet/ImageNet-style DATA_DIR/{train,val}/<class>/ images "
                                 "(torchvision ImageFolder), resized to image_size (64); held in memory, "
                                 "or streamed from disk by Ray Data (--data-path); crop+flip augmentation",
                  streamable=True, reads=("data_dir", "image_size"), needs_dir=True)
def build_imagefolder(options: DataOptions) -> DataSplits:
    from torchvision.datasets import ImageFolder

    if options.download:
        raise UsageError("imagefolder cannot be downloaded: put the images in --data-dir "
                         f"as {FILES}")
    image_size = positive_int("imagefolder", "image_size", options.image_size, DEFAULT_IMAGE_SIZE)
    root = data_root("imagefolder", options, FILES, downloadable=False)
    train_dir = os.path.join(root, "train")
    eval_dir = next((os.path.join(root, d) for d in ("val", "test")
                     if os.path.isdir(os.path.join(root, d))), None)
    if not os.path.isdir(train_dir) or eval_dir is None:
        raise UsageError(f"data directory {root} needs train/ and val/ (or test/) subdirectories "
                         f"with one folder of images per class: put {FILES} there")
    try:
        train_folder = ImageFolder(train_dir)
    except FileNotFoundError as err:
        raise UsageError(f"cannot read {train_dir} as class folders ({err})") from None
    eval_samples = _eval_samples(eval_dir, train_folder.class_to_idx)
    num_classes = len(train_folder.classes)
    streamed, note = choose_data_path(options.data_path, len(train_folder.samples), image_size)
    crop_padding = max(1, image_size // 8)
    if streamed:
        splits = _streamed_splits(train_folder.samples, eval_samples, num_classes, image_size, crop_padding, options)
    else:
        transform = image_transform(image_size)
        train_x, train_y = _read_all(train_folder.samples, train_folder.loader, transform, "train")
        test_x, test_y = _read_all(eval_samples, train_folder.loader, transform, os.path.basename(eval_dir))
        splits = image_splits("imagefolder", (train_x, train_y), (test_x, test_y), num_classes, flat=options.flat,
                              augmentable=True, scale=PIXEL_SCALE, crop_padding=crop_padding,
                              normalize=options.normalize)
    splits.note = note
    return splits


def _streamed_splits(train: list[tuple[str, int]], test: list[tuple[str, int]], num_classes: int,
                     image_size: int, crop_padding: int, options: DataOptions) -> DataSplits:
    """Both splits as ``ImageFiles``: paths and labels in memory, pixels read when needed.
    The train statistics come from one pass over the files, STATS_CHUNK images at a time:
    float64 sums of integer pixel values are exact (below 2**53), so they equal the
    in-memory path's whatever the chunking."""
    if not train or not test:
        raise UsageError(f"no images found for the {'train' if not train else 'evaluation'} split")
    train_paths = np.array([path for path, _ in train], dtype=object)
    if options.normalize:
        mean, std = chunked_mean_std(pixel_chunks(train_paths, image_size, STATS_CHUNK))
        mean, std = mean / PIXEL_SCALE, std / PIXEL_SCALE
    else:
        mean, std = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)

    def split(samples: list[tuple[str, int]]) -> IndexedDataset:
        paths = np.array([path for path, _ in samples], dtype=object)
        labels = torch.tensor([label for _, label in samples], dtype=torch.long)
        return IndexedDataset(ImageFiles(paths, image_size, mean, std, options.flat), labels, num_classes)

    return DataSplits("imagefolder", split(train), split(test), augmentable=not options.flat,
                      crop_padding=crop_padding)
