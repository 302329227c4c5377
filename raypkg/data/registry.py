"""Dataset registry: one builder function per dataset name, registered by decorator.

Adding a dataset is one new function with ``@register_dataset`` in a module that
``raypkg.data.sources`` imports.
"""

from __future__ import annotations

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
    train_size: int | None = None  # sized datasets (digits-aug, synthetic)
    test_size: int | None = None
    flat: bool = False  # features [N, D] instead of images [N, C, H, W]
    # Standardise with train statistics (per channel); False keeps pixels in [0, 1], as
    # torchvision's ToTensor() without Normalize (the DeltaGrad paper's MNIST features).
    normalize: bool = True
    image_size: int | None = None  # imagefolder: resize to this square size
    num_classes: int | None = None  # synthetic
    shape: tuple[int, ...] | None = None  # synthetic: per-sample shape
    data_path: str = "auto"  # memory | stream | auto (raypkg.data.stream); streamable datasets only


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    build: Callable[[DataOptions], DataSplits]
    streamable: bool = False  # can read its images from disk as needed (--data-path stream)
    sized: bool = False  # generated at any size (--train-size, --test-size)


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str, *, streamable: bool = False, sized: bool = False):
    def decorator(build: Callable[[DataOptions], DataSplits]):
        DATASETS[name] = DatasetEntry(name, description, build, streamable, sized)
        return build

    return decorator


def load_dataset(name: str, **options) -> DataSplits:
    """Build dataset ``name``; ``options`` are the fields of ``DataOptions``.

    Raises ``UsageError`` (one line) for an unknown name, a missing data directory,
    files that are not there without ``download=True``, or ``data_path="stream"`` for a
    dataset that is only held in memory.
    """
    import raypkg.data.sources  # noqa: F401  (registers the builders)

    choose("dataset", name, DATASETS)
    entry, options = DATASETS[name], DataOptions(**options)
    choose("data path", options.data_path, DATA_PATHS)
    if options.data_path == "stream" and not entry.streamable:
        streamable = ", ".join(n for n, e in DATASETS.items() if e.streamable)
        raise UsageError(f"--data-path stream reads image files from disk ({streamable}); "
                         f"{name} is loaded into memory: use --data-path memory or auto")
    return entry.build(options)
