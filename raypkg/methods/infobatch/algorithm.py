"""InfoBatch as an algorithm (``raypkg.algorithms``): its plan prunes each epoch, its
callback scores and reweighs (``plan``, loaded as it trains: this module is free of torch).
`effray run infobatch` (made from its row of ``raypkg.method_registry``), or stacked onto
another method with ``--with infobatch``."""

from __future__ import annotations

from raypkg.algorithms import DATA, Algorithm, method_point
from raypkg.methods.infobatch.config import InfoBatchSettings
from raypkg.recipe import BenchCase


def infobatch_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The examples each epoch kept (less a dropped ragged batch), dense."""
    from raypkg.engine.plans import trained_examples

    seen = sum(trained_examples(kept, cfg.batch_size, cfg.drop_last) for kept in summary["kept_per_epoch"])
    return seen, seen * per_example()


class InfoBatchPruning(Algorithm):
    """InfoBatch: each epoch prunes r of the well-learned examples at random and reweighs the rest.

    Well-learned: last seen loss below the mean. The kept ones weigh 1/(1-r), so an epoch's
    expected gradient is full data's; after --delta of the epochs all data trains. With no
    flags: r = 0.5, delta = 0.875 (the paper's), on the embedded digits data. summary.json
    has steps, full_steps and steps_saved; metrics.parquet the examples kept per epoch.

    \b
    Examples:
      effray run infobatch
      effray run infobatch --dataset digits-aug --model resnet20 --epochs 10 --lr 0.1
      effray run infobatch --prune-ratio 0.3 --delta 0.9 --workers 2
    """

    name, order = "infobatch", DATA
    settings = InfoBatchSettings
    metrics = ("infobatch_kept",)
    bench_cases = (BenchCase("infobatch", "infobatch", ("infobatch",), None, config=method_point,
                             examples=infobatch_examples, marker="P"),)

    def __init__(self, cfg, run):
        from raypkg.methods.infobatch.plan import InfoBatch

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
