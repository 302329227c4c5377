"""`effray train`: full-data training, in-process or on Ray Train (the ``train`` recipe)."""

from __future__ import annotations

from raypkg.algorithms import train_stack
from raypkg.engine.config import TrainConfig
from raypkg.recipe import BenchCase, Recipe, Run, dense_examples
from raypkg.recipe_registry import register, register_case


def train_full(run: Run) -> None:
    """Train ``cfg.model`` on the whole training split (with the algorithms of --with)."""
    train_stack(run)
    run.note(workers=run.cfg.workers, epochs=run.cfg.for_training().epochs)


TRAIN = register(Recipe("train", TrainConfig, [train_full]))


# "full-fp32", the frontier's reference: fp32 arithmetic and contiguous weights, whatever auto would choose
register_case(BenchCase("full", "train", ("full", "full-fp32"), None, examples=dense_examples, marker="s",
                        config=lambda method, value, s, common, n: TrainConfig(**common, **(
                            {"precision": "fp32", "memory_format": "contiguous"} if method == "full-fp32" else {}))))
