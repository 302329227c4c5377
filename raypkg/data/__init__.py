"""Dataset registry: ``load_dataset(name, ...)``; ``effray datasets`` lists it."""

from raypkg.data.base import DataSplits, IndexedDataset
from raypkg.data.registry import DATASETS, load_dataset, register_dataset

__all__ = ["DataSplits", "IndexedDataset", "DATASETS", "load_dataset", "register_dataset"]
