"""``CrestSettings``: every knob of the CREST reference code, mixed into a config that trains
(`effray run crest`'s, ``raypkg.algorithms.method_config("crest")``, or another method's with
``--with crest``); free of torch (the command line reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from raypkg.algorithms import MethodSettings
from raypkg.engine.config import setting
from raypkg.errors import UsageError, choose

SELECTION_METHODS = ("crest", "random", "none")
# What only CREST's selection uses (the random and none baselines select nothing), and what
# only dropping learned examples uses.
CREST_ONLY = ("random_subset_size", "num_minibatch_coreset", "batch_num_mul", "interval_mul", "check_thresh_factor",
              "approx_moment", "approx_with_coreset", "loss0_on_subsets", "hessian_probes", "drop_learned", "actors")
DROPPING = ("watch_interval", "drop_interval", "drop_thresh", "min_train_size")


@dataclass
class CrestSettings(MethodSettings):
    """CREST and its baselines at the same step budget (spec crest.md, "Budget").

    ``train_frac`` f: every epoch takes f * N / batch_size steps, rounded down with
    --drop-last and up with --keep-last (f times full training's), for ``crest`` (coreset mini-batches) and ``random`` (a fresh uniform
    subset of f * N per epoch, one pass); ``none`` trains on all the data for the full
    budget. The LR schedule (warm-up, milestones, gamma) is the engine's, in epochs.
    """

    BATCH_PLAN: ClassVar[str | None] = "CREST's coreset mini-batches"
    PLAN_READS_FILES: ClassVar[bool] = True  # streamed images: read by the plan, in process
    NEEDS: ClassVar[dict] = {**{name: (lambda cfg: cfg.selection_method == "crest", "is CREST's: the random and none baselines "
                                                                   "select nothing (drop it, or use "
                                                                   "--selection-method crest)")
                for name in CREST_ONLY},
             **{name: (lambda cfg: cfg.drop_learned, "acts only when learned examples are dropped: add "
                                                     "--drop-learned, or drop it")
                for name in DROPPING}}

    selection_method: str = setting("crest", "crest, or a baseline at the same budget: random (a fresh uniform "
                                             "subset of f*N each epoch) or none (all data, full budget).",
                                    choices=SELECTION_METHODS)
    train_frac: float = setting(0.1, "Fraction f of full training's SGD steps (per epoch f*N/B, rounded down with --drop-last).")
    random_subset_size: float = setting(0.01, "Size of each random subset, as a fraction of N (stratified).")
    num_minibatch_coreset: int = setting(5, "P: random subsets, one mini-batch coreset each, per region.")
    batch_num_mul: float = setting(1.0, "Coresets per region = P * this * curvature ratio (first/current).")
    interval_mul: float = setting(1.0, "Check interval = P * this * curvature ratio steps.")
    check_thresh_factor: float = setting(0.1, "Re-select when |true - predicted loss| > this * true loss.")
    approx_moment: bool = setting(True, "Adam-style EMAs of the gradient and Hessian diagonal across regions.")
    approx_with_coreset: bool = setting(True, "Quadratic model on the weighted coresets (else the random subsets).")
    loss0_on_subsets: bool = setting(False, "Not in the paper: the quadratic model's L0 from the check's random "
                                            "subsets (g, H stay on the coresets), so it has no error at w0.")
    hessian_probes: int = setting(1, "Rademacher probes of the Hutchinson Hessian diagonal per region.")
    drop_learned: bool = setting(False, "Exclude learned examples from the candidates (the examples selection "
                                 "draws from).")
    watch_interval: int = setting(5, "Epochs an example's losses are watched before it counts as learned.")
    drop_interval: int = setting(20, "Drop learned examples every this many epochs.")
    drop_thresh: float = setting(0.1, "Learned: every watched loss below this.")
    min_train_size: int | None = setting(None, "The candidates never shrink below this many examples (default 80% "
                                         "of N).")
    reference_double_step: bool = setting(False, "The reference code's quirk, off by default: CREST steps with twice "
                                                 "the gradient (a second loss.backward() accumulates into p.grad), "
                                                 "so twice the effective LR of its random and full-data baselines, "
                                                 "which step once.")
    actors: int = setting(0, "Shard actors that select the coresets from a weight snapshot (0: in-process).")
    overlap: bool = setting(True, "With --actors: each region start sends the next region's selection to the "
                                  "actors, which run it while this region trains, from a snapshot of the weights "
                                  "at this region's start, so the next region's coresets are one region stale "
                                  "(--no-overlap: training waits for a fresh selection at every region start).")

    def checks(self) -> None:
        choose("selection method", self.selection_method, SELECTION_METHODS)
        if not 0.0 < self.train_frac <= 1.0:
            raise UsageError(f"train-frac must be in (0, 1], got {self.train_frac:g}")
        if not 0.0 < self.random_subset_size <= 1.0:
            raise UsageError(f"random-subset-size must be in (0, 1], got {self.random_subset_size:g}")
        for name in ("num_minibatch_coreset", "hessian_probes", "watch_interval", "drop_interval"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        for name in ("batch_num_mul", "interval_mul", "check_thresh_factor", "drop_thresh"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name):g}")
        if self.min_train_size is not None and self.min_train_size < 1:
            raise UsageError(f"min-train-size must be a positive integer, got {self.min_train_size}")
        if self.actors < 0:
            raise UsageError(f"actors must be >= 0, got {self.actors}")
        if not self.overlap and not self.actors:
            raise UsageError("--no-overlap is for --actors K: in-process selection never overlaps training")
        if self.reference_double_step and self.selection_method != "crest":
            raise UsageError(f"--reference-double-step is CREST's (the reference code's) quirk; the "
                             f"{self.selection_method} baseline steps once")
        if self.actors and self.workers:
            raise UsageError("--actors selects for in-process training; with --workers every rank selects its "
                             "own coresets (give one of them)")

    def check_sizes(self, n: int) -> str | None:
        """What depends on the data's size N: the candidates' floor must hold one random subset
        per rank and fit in N. Returns a note when the random subsets were floored at the
        batch size (``subset_size``), else None."""
        if self.selection_method != "crest":
            return None
        subset = self.subset_size(n)
        if subset > n:
            raise UsageError(f"a random subset must hold one batch of {self.batch_size}, but the training set has "
                             f"{n} examples; lower --batch-size")
        floor = self.min_candidates(n)
        if floor > n:
            raise UsageError(f"min-train-size {floor} is larger than the training set ({n} examples)")
        if floor < subset * max(self.workers, 1):
            raise UsageError(f"min-train-size {floor} cannot hold one random subset of {subset} per worker")
        raw = round(self.random_subset_size * n)
        if raw < subset:
            return (f"random subsets of {subset} examples: --random-subset-size {self.random_subset_size:g} x {n} = "
                    f"{raw} is less than one batch, so they are floored at the batch size {self.batch_size}")
        return None

    def subset_size(self, n: int) -> int:
        """Examples per random subset: ``random_subset_size`` x N, at least one batch (a
        mini-batch coreset is picked from each)."""
        return max(self.batch_size, round(self.random_subset_size * n))

    def min_candidates(self, n: int) -> int:
        """The fewest examples learned-example dropping leaves in play (--min-train-size)."""
        return self.min_train_size if self.min_train_size is not None else int(0.8 * n)

