"""Coreset training as algorithms (``raypkg.algorithms``), the data plan of a stack:

- ``SubsetTraining``: a selected subset, fixed (its split, its loss weights as
  ``cfg.weighting`` says, ``raypkg.selection.weighting``) or drawn afresh each epoch by the
  selector's plan over the whole set (RS2);
- ``Reselection``: the subset selected again every R epochs with the model being trained
  (``raypkg.selection.adaptive``).
"""

from __future__ import annotations

import dataclasses

from raypkg.algorithms import DATA, Algorithm
from raypkg.selection.registry import SelectionResult, get_selector
from raypkg.selection.weighting import training_weights


class SubsetTraining(Algorithm):
    name, order = "coreset", DATA

    def __init__(self, cfg, data, result: SelectionResult):
        self.cfg = cfg
        epoch_plan = get_selector(cfg.selection).epoch_plan
        if epoch_plan is not None:
            self.plan = epoch_plan(data.train, result, cfg.batch_size, cfg.seed, cfg.balance)
        else:
            self.split = dataclasses.replace(data, train=data.train.subset(result.positions))
            self.weights, self.plan = training_weights(result.weights, cfg.weighting, cfg.weight_cap,
                                                       cfg.batch_size, cfg.seed)

    def finish(self, run, trained) -> dict:
        cfg = self.cfg
        return dict(weighting=cfg.weighting, weight_cap=cfg.weight_cap, epochs=cfg.epochs, workers=cfg.workers)


class Reselection(Algorithm):
    """Training from ``initial``'s subset, selected again every ``cfg.reselect_every`` epochs
    from epoch ``first``; epochs before ``full_epochs`` train on the full data and epochs
    from there to ``first`` take no step (CORDS's warm start). The rounds' seconds move
    from the train phase to the selection phase; rounds.parquet holds every round's subset."""

    name, order = "coreset", DATA

    def __init__(self, cfg, data, initial: SelectionResult, *, first: int, full_epochs: int, cache=None, pool=None):
        from raypkg.selection.adaptive import Reselect, SubsetPlan

        self.cfg, self.first, self.full_epochs = cfg, first, full_epochs
        self.plan = SubsetPlan(len(data.train), initial.positions, initial.weights, cfg.weighting, cfg.weight_cap,
                               cfg.batch_size, cfg.seed, full_epochs=full_epochs, skip_until=first or 0)
        self.reselect = Reselect(cfg.reselect_every, first or None, cache=cache, pool=pool)
        self.callbacks = [self.reselect]

    def finish(self, run, trained) -> dict:
        cfg, rounds, timings = self.cfg, self.reselect.rounds, run.sink.timings
        timings.move(sum(r["seconds"] for r in rounds), "train", "selection")
        timings.charge("selection", timings.charged.get("selection", 0.0) + sum(r["charged_s"] for r in rounds))
        run.sink.write_table("rounds.parquet", self.reselect.table(run.data.train.index.cpu(),
                                                                   run.data.train.y.cpu()))
        return dict(weighting=cfg.weighting, weight_cap=cfg.weight_cap, epochs=cfg.epochs, workers=cfg.workers,
                    reselect_every=cfg.reselect_every, warm_start=cfg.warm_start, warm_epochs=self.full_epochs,
                    skipped_epochs=self.first - self.full_epochs, per_batch=cfg.per_batch, selection_rounds=rounds)
