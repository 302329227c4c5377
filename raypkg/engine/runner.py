"""`effray train`: full-data training, in-process or on Ray Train (the ``train`` recipe)."""

from __future__ import annotations

from raypkg.data.augment import CropFlip
from raypkg.engine.config import TrainConfig
from raypkg.engine.trainer import train
from raypkg.recipe import BenchCase, Recipe, Run, register, register_case


def use_augmentation(cfg: TrainConfig, data) -> CropFlip | None:
    """The dataset's crop+flip when it takes one, unless the config turns it off."""
    wanted = data.augmentable if cfg.augment is None else cfg.augment and data.augmentable
    return CropFlip(data.crop_padding, data.flip) if wanted else None


def train_full(run: Run) -> None:
    """Train ``cfg.model`` on the whole training split."""
    cfg = run.cfg
    with run.sink.phase("train"):
        run.trained = train(cfg, run.data, augment=use_augmentation(cfg, run.data), on_epoch=run.sink.log_metrics,
                            storage=run.sink.storage)
    run.note(workers=cfg.workers, epochs=cfg.epochs)


TRAIN = register(Recipe("train", TrainConfig, [train_full]))


def dense_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """Every epoch over the whole training set, dense."""
    return cfg.epochs * n, cfg.epochs * n * per_example()


register_case(BenchCase("full", "train", ("full",), None, examples=dense_examples, marker="s",
                        config=lambda method, value, s, common, n: TrainConfig(**common)))
