"""A plug-in dataset's factory called, and what it returns turned into checked
``DataSplits`` (the forms it may return and what is refused: ``raypkg.plugins``, which
loads the factory and sits below the data layer)."""

from __future__ import annotations

import inspect
from typing import Callable

from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.errors import UsageError
from raypkg.plugins import call_factory

MAX_CLASSES = 100_000  # beyond ImageNet-21k; more is a label or num_classes mistake


def takes_options(name: str, factory: Callable) -> bool:
    """Whether dataset ``name``'s factory is called with the ``DataOptions`` (it takes one
    argument) or with none; one-line ``UsageError`` for any other signature."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    for args in ((None,), ()):
        try:
            signature.bind(*args)
            return bool(args)
        except TypeError:
            pass
    raise UsageError(f"dataset {name!r}: a dataset factory takes no argument or one (the DataOptions); "
                     f"its signature is {signature}")


def call_dataset(name: str, factory: Callable, options) -> DataSplits:
    """Call a dataset factory and turn what it returns into checked ``DataSplits``."""
    args = (options,) if takes_options(name, factory) else ()
    return as_splits(name, call_factory("dataset", name, factory, *args))


def as_splits(name: str, result) -> DataSplits:
    """``DataSplits`` from what a dataset factory returned (the forms: ``raypkg.plugins``)."""
    import torch

    if isinstance(result, DataSplits):
        check_splits(name, result)
        return result
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        raise UsageError(f"dataset {name!r} returned a {type(result).__name__}; a dataset factory returns "
                         f"DataSplits or (train, test), each split (x, y) or a torch Dataset")
    train_x, train_y = _split_tensors(name, "train", result[0])
    test_x, test_y = _split_tensors(name, "test", result[1])
    if len(result) == 3:
        num_classes = result[2]
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise UsageError(f"dataset {name!r}: num_classes (the third item) must be a positive integer, "
                             f"got {num_classes!r}")
    else:  # the largest label plus one
        labels = torch.cat([train_y, test_y])
        num_classes = max(int(labels.max()) + 1, 1) if len(labels) else 1
    splits = DataSplits(name, IndexedDataset(train_x, train_y, num_classes),
                        IndexedDataset(test_x, test_y, num_classes))
    check_splits(name, splits)
    return splits


def _split_tensors(name: str, split: str, value):
    """float32 x and int64 y of one split: a pair (x, y) of tensors/arrays or a Dataset."""
    import torch
    from torch.utils.data import TensorDataset

    if isinstance(value, TensorDataset) and len(value.tensors) >= 2:
        x, y = value.tensors[:2]
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        x, y = value
    elif hasattr(value, "__getitem__") and hasattr(value, "__len__"):
        items = [value[i] for i in range(len(value))]
        if not items:
            raise UsageError(f"dataset {name!r}: the {split} split is empty")
        if not all(isinstance(item, (tuple, list)) and len(item) >= 2 for item in items):
            raise UsageError(f"dataset {name!r}: the items of the {split} split must be (x, y) pairs")
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.as_tensor([int(item[1]) for item in items])
    else:
        raise UsageError(f"dataset {name!r}: the {split} split is a {type(value).__name__}; give (x, y) "
                         f"(tensors or arrays) or a torch Dataset of (x, y) items")
    try:
        x, y = torch.as_tensor(x), torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UsageError(f"dataset {name!r}: the {split} split's x and y must be tensors or arrays: {e}") from None
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise UsageError(f"dataset {name!r}: the {split} labels must be integers, got {y.dtype}")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise UsageError(f"dataset {name!r}: the {split} inputs must be numbers, got {x.dtype}")
    if x.dim() == 0 or y.dim() != 1 or len(x) != len(y):
        raise UsageError(f"dataset {name!r}: the {split} split has x of shape {tuple(x.shape)} and y of shape "
                         f"{tuple(y.shape)}; x must be [N, *shape] and y [N]")
    return x.to(torch.float32).contiguous(), y.to(torch.long).contiguous()


def check_splits(name: str, splits) -> None:
    """One-line ``UsageError`` for splits effray cannot train on."""
    import torch

    for split in ("train", "test"):
        part = getattr(splits, split)
        if not isinstance(part, IndexedDataset):
            raise UsageError(f"dataset {name!r}: DataSplits.{split} is a {type(part).__name__}, not an IndexedDataset")
        x, y = part.x, part.y
        if len(x) != len(y):
            raise UsageError(f"dataset {name!r}: the {split} split has {len(x)} inputs but {len(y)} labels")
        if len(y) == 0:
            raise UsageError(f"dataset {name!r}: the {split} split is empty")
        if y.dim() != 1:
            raise UsageError(f"dataset {name!r}: the {split} labels must be one per sample, shape [N], "
                             f"got {tuple(y.shape)}")
        if isinstance(x, torch.Tensor) and x.dim() < 2:
            raise UsageError(f"dataset {name!r}: the {split} inputs must be [N, *shape], e.g. features [N, D]; "
                             f"got shape {tuple(x.shape)}")
        if isinstance(x, torch.Tensor) and x.dtype != torch.float32:
            raise UsageError(f"dataset {name!r}: the {split} inputs must be float32, got {x.dtype}")
        if y.dtype != torch.long:
            raise UsageError(f"dataset {name!r}: the {split} labels must be int64, got {y.dtype}")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= part.num_classes:
            raise UsageError(f"dataset {name!r}: {split} labels must be in [0, {part.num_classes}), "
                             f"found {low if low < 0 else high}")
        if isinstance(x, torch.Tensor) and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise UsageError(f"dataset {name!r}: the {split} inputs hold {bad} non-finite values (NaN or inf); "
                             f"training on them gives NaN losses")
    if splits.train.num_classes > MAX_CLASSES:
        raise UsageError(f"dataset {name!r}: {splits.train.num_classes} classes; effray takes at most {MAX_CLASSES:,} "
                         f"(the classifier layer holds classes x features weights)")
    if len(torch.unique(splits.train.y)) < 2:
        raise UsageError(f"dataset {name!r}: every training label is {int(splits.train.y[0])}; a classifier "
                         f"needs at least two classes")
    if splits.train.num_classes != splits.test.num_classes:
        raise UsageError(f"dataset {name!r}: train has {splits.train.num_classes} classes, "
                         f"test {splits.test.num_classes}")
    if splits.train.input_shape != splits.test.input_shape:
        raise UsageError(f"dataset {name!r}: train samples have shape {splits.train.input_shape}, "
                         f"test samples {splits.test.input_shape}")
