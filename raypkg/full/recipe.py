"""`effray train`: full-data training, in-process or on Ray Train (the ``train`` recipe)."""

from __future__ import annotations

from raypkg.algorithms import train_stack
from raypkg.engine.config import TrainConfig
from raypkg.recipe import BenchCase, Recipe, Run
from raypkg.recipe_registry import register, register_case


def train_full(run: Run) -> None:
    """Train ``cfg.model`` on the whole training split (with the algorithms of --with)."""
    train_stack(run)
    run.note(workers=run.cfg.workers, epochs=run.cfg.for_training().epochs)


TRAIN = register(Recipe("train", TrainConfig, [train_full]))


def dense_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """Every epoch over the whole training set (less a dropped ragged batch), dense."""
    from raypkg.engine.plans import trained_examples

    seen = cfg.epochs * trained_examples(n, cfg.batch_size, cfg.drop_last)
    return seen, seen * per_example()


# "full-fp32", the frontier's reference: fp32 arithmetic and contiguous weights, whatever auto would choose
register_case(BenchCase("full", "train", ("full", "full-fp32"), None, examples=dense_examples, marker="s",
                        config=lambda method, value, s, common, n: TrainConfig(**common, **(
                            {"precision": "fp32", "memory_format": "contiguous"} if method == "full-fp32" else {}))))
