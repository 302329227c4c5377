"""How effray times code smaller than a whole run: one policy, here.

- **Warm first.** Each call runs once untimed before any timing (first-call costs: imports,
  oneDNN primitives, the allocator, a pool's first task), or a cheaper stand-in on the same
  code path where the call itself is long (``warm``).
- **Interleaved rounds.** A round calls every candidate once; the order is reversed every
  other round (A B C, C B A, ...), so a drift of the machine falls on every candidate alike.
- **The median.** A candidate's seconds are the median of its samples; its spread, their
  interquartile range. An epoch loop's steady state is the median epoch after the first
  (``steady_epoch_s``): the first is its warm-up.

``measure`` takes a fixed number of rounds (the benches' ``--repeat``);
``engine.execution.measure`` adds a stop rule (rounds until the candidates are apart). A
whole recipe is timed by ``bench.harness.BenchRunner`` instead: one untimed short run of
each recipe, then each row's run once.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable


def sync() -> None:
    """Wait for a GPU in use (CUDA is not started only to wait)."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable, *args, **kwargs) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` once and its seconds (a GPU in use synchronised before the clock stops)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - t0


def iqr(values: Iterable[float]) -> float:
    """The interquartile range (0 for fewer than two values)."""
    values = list(values)
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


def round_order(keys: list[Hashable], index: int) -> list[Hashable]:
    """Round ``index``'s order of ``keys``: as given, reversed every other round."""
    return list(keys) if index % 2 == 0 else list(reversed(keys))


@dataclass(frozen=True)
class Timing:
    """One candidate's timed samples (seconds, in the order taken)."""

    samples: tuple[float, ...]

    @property
    def seconds(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        return iqr(self.samples)


def measure(calls: dict[Hashable, Callable[[], Any]], repeats: int = 1, warm: dict | None = None,
            clock: Callable[[], float] = time.perf_counter) -> tuple[dict[Hashable, Any], dict[Hashable, Timing]]:
    """Time every call by the policy above: each warmed (its ``warm`` stand-in, else itself),
    then ``repeats`` interleaved rounds. Each call's last result, and its ``Timing``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    warm = warm or {}
    for key, call in calls.items():
        warm.get(key, call)()
    results: dict[Hashable, Any] = {}
    samples: dict[Hashable, list[float]] = {key: [] for key in calls}
    for index in range(repeats):
        for key in round_order(list(calls), index):
            t0 = clock()
            results[key] = calls[key]()
            sync()
            samples[key].append(clock() - t0)
    return results, {key: Timing(tuple(s)) for key, s in samples.items()}


def measure_one(call: Callable[[], Any], warm: Callable[[], Any] | None = None, repeats: int = 1) -> tuple[Any, float]:
    """``measure`` of one call: its last result and its median seconds."""
    results, timings = measure({0: call}, repeats, warm={0: warm} if warm else None)
    return results[0], timings[0].seconds


def steady_epoch_s(epoch_seconds: list[float]) -> float:
    """The steady state of an epoch loop: the median epoch after the first (its warm-up)."""
    if len(epoch_seconds) < 2:
        raise ValueError(f"a steady state needs at least 2 epochs (the first is the warm-up), got {len(epoch_seconds)}")
    return statistics.median(epoch_seconds[1:])
