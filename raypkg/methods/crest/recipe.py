"""CREST's recipe (`effray run crest`): CREST or a baseline at the same budget, and its
algorithm (``CrestTraining``: its plan and callback, loaded as it trains, so that this module is
free of torch; the command line reads its settings).

Phases in the summary: ``selection`` (random subsets, proxies, facility location and the
quadratic model at every region start), ``check`` (the validity checks), ``train`` (the
rest of the training wall time) and ``eval``; per-check rows in ``checks.parquet`` and W&B.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from raypkg.algorithms import DATA, Algorithm, method_config, train_stack
from raypkg.engine.callbacks import Callback
from raypkg.methods.crest.config import CREST_ONLY, CrestSettings
from raypkg.recipe import EPOCH_METRICS, BenchCase, Recipe, Run
from raypkg.recipe_registry import register, register_case

if TYPE_CHECKING:
    from raypkg.data.base import DataSplits
    from raypkg.engine.trainer import TrainResult


class StepCounter(Callback):
    """Counts the optimizer steps this rank took (rank 0's count comes back from Ray Train)."""

    def __init__(self):
        self.steps = 0

    def on_step_end(self, ctx) -> None:
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]


def plan_and_callbacks(cfg: CrestSettings, n: int, actor_pool=None) -> tuple:
    """The batch plan and callbacks of ``cfg.selection_method`` (none: the engine's default)."""
    from raypkg.methods.crest.callback import CrestCallback
    from raypkg.methods.crest.plan import RandomSubsetPlan

    if cfg.selection_method == "crest":
        crest = CrestCallback(cfg, n, actor_pool)
        return crest.plan, [crest]
    if cfg.selection_method == "random":
        return RandomSubsetPlan(n, cfg.train_frac, cfg.batch_size, cfg.seed), []
    return None, []


class CrestTraining(Algorithm):
    """CREST (or a baseline at its budget) as an algorithm (``raypkg.algorithms``): its plan
    and callback, and a count of the steps taken; stacked onto another method with ``--with
    crest``. With ``--actors K`` it selects on the pool its caller lends (``run.shared``,
    a bench's) or on one it opens for the run. Its selection and check seconds, timed inside
    the training call, move to phases of their own."""

    name, order = "crest", DATA
    settings = CrestSettings
    metrics = ("crest_regions", "crest_checks", "crest_check_interval", "crest_candidates", "crest_selection_s",
               "crest_check_s")

    def __init__(self, cfg: CrestSettings, run: Run):
        self.cfg = cfg
        actor_pool = run.shared.get("actor_pool") or run.resources.enter_context(crest_actor_pool(cfg, run.data))
        self.plan, callbacks = plan_and_callbacks(cfg, len(run.data.train), actor_pool)
        self.crest = callbacks[0] if callbacks else None
        self.counter = StepCounter()
        self.callbacks = [*callbacks, self.counter]

    @staticmethod
    def check(cfg: CrestSettings, data: DataSplits) -> str | None:
        return cfg.check_sizes(len(data.train))

    def finish(self, run: Run, trained: TrainResult) -> dict:
        cfg, timings = self.cfg, run.sink.timings
        crest = self.crest.summary() if self.crest else {}
        timings.move(crest.get("selection_s", 0.0), "train", "selection")
        timings.move(crest.get("check_s", 0.0), "train", "check")
        checks = list(self.crest.checks) if self.crest else []
        if checks:
            run.sink.write_table("checks.parquet", {k: [c[k] for c in checks] for k in checks[0]},
                                 wandb_prefix="check")
        return dict(selection_method=cfg.selection_method, train_frac=cfg.train_frac, train_size=len(run.data.train),
                    steps=self.counter.steps, workers=cfg.workers, actors=cfg.actors,
                    overlap=cfg.overlap if cfg.actors else None, crest=crest,
                    **{k: crest.get(k, 0) for k in ("regions", "checks", "reselections", "dropped", "candidates",
                                                     "selection_wait_s")})


@contextlib.contextmanager
def crest_actor_pool(cfg: CrestSettings, data: DataSplits):
    """The shard-actor pool that selects the coresets (``--actors K``), or None. The actors
    leave one CPU to training, which runs while they select."""
    if cfg.selection_method != "crest" or cfg.actors == 0:
        yield None
        return
    from raypkg.distributed.shard_pool import open_pool

    with open_pool(data.train, cfg.actors, leave_cpus=1, placement=cfg.placement) as pool:
        yield pool


def train_with_coresets(run: Run) -> None:
    """Train with ``cfg.selection_method``'s plan; the selection and check seconds are
    phases of their own, taken out of the training wall time."""
    train_stack(run, lambda cfg: CrestTraining(cfg, run), desc=f"train {run.cfg.selection_method}")


CREST = register(Recipe("crest", method_config("crest"), [train_with_coresets],
                        label=lambda cfg: f"crest-{cfg.selection_method}", check=CrestTraining.check,
                        metrics=EPOCH_METRICS + CrestTraining.metrics))


def crest_point(method: str, fraction: float, s: dict, common: dict, n: int | None) -> CrestSettings:
    """CREST at ``fraction`` of full training's steps; random subsets of --random-subset-size,
    else the larger of 1% and 4 batches. `bench crest` also runs ``random`` (a fresh uniform
    subset per epoch), ``none`` (full data) and ``crest-2g`` (CREST stepping with twice the
    gradient, as its reference code does); only CREST selects on --actors."""
    subset = s.get("random_subset_size") or (max(0.01, 4 * s["batch_size"] / n) if n else 0.01)
    fields = {**common, "random_subset_size": min(subset, 1.0), "actors": s.get("actors", 0)}
    if not method.startswith("crest"):  # the baselines: CREST's settings left at their defaults
        fields = {k: v for k, v in fields.items() if k not in (*CREST_ONLY, "overlap")}
    return method_config("crest")(**fields, selection_method=method.removesuffix("-2g"), train_frac=fraction,
                                  reference_double_step=method == "crest-2g")


PAPER_WARMUP = 0.1  # the reference warms the LR up over 20 of its 200 epochs


def paper_warmup_epochs(epochs: int) -> int:
    """The reference's warm-up share of ``epochs`` (at least 1, and below ``epochs``)."""
    return min(max(1, round(PAPER_WARMUP * epochs)), epochs - 1)


# `bench crest --optimizers`: the label in its table, and the config fields each sets (given epochs)
OPTIMIZERS = {
    "paper": ("as in the paper (SGD, no momentum, warm-up)",
              lambda epochs: dict(momentum=0.0, lr_warmup_epochs=paper_warmup_epochs(epochs))),
    "momentum": ("SGD momentum 0.9, no warm-up", lambda epochs: dict(momentum=0.9, lr_warmup_epochs=0)),
}


def crest_examples(cfg: CrestSettings, summary: dict, n: int, per_example) -> tuple[int, float]:
    """Its steps times the batch size, dense."""
    seen = summary["steps"] * cfg.batch_size
    return seen, seen * per_example()


register_case(BenchCase("crest", "crest", ("crest",), "fractions", crest_point, crest_examples, marker="D"))
