"""InfoBatch as an algorithm (``raypkg.algorithms``): its plan prunes each epoch, its
callback scores and reweighs. `effray run infobatch` (made from its row of
``raypkg.method_registry``), or stacked onto another method with ``--with infobatch``."""

from __future__ import annotations

from raypkg.algorithms import DATA, Algorithm
from raypkg.methods.infobatch.config import InfoBatchConfig
from raypkg.methods.infobatch.plan import InfoBatch
from raypkg.recipe import BenchCase


def infobatch_examples(cfg: InfoBatchConfig, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The examples each epoch kept (less a dropped ragged batch), dense."""
    from raypkg.engine.plans import trained_examples

    seen = sum(trained_examples(kept, cfg.batch_size, cfg.drop_last) for kept in summary["kept_per_epoch"])
    return seen, seen * per_example()


class InfoBatchPruning(Algorithm):
    name, order = "infobatch", DATA
    metrics = ("infobatch_kept",)
    bench_cases = (BenchCase("infobatch", "infobatch", ("infobatch",), None,
                             config=lambda method, value, s, common, n: InfoBatchConfig(**common),
                             examples=infobatch_examples, marker="P"),)

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.infobatch = InfoBatch(len(run.data.train), cfg.batch_size, cfg.seed, cfg.prune_ratio, cfg.pruning_epochs())
        self.plan, self.callbacks = self.infobatch.plan, [self.infobatch]

    @staticmethod
    def headline(summary: dict) -> str:
        return f"steps {summary['steps']} of {summary['full_steps']} (saved {summary['steps_saved']:.1%})"

    def finish(self, run, trained) -> dict:
        """The steps taken, the steps full-data training takes and the share saved."""
        cfg = self.cfg
        return dict(prune_ratio=cfg.prune_ratio, delta=cfg.delta, epochs=cfg.epochs, workers=cfg.workers,
                    train_size=len(run.data.train), **self.infobatch.summary())
