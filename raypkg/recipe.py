"""A recipe is how one method runs, whoever runs it: `effray run METHOD`, `jobs/METHOD.py`,
a Ray Tune trial of `effray tune METHOD`, or a row of `effray bench METHOD`.

    validate -> load -> check -> decide execution -> stages -> evaluate -> save

``Recipe.run`` takes these steps in this order. Everything up to ``check`` happens before
any output exists, so bad input costs one line and leaves nothing behind. A method is
its config class, a data check and its stages: functions of a ``Run`` (the config, the
data, the device, the sink, and what earlier stages left in ``run.state``). A stage that
trains the final model sets ``run.trained``; the recipe then evaluates it on the test
split and saves it. Summary entries go through ``run.note``.

Where results go is the ``Sink``, opened once the input is checked:

- ``RunDir`` (``raypkg.tracking.run``): the run directory of the CLI and Ray Jobs;
- ``TuneSink``: a Tune trial, reporting every metrics row with the seconds of the
  phases done so far and the run's scalar notes;
- ``MemorySink``: a bench row, kept in memory.

This module is what a run is; the recipes themselves, by name, and the making of a stacked
one (``find_recipe``) are the registry's, ``raypkg.recipe_registry``, which imports this.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol, Sequence

from raypkg.tracking.timings import Timings, wall_split

# The engine's epoch row (``raypkg.engine.loop.fit``): every recipe that trains reports these.
EPOCH_METRICS = ("epoch", "train_loss", "train_acc", "epoch_s", "epoch_end_time", "lr", "test_acc", "test_loss",
                 "eval_s")


# `effray tune`'s time-to-accuracy objective (TuneSink), and the penalty of a trial that has
# not reached the target: a million seconds (11.6 days, more than any trial here takes) times
# 1 + its shortfall (target - best accuracy so far), so it ranks behind every trial that
# reached the target whatever their epochs, and among such trials the closer one first.
# (Twice its seconds, the old penalty, let a 3-epoch trial that never got there beat a
# 10-epoch one that did; the seconds of a trial that never got there say nothing.)
TTA_METRIC, TTA_PENALTY_S = "tta_objective", 1e6


class Sink(Protocol):
    """Where a run's results go."""

    timings: Timings  # where the run's seconds went (phases timed here, cached work charged)
    rows: list[dict]  # the metrics rows logged so far
    started_at: float  # wall clock (time.time()) when the sink opened: the run's first phase starts

    @property
    def storage(self) -> Path | str | None:
        """Where Ray Train keeps this run's checkpoints, a path or a URI (None: a scratch directory)."""

    def phase(self, name: str) -> ContextManager[None]:
        """Time a named phase (repeats add up)."""

    def note(self, entries: dict) -> None:
        """Summary entries known before the end (a Tune trial reports them with every row)."""

    def log_metrics(self, row: dict) -> None:
        """One metrics row (an epoch, or a request served)."""

    def write_table(self, filename: str, table, wandb_prefix: str | None = None) -> None:
        """A Parquet table (its rows also logged to W&B under ``wandb_prefix`` when given)."""

    def save_state(self, filename: str, state: dict) -> None:
        """A state dict (the final model, masks)."""

    def finish(self, test_acc: float | None, **entries) -> dict:
        """The summary: method, dataset, model, test_acc, wall_s, phases and ``entries``."""


SinkFactory = Callable[["Recipe", Any], ContextManager[Sink]]  # (recipe, config) -> an open sink


@dataclass
class Run:
    """What the stages of one run share."""

    cfg: Any
    data: Any  # raypkg.data.base.DataSplits, or what the recipe's own ``load`` returned (None: nothing)
    device: Any  # torch.device
    sink: Sink
    shared: dict  # what the caller lends every stage (a bench's cache or actor pool)
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # closed when the run ends
    state: dict = field(default_factory=dict)  # stage outputs, by name
    trained: Any = None  # the final model's TrainResult, evaluated and saved by the recipe
    summary: dict = field(default_factory=dict)
    placement: Any = None  # where the steps train (raypkg.engine.placement.Placement)

    def note(self, **entries) -> None:
        self.summary.update(entries)
        self.sink.note(entries)


