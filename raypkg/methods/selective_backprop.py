"""Selective backprop (Jiang et al., "Accelerating Deep Learning by Focusing on the Biggest
Losers", 2019; Composer's ``SelectiveBackprop``): score every example of a batch by a forward
pass without gradients, then train (forward and backward) only a subset biased to high loss.

On a selective step the batch's B losses are ranked; example i at percentile
p_i = (rank_i + 0.5) / B (rank 0: the lowest loss) is drawn with probability proportional to
p_i ** (1 / keep - 1) (Jiang et al., sec. 3, the selection probability P(select) = p^beta;
Composer's exponent), round(keep x B) examples (at least 1) without replacement. A step is
selective inside the window [start, end) of training (fractions of its epochs) unless it is
an interrupt step: every ``interrupt``-th step trains the full batch. Composer's defaults:
start 0.5, end 0.9, keep 0.5, interrupt 2. Composer's ``scale_factor`` (a scoring pass on
down-scaled images) is left out: the scoring pass sees the batch as trained.

keep = 1, an empty window (start = end) or interrupt = 1 does no scoring pass: plain
training, bit for bit. The scoring pass costs a forward pass per example; Kaddour et al.
(*No Train No Gain*, NeurIPS 2023) found the method's gains vanish once it is charged, so
the frontier charges it (``sb_examples``, ``SelectiveBackprop.stacked_flops``).

One algorithm on the engine's loop (``raypkg.algorithms``): a callback replaces the step's
batch at ``on_batch_start``. `effray run selective-backprop`, or ``--with
selective-backprop`` on any method's training. Free of torch at import: the command line
loads this module to build its flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from raypkg.algorithms import DATA, Algorithm, MethodSettings, kept_count, method_point
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import setting
from raypkg.errors import UsageError
from raypkg.recipe import BenchCase


@dataclass
class SelectiveBackpropSettings(MethodSettings):
    """Selective backprop's four knobs (Composer's defaults), mixed into a config that trains
    (`effray run selective-backprop`'s, or another method's with ``--with selective-backprop``)."""

    sb_start: float = setting(0.5, "Selective steps begin at this fraction of training.")
    sb_end: float = setting(0.9, "Selective steps end at this fraction of training (start = end: never, plain "
                                 "training).")
    sb_keep: float = setting(0.5, "The fraction of a batch trained on a selective step, drawn biased to high loss "
                                  "(1: the whole batch, no scoring pass, plain training).")
    sb_interrupt: int = setting(2, "Every Nth step trains the full batch even inside the window (0: none; 1: every "
                                   "step, plain training).")

    def checks(self) -> None:
        if not 0.0 <= self.sb_start <= self.sb_end <= 1.0:
            raise UsageError(f"sb-start and sb-end must satisfy 0 <= start <= end <= 1, got start "
                             f"{self.sb_start:g} and end {self.sb_end:g}")
        if not 0.0 < self.sb_keep <= 1.0:
            raise UsageError(f"sb-keep must be in (0, 1], got {self.sb_keep:g}")
        if self.sb_interrupt < 0:
            raise UsageError(f"sb-interrupt must be >= 0, got {self.sb_interrupt}")


def select_by_loss(losses, keep: float, generator):
    """The batch positions (ascending) of kept_count(B, keep) examples drawn without
    replacement, each with probability proportional to its loss percentile
    p_i = (rank_i + 0.5) / B raised to 1 / keep - 1 (Jiang et al. 2019; ties by position)."""
    import torch

    size = len(losses)
    ranks = torch.empty(size, dtype=torch.long)
    ranks[torch.argsort(losses.detach().cpu(), stable=True)] = torch.arange(size)
    percentiles = (ranks.double() + 0.5) / size
    chosen = torch.multinomial(percentiles ** (1.0 / keep - 1.0), kept_count(size, keep), replacement=False,
                               generator=generator)
    return torch.sort(chosen).values


def scoring_losses(model, x, y, precision: str = "fp32"):
    """Per-example cross-entropy of ``model`` on (x, y): no gradients, at ``precision``, train
    mode (batch norm normalises by the batch's statistics, as the training pass will). The pass
    leaves no trace: the buffers (batch norm's running statistics, its step counter) are put
    back, and the RNG (dropout) is forked, so the steps after it are those it would be without it."""
    import torch
    import torch.nn.functional as F

    from raypkg.engine.execution import autocast

    saved = [buffer.detach().clone() for buffer in model.buffers()]
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        with autocast(precision, x.device):
            logits = model(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        for buffer, value in zip(model.buffers(), saved):
            buffer.copy_(value)
    return losses


class BiggestLosers(Callback):
    """Replaces a selective step's batch by its drawn subset (positions, inputs, targets, the
    plan's weights), and counts every example-pass: summed over the ranks at each epoch's end."""

    COUNTS = ("planned", "scored", "trained", "selective_steps", "steps")

    def __init__(self, start: float, end: float, keep: float, interrupt: int):
        self.start, self.end, self.keep, self.interrupt = start, end, keep, interrupt
        self.totals = dict.fromkeys(self.COUNTS, 0)  # over the ranks, finished epochs
        self.epoch = dict.fromkeys(self.COUNTS, 0)  # this rank, this epoch

    def selects(self, ctx) -> bool:
        """Inside the window (the LR schedule's fractional epoch over the run's) and not an interrupt step."""
        progress = (ctx.epoch + ctx.step_in_epoch / max(ctx.steps_in_epoch, 1)) / ctx.cfg.epochs
        interrupted = self.interrupt > 0 and (ctx.global_step + 1) % self.interrupt == 0
        return self.start <= progress < self.end and not interrupted

    def on_epoch_start(self, ctx) -> None:
        self.epoch = dict.fromkeys(self.COUNTS, 0)

    def on_batch_start(self, ctx) -> None:
        import numpy as np
        import torch

        batch, size = ctx.batch, len(ctx.batch.y)
        self.epoch["planned"] += size
        self.epoch["steps"] += 1
        if not self.selects(ctx) or kept_count(size, self.keep) >= size:
            return  # the whole batch trains, unscored
        losses = scoring_losses(ctx.model, batch.x, batch.y, ctx.cfg.precision)  # the unwrapped model: no DDP sync for it
        seed = np.random.SeedSequence([ctx.cfg.seed, ctx.global_step, ctx.rank]).generate_state(1)[0]
        kept = select_by_loss(losses, self.keep, torch.Generator().manual_seed(int(seed)))
        self.epoch["scored"] += size
        self.epoch["selective_steps"] += 1
        ctx.batch = replace(batch, positions=batch.positions[kept.to(batch.positions.device)],
                            x=batch.x[kept.to(batch.x.device)], y=batch.y[kept.to(batch.y.device)],
                            weights=None if batch.weights is None else batch.weights[kept.to(batch.weights.device)])

    def on_after_backward(self, ctx) -> None:
        self.epoch["trained"] += len(ctx.batch.y)  # what the step trained, whoever cut the batch

    def on_epoch_end(self, ctx, row: dict) -> None:
        import torch

        counts = ctx.all_reduce(torch.tensor([self.epoch[k] for k in self.COUNTS], dtype=torch.float64,
                                             device=ctx.device))
        epoch = dict(zip(self.COUNTS, (int(v) for v in counts.tolist())))
        for key, value in epoch.items():
            self.totals[key] += value
        row["sb_trained"] = epoch["trained"] / max(epoch["planned"], 1)

    def notes(self) -> dict:
        t = self.totals
        return {"planned_examples": t["planned"], "scored_examples": t["scored"],
                "forward_example_passes": t["scored"] + t["trained"], "backward_example_passes": t["trained"],
                "selective_steps": t["selective_steps"], "steps": t["steps"]}

    def state_dict(self) -> dict:
        return {"totals": dict(self.totals)}

    def load_state_dict(self, state: dict) -> None:
        self.totals = dict(state["totals"])


def sb_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The examples the plan gave, and the forward FLOPs of what the run did: scoring and
    training forward passes at one forward each, backward passes at two (so the frontier's
    3 x gives (forward + 2 x backward) x the model's forward FLOPs)."""
    work = summary["forward_example_passes"] + 2 * summary["backward_example_passes"]
    return summary["planned_examples"], work / 3 * per_example()


class SelectiveBackprop(Algorithm):
    """Selective backprop: inside a window of training, train each batch's high-loss examples only.

    A forward pass without gradients scores the batch; keep x B of its examples, drawn with
    probability rising with their loss percentile (Jiang et al. 2019), train; every
    --sb-interrupt-th step trains the whole batch. With no flags: Composer's defaults (window
    0.5 to 0.9 of training, keep 0.5, interrupt 2), on the embedded digits data. --sb-keep 1
    is plain training, bit for bit. summary.json counts the forward and backward example-passes.

    \b
    Examples:
      effray run selective-backprop
      effray run selective-backprop --dataset digits-aug --model resnet20 --epochs 10 --sb-keep 0.3
      effray run infobatch --with selective-backprop --sb-start 0 --sb-end 1
    """

    name, order = "selective-backprop", DATA  # it cuts the batch, before the loss and the masks act
    settings = SelectiveBackpropSettings
    metrics = ("sb_trained",)
    bench_cases = (BenchCase("selective-backprop", "selective-backprop", ("selective-backprop",), None,
                             config=method_point, examples=sb_examples, default=False, marker=">"),)

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.losers = BiggestLosers(cfg.sb_start, cfg.sb_end, cfg.sb_keep, cfg.sb_interrupt)
        self.callbacks = [self.losers]

    @staticmethod
    def work_share(cfg) -> float:
        """The estimated work of training with it over plain training's, from the config alone:
        a selective step costs B scoring forwards and 3 k B to train (k = kept_count / B, at
        the configured batch size) against plain's 3 B; a share s of the steps is selective,
        (end - start) x (1 - 1 / interrupt) (every step for interrupt 0). Short last batches,
        a plan's varying epoch lengths and what others do to the batch are not counted."""
        kept = kept_count(cfg.batch_size, cfg.sb_keep)
        if kept >= cfg.batch_size:
            return 1.0  # no scoring pass, every example trains
        share = (cfg.sb_end - cfg.sb_start) * (1.0 - 1.0 / cfg.sb_interrupt if cfg.sb_interrupt else 1.0)
        selective = (1.0 + 3.0 * kept / cfg.batch_size) / 3.0
        return 1.0 - share + share * selective

    @staticmethod
    def stacked_flops(cfg, per_example):
        """Every example's forward FLOPs scaled by ``work_share``: an estimate (the run's own
        counts are in its notes)."""
        share = SelectiveBackprop.work_share(cfg)
        return lambda density=1.0, init="ERK": share * per_example(density, init)

    @staticmethod
    def headline(summary: dict) -> str:
        work = summary["forward_example_passes"] + 2 * summary["backward_example_passes"]
        return (f"trained {summary['backward_example_passes']} of {summary['planned_examples']} examples "
                f"({summary['selective_steps']} selective steps of {summary['steps']}); work "
                f"{work / max(3 * summary['planned_examples'], 1):.1%} of plain training's")

    def finish(self, run, trained) -> dict:
        """Its settings and the run's example-passes: forward (scoring + training) and backward."""
        cfg = self.cfg
        return {"sb_start": cfg.sb_start, "sb_end": cfg.sb_end, "sb_keep": cfg.sb_keep,
                "sb_interrupt": cfg.sb_interrupt, **self.losers.notes()}
