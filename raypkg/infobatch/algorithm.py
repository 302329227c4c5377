"""InfoBatch as an algorithm (``raypkg.algorithms``): its plan prunes each epoch, its
callback scores and reweighs; stacked onto another method with ``--with infobatch``."""

from __future__ import annotations

from raypkg.algorithms import DATA, Algorithm
from raypkg.infobatch.plan import InfoBatch


class InfoBatchPruning(Algorithm):
    name, order = "infobatch", DATA

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.infobatch = InfoBatch(len(run.data.train), cfg.batch_size, cfg.seed, cfg.prune_ratio, cfg.pruning_epochs())
        self.plan, self.callbacks = self.infobatch.plan, [self.infobatch]

    def finish(self, run, trained) -> dict:
        """The steps taken, the steps full-data training takes and the share saved."""
        cfg = self.cfg
        return dict(prune_ratio=cfg.prune_ratio, delta=cfg.delta, epochs=cfg.epochs, workers=cfg.workers,
                    train_size=len(run.data.train), **self.infobatch.summary())