Stage = Callable[[Run], None]


@dataclass(frozen=True)
class Recipe:
    name: str  # the method: `effray run NAME`, `effray tune NAME`
    config_cls: type
    stages: Sequence[Stage]
    label: Callable[[Any], str] | None = None  # the run's name from its config (default ``name``)
    check: Callable[[Any, Any], str | None] | None = None  # (cfg, data) -> a note, or raises UsageError
    load: Callable[[Any], Any] | None = None  # cfg -> data (default ``load_data``)
    metrics: tuple[str, ...] = EPOCH_METRICS  # what its metrics rows hold (a tune space's metric is one)
    # phases whose seconds every metrics row of a Tune trial carries as ``<phase>_s``
    tune_phases: tuple[str, ...] = ()
    stack: tuple[str, ...] = ()  # the algorithms added to this method's (``raypkg.recipe_registry.find_recipe``)
    # Its Ray Train ranks may share a GPU (LiPT's shard models: no gradient sync), and its DDP
    # training takes one rank per whole GPU, noted (``raypkg.engine.placement``); else DDP
    # ranks that would share a GPU are refused before any work
    ddp_on_whole_gpus: bool = False

    def run_label(self, cfg) -> str:
        """The run's name: the method's, then each stacked algorithm's (``coreset-rs2+sparse``)."""
        return "+".join([self.label(cfg) if self.label else self.name, *getattr(cfg, "stack", ())])

    def run(self, cfg, sink: SinkFactory | None = None, *, data=None, **shared) -> dict:
        """Run every step; returns the summary. ``data`` and ``shared`` let a bench reuse one
        dataset, cache or actor pool: with ``data`` given, the caller has loaded and checked
        it and validated ``cfg`` (a bench validates its whole grid before its first row), so
        each run's config is validated exactly once."""
        import sys

        from raypkg.algorithms import check_stack
        from raypkg.data.base import DataSplits
        from raypkg.distributed.cluster import check_address_used, uses_ray
        from raypkg.distributed.placement import take_recorded_nodes
        from raypkg.engine.execution import decide_threads, training_threads
        from raypkg.engine.loop import evaluate
        from raypkg.engine.placement import decide_execution, driver_device, place, refuse_shared_ddp
        from raypkg.models.registry import check_model
        from raypkg.paths import check_home
        from raypkg.tracking.run import RunDir
        from raypkg.tracking.tta import time_to_accuracy

        loaded = data is None
        if loaded:
            cfg = cfg.resolved().validate()
            check_stack(cfg)
            check_home()
            if sink is None:  # a run directory: --out, --name and --storage before the data or Ray
                RunDir.check(cfg.out, cfg.name, cfg.storage)
            data = (self.load or load_data)(cfg)
            check_address_used(uses_ray(cfg, data if isinstance(data, DataSplits) else None))
        check_model(cfg, data)  # a plug-in model's output against the data (built-in ones: nothing to do)
        note = self.check(cfg, data) if loaded and self.check else None
        if note:
            print(f"note: {note}", file=sys.stderr, flush=True)
        cfg = decide_threads(cfg)  # the torch threads that train, in process or on each Ray Train worker
        with training_threads(cfg):
            take_recorded_nodes()  # forget an earlier run's placements
            # where the steps train (in this process, or on Ray Train workers: on GPUs?), known
            # before the execution is decided there, once, for every phase and every rank
            placement = place(cfg)
            if not self.ddp_on_whole_gpus:
                refuse_shared_ddp(placement)
            device = driver_device(cfg, placement)
            execution = None
            if isinstance(data, DataSplits):
                cfg, execution = decide_execution(cfg, data, placement)
                if loaded:
                    print(execution.describe(), flush=True)
            with (sink or run_directory)(self, cfg) as out, contextlib.ExitStack() as resources:
                run = Run(cfg, data, device, out, shared, resources, placement=placement)
                run.note(label_noise=cfg.label_noise)  # what the training labels were (raypkg.data.noise)
                if execution is not None:
                    run.note(**execution.summary())
                if getattr(cfg, "threads", None):
                    run.note(threads=cfg.threads)  # as config.yaml records it
                for stage in self.stages:
                    stage(run)
                nodes = take_recorded_nodes()  # where the Ray Train ranks and shard actors ran
                if nodes:
                    run.summary["nodes"] = nodes
                if run.trained is None:  # a stage that evaluates its own answer notes its test_acc
                    return out.finish(**{"test_acc": None, **run.summary})
                model, device = run.trained.model, run.trained.device
                if getattr(cfg, "target_acc", None) is not None:
                    run.summary.update(target_acc=cfg.target_acc, **time_to_accuracy(out.rows, out.started_at,
                                                                                      cfg.target_acc))
                out.save_state("model.pt", model.state_dict())
                with out.phase("eval"):
                    final = evaluate(model, data.test.to(device), device, precision=run.trained.precision)
                restarts = run.summary.get("restarts", 0) + run.trained.restarts  # earlier Ray Train stages' too
                return out.finish(test_acc=final["acc"], test_loss=final["loss"],
                                  **{**run.summary, "device": str(device), "train_device": placement.device,
                                     "restarts": restarts})


