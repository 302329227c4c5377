"""The selector registry and ``select``, the one entry point every method goes through.

A selector is one function ``fn(ctx: SelectionContext) -> Picks`` registered with
``@register_selector(name, description, options={...})`` in a module that
``raypkg.selection.methods`` imports: a new method is one new file plus that line.
``select`` checks the input (method, fraction or budget, options), builds the context
(per-class budgets, the per-example forward on the shard-actor pool or in-process) and
checks what the selector returns: exactly the budget (per class when balanced), no
duplicates, positive weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from raypkg.data.base import IndexedDataset
from raypkg.errors import UsageError, choose
from raypkg.selection.budget import check_class_budgets, class_budgets, subset_size
from raypkg.selection.embeddings import (
    EmbeddingKind,
    PerExample,
    logit_gradients,
    logits_and_features,
    shard_logits_features,
)


@dataclass
class Picks:
    """What a selector returns: positions in the dataset, weights, optional scores."""

    positions: torch.Tensor  # long [k]
    weights: torch.Tensor  # float [k]
    scores: torch.Tensor | None = None  # float [k], the method's score of each pick
    all_scores: torch.Tensor | None = None  # float [N], per-example scores when the method has them


@dataclass
class SelectionResult:
    method: str
    indices: torch.Tensor  # long [k]: the dataset's ``index`` values of the picks
    positions: torch.Tensor  # long [k]: positions in the dataset passed to ``select``
    weights: torch.Tensor  # float64 [k]
    labels: torch.Tensor  # long [k]
    scores: torch.Tensor | None = None
    all_scores: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def table(self) -> dict[str, Any]:
        """Columns of ``selection.parquet``: index, weight, score (NaN where none), label, rank."""
        scores = self.scores if self.scores is not None else torch.full((len(self),), float("nan"))
        return {"index": self.indices.numpy(), "weight": self.weights.double().numpy(),
                "score": scores.double().numpy(), "label": self.labels.numpy(),
                "rank": torch.arange(len(self)).numpy()}


@dataclass(frozen=True)
class Selector:
    name: str
    description: str
    fn: Callable[["SelectionContext"], Picks]
    needs_model: bool = True
    uses_repeats: bool = False  # GraNd: averages over several warmed-up models
    options: dict[str, Any] = field(default_factory=dict)  # option name -> default
    weighted: bool = False  # returns weights other than 1
    weighting: str = "none"  # default training scheme for its weights (raypkg.selection.weighting)
    weight_cap: float | None = None  # default cap of those weights, in units of their mean
    streams: bool = False  # works on streamed data without holding every example's embedding
    # A fresh subset every epoch (RS2): (train, result, batch_size, seed, balance) -> the batch
    # plan that training runs over the whole training set; None: train on the selection.
    epoch_plan: Callable[..., Any] | None = None
    scores: bool = False  # returns a difficulty score per example (``Picks.all_scores``): CCS can stratify it
    check_options: Callable[[dict], None] | None = None  # raises UsageError for bad option values, before any work
    # n -> an engine Callback the warm-up trains with (``pipeline.pretrain_full``); its ``state_dict()``
    # is cached with the warm-up and set on the warmed-up model as ``model.warmup_record`` (Forgetting)
    warmup_callback: Callable[[int], Any] | None = None
    per_batch: bool = False  # can select mini-batches as units (``raypkg.selection.per_batch``)


SELECTORS: dict[str, Selector] = {}


def register_selector(name: str, description: str, **traits):
    """Register the decorated function as selector ``name``; ``traits`` are ``Selector``'s
    other fields (``needs_model=False``, ``options={...}``, ...)."""
    def decorator(fn: Callable[["SelectionContext"], Picks]):
        SELECTORS[name] = Selector(name, description, fn, **{**traits, "options": dict(traits.get("options") or {})})
        return fn

    return decorator


def load_selectors() -> dict[str, Selector]:
    import raypkg.selection.methods  # noqa: F401  (registers the selectors)

    return SELECTORS


def get_selector(name: str) -> Selector:
    load_selectors()
    choose("selection method", name, SELECTORS)
    return SELECTORS[name]


def check_streams(method: str) -> None:
    """A one-line UsageError unless ``method`` can select from streamed data."""
    if not get_selector(method).streams:
        streaming = ", ".join(sorted(name for name, s in SELECTORS.items() if s.streams))
        raise UsageError(f"selection method {method!r} holds every example's gradient embedding at once; "
                         f"on --data-path stream use {streaming}, or --data-path memory")


def resolve_options(selector: Selector, options: dict[str, Any] | None) -> dict[str, Any]:
    """The selector's defaults with ``options`` on top; unknown names are a UsageError."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(selector.options))
    if unknown:
        allowed = ", ".join(sorted(selector.options)) or "none"
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for selection method "
                         f"{selector.name!r}; allowed: {allowed}")
    merged = {**selector.options, **options}
    if selector.check_options is not None:
        selector.check_options(merged)
    return merged


