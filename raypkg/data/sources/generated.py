"""What the generated datasets (digits-aug, synthetic) share: seeded random streams and
checks of size options (train_size, test_size, num_classes, shape; imagefolder's
image_size uses the same check)."""

from __future__ import annotations

import os
import re
from typing import Callable

import numpy as np
import torch

from raypkg.errors import UsageError


def fill_in_chunks(out: torch.Tensor, make: Callable[[int, int], torch.Tensor], chunk: int) -> torch.Tensor:
    """``out[start:stop] = make(start, stop)`` over consecutive ranges of ``chunk`` rows, in
    order (so the random streams are drawn as one loop would): a large set never holds
    more than one chunk's temporaries."""
    for start in range(0, len(out), chunk):
        stop = min(start + chunk, len(out))
        out[start:stop] = make(start, stop)
    return out


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    """A torch generator for (seed, stream); different streams draw independent numbers
    (NumPy's SeedSequence mixes the pair), so e.g. train and test never share draws."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state & ((1 << 63) - 1)))


def positive_int(dataset: str, what: str, value, default: int, minimum: int = 1) -> int:
    """``value`` (or ``default`` when None) as an int >= ``minimum``, else a UsageError."""
    number = default if value is None else value
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < minimum:
        raise UsageError(f"{dataset} {what} must be an integer >= {minimum}, got {value!r}")
    return int(number)


def split_sizes(dataset: str, options, train_default: int, test_default: int,
                sample_values: int) -> tuple[int, int]:
    """A generated dataset's (train_size, test_size): the options' or the defaults, at most
    what this machine's memory holds (``sample_values`` float32 values a sample): a size too
    large is refused in one line before anything is generated, not by the kernel's OOM killer."""
    sizes = (positive_int(dataset, "train_size", options.train_size, train_default),
             positive_int(dataset, "test_size", options.test_size, test_default))
    need, memory = sum(sizes) * sample_values * 4, physical_memory()
    if memory and need > memory:
        raise UsageError(f"{dataset} train_size {sizes[0]} and test_size {sizes[1]} need {need / 2**30:.4g} GiB "
                         f"({sample_values} float32 values a sample); this machine has {memory / 2**30:.4g} GiB")
    return sizes


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def sample_shape(dataset: str, value, default: tuple[int, ...]) -> tuple[int, ...]:
    """A per-sample shape: (D,) features or (C, H, W) images; also "3x32x32" or "3,32,32"."""
    if value is None:
        return default
    shape = value
    if isinstance(value, str):
        parts = [p for p in re.split(r"[x,\s]+", value.strip().strip("()[]")) if p]
        shape = tuple(int(p) if p.isdigit() else p for p in parts)
    elif isinstance(value, (int, np.integer)):
        shape = (value,)
    shape = tuple(shape)
    if (len(shape) not in (1, 3) or
            not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise UsageError(f"{dataset} shape must be D (features) or C,H,W (images) with positive "
                         f"sizes, got {value!r}")
    return tuple(int(s) for s in shape)