def streaming_note(note: str, cfg) -> str:
    """The dataset's line on how its images are held, for this run: a batch plan that reads
    the images itself (InfoBatch's, CREST's) reads them in the training process, not
    through Ray Data's prefetch."""
    if getattr(cfg, "PLAN_READS_FILES", False):
        return note.replace("streamed from disk by Ray Data",
                            f"streamed from disk, read in the training process by {cfg.BATCH_PLAN} as it picks "
                            "them (not prefetched by Ray Data)")
    return note


def load_data(cfg):
    """``cfg``'s dataset (the recipes' load step); prints how image files are held (memory
    or streamed) and why, and a note when the training split is tiny."""
    import sys

    from raypkg.data.registry import load_dataset, small_data_note

    data = load_dataset(cfg.dataset, **cfg.data_options())
    if data.note:
        print(streaming_note(data.note, cfg), flush=True)
    small = small_data_note(data)
    if small:
        print(f"note: {small}", file=sys.stderr, flush=True)
    return data


def run_directory(recipe: Recipe, cfg) -> ContextManager[Sink]:
    """The CLI's and the Ray Jobs' sink: a run directory under ``cfg.out``."""
    from raypkg.tracking.run import RunDir

    return RunDir.create(cfg.out, recipe.run_label(cfg), cfg.to_dict(), cfg.dataset, cfg.model, name=cfg.name,
                         wandb_mode=cfg.wandb, wandb_project=cfg.wandb_project, storage=cfg.storage,
                         keep_checkpoints=cfg.keep_checkpoints)


class MemorySink:
    """A bench row's sink: nothing written; the summary also holds the metrics ``rows`` and
    the ``tables`` (by file name) the run would have written."""

    def __init__(self, recipe: Recipe, cfg):
        self.method, self.dataset, self.model = recipe.run_label(cfg), cfg.dataset, cfg.model
        self.timings = Timings()
        self.notes: dict = {}
        self.rows: list[dict] = []
        self.tables: dict[str, Any] = {}
        self.started, self.started_at = time.perf_counter(), time.time()

    def __enter__(self) -> "MemorySink":
        return self

    def __exit__(self, *exc) -> None:
        return None

    storage = None

    def phase(self, name: str):
        return self.timings.phase(name)

    def note(self, entries: dict) -> None:
        self.notes.update(entries)

    def log_metrics(self, row: dict) -> None:
        self.rows.append(dict(row))

    def write_table(self, filename: str, table, wandb_prefix: str | None = None) -> None:
        self.tables[filename] = table

    def save_state(self, filename: str, state: dict) -> None:
        return None  # a bench row keeps its figures, not its weights

    def finish(self, test_acc: float | None, **entries) -> dict:
        wall = time.perf_counter() - self.started
        return {"method": self.method, "dataset": self.dataset, "model": self.model, "test_acc": test_acc,
                "wall_s": wall, "started_at": self.started_at, **wall_split(wall, self.rows),
                **self.timings.summary(), **entries,
                "rows": self.rows, "tables": self.tables}


