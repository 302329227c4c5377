"""``Timings``: where a run's seconds went, the one record every recipe writes through its
sink and every consumer reads (summary.json's ``phases`` and ``cost_s``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Timings:
    """Where a run's seconds went: the one record every recipe writes (through its sink's
    ``timings``) and every consumer reads (summary.json's ``phases`` and ``cost_s``).

    ``phases``: the seconds each phase took in this run (repeats add up). ``charged``: the
    seconds a phase is charged for work it reused from the cache (a warm-up, shard models,
    a selection), their original seconds. ``cost()``, what a bench adds up end to end:
    each phase's charged seconds where it has them, else its own."""

    phases: dict[str, float] = field(default_factory=dict)
    charged: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str):
        """Add the seconds the ``with`` block takes to phase ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        """Seconds of phase ``name`` measured elsewhere (a training loop's own clock)."""
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def move(self, seconds: float, source: str, target: str) -> None:
        """``seconds`` timed inside phase ``source``'s block were phase ``target``'s work
        (selection rounds inside the training loop)."""
        self.phases[source] = self.phases.get(source, 0.0) - seconds
        self.add(target, seconds)

    def charge(self, name: str, seconds: float) -> None:
        """Phase ``name`` costs ``seconds``, whatever it took here (cached work's original seconds)."""
        self.charged[name] = seconds

    def cost(self) -> dict[str, float]:
        return {**self.phases, **self.charged}

    def summary(self) -> dict[str, dict[str, float]]:
        return {"phases": dict(self.phases), "cost_s": self.cost()}


def wall_split(wall: float, rows: list[dict]) -> dict[str, float]:
    """``epochs_s`` (the metrics rows' ``epoch_s`` summed) and ``overhead_s`` (the rest of
    the wall time: start-up, selection, evaluation, saving); empty without epoch rows."""
    if not any("epoch_s" in row for row in rows):
        return {}
    epochs = sum(row.get("epoch_s", 0.0) for row in rows)
    return {"epochs_s": epochs, "overhead_s": wall - epochs}
