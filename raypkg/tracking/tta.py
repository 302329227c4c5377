"""Time-to-accuracy (DAWNBench, MLPerf Training): the seconds from a run's start to the end
of the first epoch whose test accuracy reaches a target.

The clock starts when the run's first phase does (warm-up, selection, pre-training: the
preparation a method needs counts, as in MLPerf and the RS2 paper) and stops at the end of
the first epoch at or above the target; the evaluations before it are taken out and
reported apart (``eval_s``). Epoch rows carry ``epoch_end_time`` (wall clock, so Ray
Train's ranks count too) and ``eval_s`` (``raypkg.engine.loop.fit``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def time_to_accuracy(rows: Sequence[dict], started_at: float, target: float) -> dict[str, Any]:
    """``tta_s`` (None: never reached), ``tta_epoch`` and ``tta_eval_s``, the evaluation
    seconds taken out, for the epoch rows of a run started at ``started_at`` (wall clock)."""
    eval_before = 0.0
    for row in rows:
        acc, end = row.get("test_acc"), row.get("epoch_end_time")
        if acc is None or end is None or (isinstance(acc, float) and math.isnan(acc)):
            continue
        if acc >= target:
            return {"tta_s": end - started_at - eval_before, "tta_epoch": row.get("epoch"), "tta_eval_s": eval_before}
        eval_before += row.get("eval_s", 0.0)
    return {"tta_s": None, "tta_epoch": None, "tta_eval_s": eval_before}


def charged_time_to_accuracy(summary: dict, target: float) -> float | None:
    """A finished run's ``tta_s`` for ``target`` with its cached work (warm-ups, shard models,
    selections reused from the cache) charged its original seconds, as its ``cost_s`` is
    (``raypkg.tracking.timings.Timings``); None if never reached."""
    tta = time_to_accuracy(summary["rows"], summary["started_at"], target)["tta_s"]
    if tta is None:
        return None
    phases = summary.get("phases", {})
    return tta + sum(cost - phases.get(name, 0.0) for name, cost in summary.get("cost_s", {}).items())
