"""Dataset registry: one builder function per dataset name, registered by decorator.

Adding a dataset is one new function with ``@register_dataset`` in a module that
``raypkg.data.sources`` imports. A dataset defined outside effray is named by import path
(``pkg.module:factory``) or by an ``effray.datasets`` entry point (``raypkg.plugins``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from raypkg.data.base import DataSplits
from raypkg.data.stream import DATA_PATHS
from raypkg.errors import UsageError, choose


@dataclass(frozen=True)
class DataOptions:
    """Everything a builder may look at; builders ignore what does not apply to them."""

    data_dir: str | None = None
    download: bool = False
    seed: int = 0
    train_size: int | None = None  # sized datasets: generated at this size, or sampled to it
    test_size: int | None = None
    flat: bool = False  # features [N, D] instead of images [N, C, H, W]
    # Standardise with train statistics (per channel); False keeps pixels in [0, 1], as
    # torchvision's ToTensor() without Normalize (the DeltaGrad paper's MNIST features).
    normalize: bool = True
    image_size: int | None = None  # imagefolder: resize to this square size
    num_classes: int | None = None  # synthetic
    shape: tuple[int, ...] | None = None  # synthetic: per-sample shape
    data_path: str = "auto"  # memory | stream | auto (raypkg.data.stream); streamable datasets only
    label_noise: float = 0.0  # fraction of training labels changed (raypkg.data.noise); any dataset


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    build: Callable[[DataOptions], DataSplits]
    streamable: bool = False  # can read its images from disk as needed (--data-path stream)
    sized: bool = False  # --train-size, --test-size: generated at any size, or sampled to it
    reads: tuple[str, ...] = ()  # the DataOptions of its own it reads (data_dir, download, image_size, ...)
    needs_dir: bool = False  # read from --data-dir only (no copy of its own, as fashion-mnist's Debian files)
    plugin: bool = False  # named by import path or entry point (it may read any of them)


DATASETS: dict[str, DatasetEntry] = {}


# The DataOptions that some datasets read and others would ignore: one set for a dataset that does
# not read it is refused (RunConfig.validate), not silently dropped.
DATASET_SETTINGS = ("data_dir", "download", "image_size", "num_classes", "shape")


def register_dataset(name: str, description: str, *, streamable: bool = False, sized: bool = False,
                     reads: tuple[str, ...] = (), needs_dir: bool = False):
    """Register ``build`` as dataset ``name``; ``reads``: which of ``DATASET_SETTINGS`` it reads."""
    def decorator(build: Callable[[DataOptions], DataSplits]):
        DATASETS[name] = DatasetEntry(name, description, build, streamable, sized, reads, needs_dir)
        return build

    return decorator


def available_datasets() -> dict[str, str]:
    """Every dataset name with its description: the registered ones, then the entry points."""
    import raypkg.data.sources  # noqa: F401  (registers the builders)
    from raypkg import plugins

    return plugins.listing("dataset", DATASETS)


def dataset_entry(name: str) -> DatasetEntry:
    """The entry of dataset ``name``: registered, an entry point or an import path. One-line
    ``UsageError`` for an unknown name or a plug-in that cannot be loaded. A plug-in whose
    factory takes the ``DataOptions`` counts as sized (it may honour --train-size)."""
    import raypkg.data.sources  # noqa: F401  (registers the builders)
    from raypkg import plugins
    from raypkg.data.plugins import call_dataset, takes_options

    if name in DATASETS:
        return DATASETS[name]
    factory = plugins.factory_for("dataset", name, DATASETS)
    return DatasetEntry(name, plugins.describe("dataset", name), functools.partial(call_dataset, name, factory),
                        sized=takes_options(name, factory), plugin=True)


def load_dataset(name: str, **options) -> DataSplits:
    """Build dataset ``name``; ``options`` are the fields of ``DataOptions``.

    Raises ``UsageError`` (one line) for an unknown name, a missing data directory,
    files that are not there without ``download=True``, ``data_path="stream"`` for a
    dataset that is only held in memory, a ``label_noise`` outside [0, 1), or a plug-in
    that cannot be loaded or returns data effray cannot use (``raypkg.plugins``).
    ``label_noise`` P changes round(P * N) training labels, seeded by ``seed``.
    """
    from raypkg.data.noise import add_label_noise, check_label_noise

    entry, options = dataset_entry(name), DataOptions(**options)
    choose("data path", options.data_path, DATA_PATHS)
    check_label_noise(options.label_noise)
    if options.data_path == "stream" and not entry.streamable:
        streamable = ", ".join(n for n, e in DATASETS.items() if e.streamable)
        raise UsageError(f"--data-path stream reads image files from disk ({streamable}); "
                         f"{name} is loaded into memory: use --data-path memory or auto")
    return add_label_noise(entry.build(options), options.label_noise, options.seed)


SMALL_PER_CLASS = 10  # fewer training examples per class than this: a note before the run


def small_data_note(splits: DataSplits) -> str | None:
    """The one rule for a tiny training split, built-in (``--train-size 5``) or plug-in
    alike: it trains, with a note that its accuracies say little; None when it is not tiny."""
    n, classes = len(splits.train), splits.num_classes
    if n >= SMALL_PER_CLASS * classes:
        return None
    return (f"the training split of {splits.name} has {n} examples for {classes} classes (fewer than "
            f"{SMALL_PER_CLASS} per class): it trains, but its accuracies say little")
