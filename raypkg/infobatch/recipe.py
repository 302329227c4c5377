"""The InfoBatch recipe (`effray run infobatch`): the engine's training with InfoBatch's plan
and callback (``raypkg.infobatch.plan``); the summary has the steps taken, the steps
full-data training takes, and the share saved."""

from __future__ import annotations

from raypkg.engine.runner import use_augmentation
from raypkg.engine.trainer import train
from raypkg.infobatch.config import InfoBatchConfig
from raypkg.infobatch.plan import InfoBatch
from raypkg.recipe import EPOCH_METRICS, BenchCase, Recipe, Run, register, register_case


def train_infobatch(run: Run) -> None:
    cfg = run.cfg
    infobatch = InfoBatch(len(run.data.train), cfg.batch_size, cfg.seed, cfg.prune_ratio, cfg.pruning_epochs())
    with run.sink.phase("train"):
        run.trained = train(cfg, run.data, plan=infobatch.plan, callbacks=[infobatch],
                            augment=use_augmentation(cfg, run.data), on_epoch=run.sink.log_metrics,
                            storage=run.sink.storage, desc="infobatch")
    run.note(prune_ratio=cfg.prune_ratio, delta=cfg.delta, epochs=cfg.epochs, workers=cfg.workers,
             train_size=len(run.data.train), **infobatch.summary())


INFOBATCH = register(Recipe("infobatch", InfoBatchConfig, [train_infobatch],
                            metrics=EPOCH_METRICS + ("infobatch_kept",)))


def infobatch_examples(cfg: InfoBatchConfig, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The examples each epoch kept, dense."""
    seen = sum(summary["kept_per_epoch"])
    return seen, seen * per_example()


register_case(BenchCase("infobatch", "infobatch", ("infobatch",), None,
                        config=lambda method, value, s, common, n: InfoBatchConfig(**common),
                        examples=infobatch_examples, marker="P"))
