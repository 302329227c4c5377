"""MNIST's idx files, read and checked in one place for every reader of them: ``mnist`` and
``fashion-mnist`` from ``--data-dir`` in torchvision's layout (``NAME/raw/``), and
``fashion-mnist`` from the gzipped copies Debian's ``dataset-fashion-mnist`` installs.

An idx file (LeCun's MNIST page) is two zero bytes, a type code (0x08: unsigned bytes), the
number of dimensions, each size as a big-endian 32-bit integer, then the data. A split is an
image file ``[N, H, W]`` and a label file ``[N]``. Whatever a file is (gzipped or not, under
either name), anything that makes it not the split effray needs (a wrong magic or type code,
truncated, empty, no examples, the image and label files swapped, counts that differ, train
and test images of different shapes, a label outside 0..num_classes-1) is one ``UsageError``
line naming the file, the problem and ``fix``: the action that mends it where it came from.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from raypkg.data.registry import DataOptions
from raypkg.data.sources.data_dir import data_root, open_torchvision
from raypkg.errors import UsageError

SPLITS = ("train", "t10k")
KINDS = {"images-idx3": 3, "labels-idx1": 1}  # file kind -> its number of dimensions
UNSIGNED_BYTES = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def idx_paths(folder: Path) -> list[Path]:
    """The four files of a set in ``folder`` (train images, labels, then t10k's): each under
    its plain name, or gzipped under ``NAME.gz`` (as downloaded) when only that is there."""
    paths = []
    for split in SPLITS:
        for kind in KINDS:
            plain = folder / f"{split}-{kind}-ubyte"
            paths.append(plain if plain.is_file() or not plain.with_name(plain.name + ".gz").is_file()
                         else plain.with_name(plain.name + ".gz"))
    return paths


def read_idx(path: Path, dims: int, fix: str) -> np.ndarray:
    """The unsigned bytes of idx file ``path`` (gzipped or not, whatever its name), as an array
    of its shape, which must have ``dims`` dimensions and hold at least one example."""
    def refuse(problem: str) -> UsageError:
        return UsageError(f"{path} {problem}: {fix}")

    try:
        data = path.read_bytes()
        if data[:2] == GZIP_MAGIC:
            data = gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise refuse("is a damaged or truncated gzip file") from None
    except OSError as err:
        raise refuse(f"cannot be read ({err.strerror or err})") from None
    if not data:
        raise refuse("is empty")
    if len(data) < 4 or data[:2] != b"\0\0":
        raise refuse("is not an idx file (it does not start with two zero bytes)")
    kind, ndims = data[2], data[3]
    if kind != UNSIGNED_BYTES:
        raise refuse(f"holds type code 0x{kind:02x}, not 0x08 (unsigned bytes, MNIST's pixels and labels)")
    if ndims != dims:
        what = {1: "labels", 3: "images"}
        raise refuse(f"has {ndims} dimension(s) where {what.get(dims)} have {dims}: "
                     + ("are the image and label files swapped?" if ndims in what else "not an MNIST file"))
    if len(data) < 4 + 4 * dims:
        raise refuse("is truncated inside its header")
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    body = len(data) - 4 - 4 * dims
    if body != int(np.prod(shape, dtype=np.int64)):
        raise refuse(f"holds {body:,} bytes after its header where its shape {list(shape)} needs "
                     f"{int(np.prod(shape, dtype=np.int64)):,}: truncated or damaged")
    if 0 in shape:
        raise refuse(f"holds no examples (shape {list(shape)})")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def read_idx_set(paths: list[Path], num_classes: int, fix: str) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The train and test splits of ``paths`` (``idx_paths``), each (uint8 images [N, 1, H, W],
    int64 labels [N]), checked: one label per image, labels in 0..num_classes-1, and train
    and test images of one shape."""
    splits = []
    for images_path, labels_path in (paths[:2], paths[2:]):
        images, labels = read_idx(images_path, 3, fix), read_idx(labels_path, 1, fix)
        if len(images) != len(labels):
            raise UsageError(f"{images_path} holds {len(images):,} images and {labels_path} {len(labels):,} "
                             f"labels: one label per image: {fix}")
        if labels.max() >= num_classes:
            raise UsageError(f"{labels_path} holds label {labels.max()}: labels must be in 0..{num_classes - 1}: {fix}")
        splits.append((torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    (train, _), (test, _) = splits
    if train.shape[1:] != test.shape[1:]:
        raise UsageError(f"{paths[0]} holds {train.shape[2]}x{train.shape[3]} images and {paths[2]} "
                         f"{test.shape[2]}x{test.shape[3]}: train and test images must have one shape: {fix}")
    return tuple(splits)


def read_torchvision_layout(name: str, dataset_class, options: DataOptions, files_hint: str,
                            elsewhere: str = "") -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Both splits of ``name`` from ``--data-dir`` in torchvision's layout
    (``DIR/<dataset_class.__name__>/raw/``). With ``--download``, torchvision fetches the set
    there when a file is missing (a failed download leaves no folder it created behind); files
    already there are read, never fetched again. ``elsewhere``: another source to name in a
    refusal (fashion-mnist's Debian package)."""
    root = data_root(name, options, files_hint)
    folder = Path(root) / dataset_class.__name__ / "raw"
    paths = idx_paths(folder)
    if options.download and not all(p.is_file() for p in paths):
        made = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]  # made by the download
        try:
            open_torchvision(name, root, options, files_hint, lambda: dataset_class(root, download=True))
        except UsageError:
            if made:
                shutil.rmtree(made[-1], ignore_errors=True)
            raise
        paths = idx_paths(folder)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        where = "" if os.path.isdir(folder) else f" ({folder} does not exist)"
        raise UsageError(f"{name}: {missing[0]} not found{where}: pass --download to fetch {name} into {root}, "
                         f"or put {files_hint} there{elsewhere}")
    fix = ("remove it, and --download fetches it again" if options.download
           else "put a good copy there, or remove it and pass --download to fetch it again")
    return read_idx_set(paths, 10, fix + elsewhere)
