"""Forgetting (Toneva et al., "An Empirical Study of Example Forgetting during Deep Neural
Network Learning", ICLR 2019, Sec. 2; DeepCore ``deepcore/methods/forgetting.py``).

With acc_i^t = 1[argmax f(x_i) = y_i] at the t-th presentation of example i during
training, a forgetting event is a presentation where the example goes from correct to
wrong, acc_i^{t-1} > acc_i^t (the paper's definition); the score of i is its number of
events, counted over DeepCore's warm-up epochs (``--pretrain-epochs``) from the logits of
each training batch's forward pass, before that batch's step, as DeepCore's ``after_loss``
does (on the augmented inputs when the warm-up augments). ``ForgettingEvents`` is that
count as an engine callback; ``pipeline.pretrain_full`` trains the warm-up with it and
caches its counts with the warm-up, so a cache hit selects the same subset.

The k most forgotten examples are kept (per class when balanced). Presentations start from
"wrong", so the first one is never an event. An example never learned has no event,
as in DeepCore (the paper counts it as forgotten infinitely often): it ranks with the
unforgettable ones. Equal counts (most examples have none) are ordered by a permutation
drawn from the seed, where DeepCore's ``argsort`` leaves the order to numpy's sort (with
``--pretrain-epochs 0`` every count is 0 and the subset is a seeded random one).
Weights are 1; the score is the count (higher = more forgotten, the order top-k keeps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from raypkg.engine.callbacks import Callback
from raypkg.errors import UsageError
from raypkg.selection.registry import Picks, SelectionContext, register_selector

if TYPE_CHECKING:
    from raypkg.engine.callbacks import TrainContext


class ForgettingEvents(Callback):
    """Counts forgetting events per training position over an in-process fit (the warm-up
    always is one; under DDP each rank would count only the examples it sees)."""

    def __init__(self, n: int):
        self.counts = torch.zeros(n, dtype=torch.long)
        self.last_correct = torch.zeros(n, dtype=torch.bool)  # acc at the latest presentation

    def record(self, positions: torch.Tensor, correct: torch.Tensor) -> None:
        """One presentation of ``positions`` (distinct), ``correct`` their acc^t."""
        positions, correct = positions.cpu(), correct.cpu().bool()
        self.counts[positions] += (self.last_correct[positions] & ~correct).long()
        self.last_correct[positions] = correct

    def on_step_end(self, ctx: "TrainContext") -> None:
        batch = ctx.batch
        self.record(batch.positions, batch.logits.detach().argmax(1) == batch.y)

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.clone(), "last_correct": self.last_correct.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts, self.last_correct = state["counts"].clone(), state["last_correct"].clone()


def most_forgotten(counts: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Positions of the k largest ``counts``, equal counts in a seeded random order."""
    shuffled = torch.randperm(len(counts), generator=generator)
    return shuffled[torch.sort(counts[shuffled], descending=True, stable=True).indices[:k]]


@register_selector("forgetting", "Forgetting: the k examples forgotten most often during the warm-up "
                                 "(correct, then wrong at the next presentation)",
                   scores=True, streams=True, warmup_callback=ForgettingEvents)
def forgetting(ctx: SelectionContext) -> Picks:
    record = getattr(ctx.model, "warmup_record", None)
    if record is None or len(record["counts"]) != len(ctx.data):
        raise UsageError("forgetting counts events during DeepCore's warm-up (effray select / run coreset "
                         "--pretrain-epochs N); this model carries no counts for this dataset")
    counts = record["counts"].double()
    picks = torch.cat([pos[most_forgotten(counts[pos], k, ctx.generator(c))]
                       for c, (pos, k) in enumerate(ctx.blocks())])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), counts[picks], all_scores=counts)
