"""Images read from disk as they are needed: the ``--data-path stream`` side of the data layer.

``ImageFiles`` is the ``x`` of a streamed ``IndexedDataset``: the files' paths and how to
decode them. Indexing it reads and decodes just those files, so everything that slices
``x`` batch by batch (evaluation, the per-example forwards of selection) works unchanged
and never holds the split; a subset is a subset of paths, which is all a shard actor
receives before it reads its own shard from storage. Training streams through Ray Data
instead (``stream_batches``): each epoch's order of one rank becomes a Ray Data dataset
of (position, path) rows that Ray tasks decode ahead of the loop, in order, so a rank sees
exactly the batches the in-memory path gives it.

Decoding is the in-memory path's, op for op: the ImageFolder loader (PIL, RGB), Resize and
CenterCrop to ``image_size``, uint8 pixels, then ``(pixels / 255 - mean) / std`` in float32
with the train split's per-channel statistics. Both paths give bit-identical inputs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from raypkg.errors import UsageError

DATA_PATHS = ("auto", "memory", "stream")
# auto streams when the decoded float32 train split would be larger than this.
STREAM_ABOVE_BYTES = 4 * 2**30
# Whole CPUs: Ray keeps at most one idle worker process per CPU and kills the rest after a
# second, so fractional tasks made it restart workers (and re-import torch) every epoch:
# epochs of 5,000 images took 1.9 to 8 s instead of a steady 1.9 s.
DECODE_TASK_CPUS = 1
PIXEL_SCALE = 255.0


def image_transform(image_size: int):
    """Shorter side to ``image_size``, centre crop to a square, uint8 [3, S, S]."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size),
                               transforms.PILToTensor()])


def decode_files(paths, image_size: int) -> torch.Tensor:
    """uint8 [len(paths), 3, S, S] (threads: PIL releases the GIL while it decodes)."""
    from torchvision.datasets.folder import default_loader

    transform = image_transform(image_size)

    def read(path: str) -> torch.Tensor:
        try:
            return transform(default_loader(path))
        except OSError as err:  # missing file, or not an image PIL can decode
            raise UsageError(f"cannot read image {path}: {err}") from None

    paths = list(paths)
    if len(paths) < 32:
        images = [read(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            images = list(pool.map(read, paths))
    if not images:
        return torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
    return torch.stack(images)


@dataclass
class ImageFiles:
    """Image files that decode when indexed: ``files[positions]`` is float32 [B, 3, S, S]
    (or [B, 3*S*S] when ``flat``), normalised with ``mean``/``std`` (per channel, [0, 1] units)."""

    paths: np.ndarray  # object array of str
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor
    flat: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        s = self.image_size
        return (len(self), 3 * s * s) if self.flat else (len(self), 3, s, s)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # decoded on the CPU; callers move each batch

    def to(self, device) -> "ImageFiles":
        return self

    def subset(self, positions) -> "ImageFiles":
        return ImageFiles(self.paths[_as_index(positions)], self.image_size, self.mean, self.std, self.flat)

    def __getitem__(self, key) -> torch.Tensor:
        paths = self.paths[key] if isinstance(key, slice) else self.paths[_as_index(key)]
        return self.normalise(decode_files(np.atleast_1d(paths), self.image_size))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """float32 ``(pixels / 255 - mean) / std``, the in-memory path's ``normalise``."""
        shift = self.mean.to(torch.float32).view(1, -1, 1, 1)
        inv = (1.0 / self.std).to(torch.float32).view(1, -1, 1, 1)
        x = (pixels.to(torch.float32) / PIXEL_SCALE - shift) * inv
        return x.flatten(1) if self.flat else x


def _as_index(positions) -> np.ndarray:
    if isinstance(positions, torch.Tensor):
        return positions.cpu().numpy()
    return np.asarray(positions)


def pixel_chunks(paths: np.ndarray, image_size: int, chunk: int) -> Iterator[torch.Tensor]:
    """The split decoded ``chunk`` images at a time (for statistics: one chunk held at once)."""
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(paths), chunk), desc="channel statistics", unit="chunk",
                      disable=None, leave=False):
        yield decode_files(paths[start:start + chunk], image_size)


def choose_data_path(data_path: str, num_images: int, image_size: int) -> tuple[bool, str]:
    """(stream?, a line saying what was chosen and why) for ``num_images`` decoded images."""
    gib = num_images * 3 * image_size**2 * 4 / 2**30
    size = f"{num_images:,} train images, {gib:.2f} GiB decoded"
    threshold = f"{STREAM_ABOVE_BYTES / 2**30:g} GiB"
    if data_path == "stream":
        return True, f"data: {size}; streamed from disk by Ray Data (--data-path stream)"
    if data_path == "memory":
        return False, f"data: {size}; held in memory (--data-path memory)"
    if num_images * 3 * image_size**2 * 4 > STREAM_ABOVE_BYTES:
        return True, f"data: {size} > {threshold}; streamed from disk by Ray Data (--data-path auto)"
    return False, f"data: {size} <= {threshold}; held in memory (--data-path auto; stream forces streaming)"


# --------------------------------------------------------------------------------------
# Ray Data: one rank's epoch, decoded ahead of the loop
# --------------------------------------------------------------------------------------

def _decode_block(batch: dict[str, np.ndarray], image_size: int) -> dict[str, np.ndarray]:
    pixels = decode_files(batch["path"].tolist(), image_size)
    return {"position": batch["position"], "pixels": pixels.numpy()}


def _quiet_ray_data() -> None:
    """No progress bars or per-execution log lines from Ray Data (one per epoch otherwise)."""
    import logging

    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.verbose_progress = False
    context.execution_options.preserve_order = True  # batches in the plan's order


def stream_batches(files: ImageFiles, order: torch.Tensor, batch_size: int, block: int,
                   prefetch: int = 4) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(positions, uint8 pixels) for ``order`` cut into ``batch_size`` batches, read and
    decoded by Ray Data tasks of ``block`` images each while the caller trains on earlier
    batches."""
    import pyarrow as pa
    import ray

    if not ray.is_initialized():
        from raypkg.distributed.cluster import connect_ray

        connect_ray()
    _quiet_ray_data()
    order = order.cpu().numpy()
    blocks = []
    for start in range(0, len(order), block):
        rows = order[start:start + block]
        blocks.append(pa.table({"position": rows, "path": files.paths[rows].tolist()}))
    if not blocks:
        return
    dataset = ray.data.from_arrow(blocks).map_batches(
        _decode_block, fn_kwargs={"image_size": files.image_size}, batch_size=None, batch_format="numpy",
        num_cpus=DECODE_TASK_CPUS)
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=prefetch):
        yield torch.tensor(batch["position"]), torch.tensor(batch["pixels"])  # Ray's arrays are read-only