class TuneSink(MemorySink):
    """A Tune trial's sink: ``report`` gets every metrics row, with ``<phase>_s`` for the
    recipe's ``tune_phases`` done so far, the run's scalar notes (subset size, ...) and, when
    the config sets ``target_acc``, ``TTA_METRIC``: the seconds from the run's start to the
    first epoch at the target (evaluation excluded), or while the target is not reached
    ``TTA_PENALTY_S`` x (1 + the shortfall of its best accuracy so far), so a trial that never
    reaches it ranks behind every one that does."""

    def __init__(self, recipe: Recipe, cfg, report: Callable[[dict], None]):
        super().__init__(recipe, cfg)
        self.report, self.tune_phases = report, recipe.tune_phases
        self.target = getattr(cfg, "target_acc", None)  # DeltaGrad's configs have none

    def log_metrics(self, row: dict) -> None:
        from raypkg.tracking.tta import time_to_accuracy

        super().log_metrics(row)
        scalars = {k: v for k, v in self.notes.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        cost = self.timings.cost()
        seconds = {f"{name}_s": cost.get(name, 0.0) for name in self.tune_phases}
        objective = {}
        if self.target is not None and "epoch_end_time" in row:
            tta = time_to_accuracy(self.rows, self.started_at, self.target)["tta_s"]
            best = max((r["test_acc"] for r in self.rows if r.get("test_acc") is not None), default=0.0)
            objective[TTA_METRIC] = tta if tta is not None else TTA_PENALTY_S * (1 + self.target - best)
        self.report({**scalars, **seconds, **row, **objective})


@dataclass(frozen=True)
class BenchCase:
    """A method family's part in `effray bench frontier`, registered beside its recipe (its
    ``config`` also builds the rows of the family's own bench: coreset, lipt, crest, sparse;
    ``raypkg.recipe_registry.register_case``).

    ``methods``: the frontier's names for it. ``grid``: the settings list its points run at
    ("fractions", "densities", or None: once). ``config(method, value, s, common, n)``: one
    point's config, from its grid value, the bench's settings ``s`` (a preset with the flags
    on top), the training fields every point shares (``common``) and the training set's
    size ``n`` (None before the data is loaded). ``examples(cfg, summary, n, per_example)``:
    a finished run's examples seen and their forward FLOPs; ``per_example(density=1.0,
    init="ERK")`` is the model's forward FLOPs per example, dense or masked. ``marker``: the
    family's matplotlib marker in the frontier's plots."""

    family: str
    recipe: str
    methods: tuple[str, ...]
    grid: str | None
    config: Callable[..., Any]
    examples: Callable[..., tuple[int, float]]
    default: bool = True  # in the frontier's default --methods (else run when named)
    marker: str = "o"


def dense_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """A ``BenchCase``'s ``examples`` for a run that trains every epoch on the whole training
    set (less a dropped ragged batch), dense: full training's, and that of a method that
    leaves the examples seen as they are (EMA, label smoothing)."""
    from raypkg.engine.plans import trained_examples

    seen = cfg.epochs * trained_examples(n, cfg.batch_size, cfg.drop_last)
    return seen, seen * per_example()