def check_stratify(selector: Selector, stratify: str, beta: float | None) -> None:
    """One line for a stratification ``selector`` cannot take (``raypkg.selection.stratify``), or a bad beta."""
    from raypkg.selection.stratify import STRATIFY

    choose("stratify", stratify, STRATIFY)
    if beta is not None and stratify != "ccs":
        raise UsageError("--ccs-beta is for --stratify ccs")
    if beta is not None and not 0.0 <= float(beta) < 1.0:
        raise UsageError(f"ccs-beta must be in [0, 1), got {beta}")
    if stratify == "ccs" and not selector.scores:
        named = ", ".join(sorted(name for name, s in SELECTORS.items() if s.scores))
        raise UsageError(f"--stratify ccs needs a score-based selector ({named}): "
                         f"{selector.name} returns no per-example scores")


# --------------------------------------------------------------------------------------
# The context a selector works in
# --------------------------------------------------------------------------------------

@dataclass
class SelectionContext:
    """Everything a selector may use; the expensive parts are computed once, on demand."""

    data: IndexedDataset
    models: list[nn.Module]
    k: int
    budgets: list[int] | None  # per class when balanced, else None
    seed: int
    kind: EmbeddingKind
    options: dict[str, Any]
    device: torch.device
    precision: str = "fp32"  # of every forward pass of the models (the run's decided precision)
    val: IndexedDataset | None = None
    pool: Any = None  # a ShardPool over ``data``, or None
    lr: float = 0.1
    batch_size: int | None = None  # per-batch selection: the mini-batch size of its units, else None
    _forward: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def balance(self) -> bool:
        return self.budgets is not None

    @property
    def model(self) -> nn.Module:
        return self.models[0]

    @property
    def per_example(self) -> PerExample:
        return PerExample(self.data, self.pool, self.device)

    def generator(self, stream: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.seed) * 1_000_003 + stream)

    def blocks(self) -> list[tuple[torch.Tensor, int]]:
        """(positions, budget) per class when balanced, else one block of everything."""
        if not self.balance:
            return [(torch.arange(len(self.data)), self.k)]
        y = self.data.y.cpu()
        return [(torch.nonzero(y == c).squeeze(1), b) for c, b in enumerate(self.budgets)]

    def logits_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """z [N, C] and h [N, D] of the training set (one forward; on the pool if any), CPU."""
        if self._forward is None:
            out = self.per_example.map(shard_logits_features, self.model, self.per_example.device,
                                        self.precision)
            self._forward = (out["z"], out["h"])
        return self._forward

    def grads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """g = softmax(z) - onehot(y) [N, C] and h [N, D] (CPU float32)."""
        z, h = self.logits_features()
        return logit_gradients(z, self.data.y.cpu()), h

    def val_logits_features(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z, h, y of the validation set (in-process; it is small), CPU."""
        z, h = logits_and_features(self.model.to(self.device), self.val.x, self.device, precision=self.precision)
        return z.cpu(), h.cpu(), self.val.y.cpu()

    def run_blocks(self, fn: Callable, jobs: Sequence[tuple], sizes: Sequence[int] | None = None) -> list:
        """``fn(*job)`` for every job: in-process, or spread over the pool's actors."""
        if self.pool is None or len(jobs) <= 1:
            return [fn(*job) for job in jobs]
        from raypkg.distributed.jobs import run_on_actors

        return run_on_actors(self.pool, fn, jobs, sizes)


# --------------------------------------------------------------------------------------
# select
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keep:
    """Which examples a selection keeps. Size: ``fraction`` (0 < f <= 1) or ``budget``
    (total), split by class share when ``balance``; or ``class_budget`` (one number for
    every class, or one per class). ``per_batch=B`` selects mini-batches of B
    (``raypkg.selection.per_batch``), not balanced. ``stratify="ccs"`` re-picks from a
    score-based selector's per-example scores by CCS (``raypkg.selection.stratify``), hard
    cutoff ``ccs_beta`` (default: by the fraction kept)."""

    fraction: float | None = None
    budget: int | None = None
    class_budget: Sequence[int] | int | None = None
    balance: bool = True
    per_batch: int | None = None
    stratify: str = "none"
    ccs_beta: float | None = None

    def size(self, data: IndexedDataset, selector: Selector) -> tuple[int, list[int] | None]:
        """(k, the per-class budgets or None) on ``data``; one line for a size that is
        wrong or that ``selector`` cannot take."""
        if len(data) == 0:
            raise UsageError("cannot select from an empty dataset")
        if self.per_batch is not None:
            if not selector.per_batch:
                raise UsageError(f"selection method {selector.name!r} selects examples, not mini-batches "
                                 "(--per-batch)")
            if self.class_budget is not None:
                raise UsageError("per-batch selection picks mini-batches, which mix classes: give a fraction or "
                                 "budget")
            if int(self.per_batch) < 1:
                raise UsageError(f"per-batch selection needs a batch size >= 1, got {self.per_batch}")
        if self.class_budget is None:
            k = subset_size(len(data), self.fraction, self.budget)
            return k, (class_budgets(data.y, data.num_classes, k) if self.balance and self.per_batch is None
                       else None)
        if self.fraction is not None or self.budget is not None:
            raise UsageError("give either a per-class budget or --fraction/--budget, not both")
        per = ([int(self.class_budget)] * data.num_classes if isinstance(self.class_budget, (int, float))
               else list(self.class_budget))
        budgets = check_class_budgets(data.y, data.num_classes, per)
        return sum(budgets), budgets


@dataclass(frozen=True)
class Scoring:
    """How the models score: the gradient ``embedding`` (``proj_dim`` for a projected one),
    Glister's Taylor step ``lr``, and the ``precision`` of their forward passes (the run's
    decided one: fp32 or bf16)."""

    embedding: str = "full"
    proj_dim: int = 256
    lr: float = 0.1
    precision: str = "fp32"


@dataclass(frozen=True)
class Compute:
    """Where per-example work runs: on ``pool`` (a ``ShardPool`` over the data), or on
    ``actors`` new actors, else in-process on ``device`` (default: the first model's)."""

    device: torch.device | str | None = None
    pool: Any = None
    actors: int = 0


def select(method: str, models: nn.Module | Sequence[nn.Module] | None, data: IndexedDataset, keep: Keep, *,
           seed: int = 0, val: IndexedDataset | None = None, options: dict[str, Any] | None = None,
           scoring: Scoring = Scoring(), compute: Compute = Compute()) -> SelectionResult:
    """Select a weighted subset of ``data`` with ``method``: the examples ``keep`` says,
    scored as ``scoring`` says, on ``compute``. ``models``: the (warmed-up) model, or
    several for GraNd's repeats; ``val``: Glister's validation set; ``options``: the
    method's own. Returns dataset index values, weights and scores.
    """
    import time

    from raypkg.selection.stratify import ccs_picks, paper_beta

    device, pool, actors = compute.device, compute.pool, compute.actors
    selector = get_selector(method)
    check_stratify(selector, keep.stratify, keep.ccs_beta)
    if data.streamed:
        check_streams(method)
    opts = resolve_options(selector, options)
    kind = EmbeddingKind(scoring.embedding, int(scoring.proj_dim), int(seed))
    n = len(data)
    k, budgets = keep.size(data, selector)
    if isinstance(models, nn.Module):
        models = [models]
    models = list(models or [])
    if selector.needs_model and not models:
        raise UsageError(f"selection method {method!r} needs a model")
    if len(models) > 1 and not selector.uses_repeats:
        raise UsageError(f"selection method {method!r} uses one model; got {len(models)} "
                         "(repeats are for grand)")
    if actors < 0:
        raise UsageError(f"actors must be >= 0, got {actors}")
    device = torch.device(device) if device is not None else (
        next(models[0].parameters()).device if models else torch.device("cpu"))

    own_pool = None
    if pool is None and actors > 0 and selector.needs_model:
        from raypkg.distributed.shard_pool import open_pool

        own_pool = pool = open_pool(data.to("cpu"), actors)
    if pool is not None and sum(len(p) for p in pool.positions) != n:
        raise ValueError("the shard pool was built on a different dataset")
    pool_actors = len(pool.actors) if pool is not None else 0  # counted before its own pool closes
    pool_device = getattr(pool, "device", "cpu") if pool is not None else None  # where the actors computed
    t0 = time.perf_counter()
    try:
        ctx = SelectionContext(data=data, models=models, k=k, budgets=budgets, seed=int(seed), kind=kind,
                               options=opts, device=device, precision=scoring.precision, val=val, pool=pool,
                               lr=float(scoring.lr), batch_size=None if keep.per_batch is None else int(keep.per_batch))
        picks = selector.fn(ctx)
        beta = None
        if keep.stratify == "ccs":
            beta = paper_beta(k / n) if keep.ccs_beta is None else float(keep.ccs_beta)
            picks = ccs_picks(ctx, picks, method, beta)
    finally:
        if own_pool is not None:
            own_pool.close()
    result = finish(method, data, picks, k, budgets)
    result.info.update(seconds=time.perf_counter() - t0, k=k, budgets=budgets, embedding=scoring.embedding,
                       actors=pool_actors, actor_device=pool_device, options=opts, stratify=keep.stratify,
                       **({"ccs_beta": beta} if beta is not None else {}))
    return result


def finish(method: str, data: IndexedDataset, picks: Picks, k: int, budgets: list[int] | None) -> SelectionResult:
    """Check a selector's output (exact sizes, no duplicates, positive weights) and wrap it."""
    pos = picks.positions.cpu().long()
    weights = picks.weights.cpu().double()
    if len(pos) != k or len(weights) != k:
        raise AssertionError(f"{method} returned {len(pos)} picks for a budget of {k}")
    if len(torch.unique(pos)) != k:
        raise AssertionError(f"{method} returned duplicate picks")
    if k and (pos.min() < 0 or pos.max() >= len(data)):
        raise AssertionError(f"{method} returned positions outside the dataset")
    if bool((weights <= 0).any()) or not bool(torch.isfinite(weights).all()):
        raise AssertionError(f"{method} returned non-positive or non-finite weights")
    labels = data.y.cpu()[pos]
    if budgets is not None:
        got = torch.bincount(labels, minlength=len(budgets)).tolist()
        if got != list(budgets):
            raise AssertionError(f"{method} returned per-class counts {got}, budgets {budgets}")
    scores = picks.scores.cpu().double() if picks.scores is not None else None
    all_scores = picks.all_scores.cpu().double() if picks.all_scores is not None else None
    return SelectionResult(method, data.index.cpu()[pos], pos, weights, labels, scores, all_scores)
