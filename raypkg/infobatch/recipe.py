"""The InfoBatch recipe (`effray run infobatch`): its algorithm (``raypkg.infobatch.algorithm``)
alone on the engine's training; the summary has the steps taken, the steps
full-data training takes, and the share saved."""

from __future__ import annotations

from raypkg.algorithms import train_stack
from raypkg.infobatch.algorithm import InfoBatchPruning
from raypkg.infobatch.config import InfoBatchConfig
from raypkg.recipe import EPOCH_METRICS, BenchCase, Recipe, Run, register, register_case


def train_infobatch(run: Run) -> None:
    train_stack(run, lambda cfg: InfoBatchPruning(cfg, run), desc="infobatch")


INFOBATCH = register(Recipe("infobatch", InfoBatchConfig, [train_infobatch],
                            metrics=EPOCH_METRICS + ("infobatch_kept",)))


def infobatch_examples(cfg: InfoBatchConfig, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The examples each epoch kept, dense."""
    seen = sum(summary["kept_per_epoch"])
    return seen, seen * per_example()


register_case(BenchCase("infobatch", "infobatch", ("infobatch",), None,
                        config=lambda method, value, s, common, n: InfoBatchConfig(**common),
                        examples=infobatch_examples, marker="P"))
