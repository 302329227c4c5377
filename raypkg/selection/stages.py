"""The stages of a run that selects a subset and trains on it, from ``raypkg.selection.pipeline``'s:
the coreset method's recipes (`effray select`: warm up, select; `effray run coreset`: warm up,
select, train on the subset; ``raypkg.methods.coreset.recipe``) and LiPT's are made of them.

A pre-training stage leaves a ``Pretrained`` in ``run.state["pretrained"]``;
``choose_subset`` selects with it (LiPT's recipe brings its own pre-training and reuses
``choose_subset``). The phases are ``pretrain``, ``selection``, ``train`` and ``eval``;
the run directory gets selection.parquet (and scores.parquet for scoring selectors).
"""

from __future__ import annotations

from pathlib import Path

from raypkg.algorithms import train_stack
from raypkg.data.augment import use_augmentation
from raypkg.errors import UsageError
from raypkg.recipe import EPOCH_METRICS, MemorySink, Run
from raypkg.selection.algorithm import Reselection, SubsetTraining
from raypkg.selection.cache import SelectionCache
from raypkg.selection.config import CoresetConfig
from raypkg.selection.pipeline import pretrain, select_stage


def check_budget(cfg: CoresetConfig, data) -> None:
    """The budget fits the loaded data (one line otherwise, before any output), and so does
    --ccs-beta with a --budget or --class-budget, as CoresetConfig checks it with --fraction."""
    n = len(data.train)
    if cfg.class_budget is not None:
        from raypkg.selection.budget import check_class_budgets

        check_class_budgets(data.train.y, data.num_classes, [cfg.class_budget] * data.num_classes)
    elif cfg.budget is not None and cfg.budget > n:
        raise UsageError(f"budget {cfg.budget} is larger than the dataset ({n} examples)")
    if cfg.ccs_beta is not None and (cfg.budget is not None or cfg.class_budget is not None):
        import torch

        smallest = int(torch.bincount(data.train.y.cpu(), minlength=data.num_classes).min())
        flag, kept = (f"--budget {cfg.budget}", cfg.budget / n) if cfg.budget is not None else \
            (f"--class-budget {cfg.class_budget}", cfg.class_budget / smallest)
        if kept > 1.0 - float(cfg.ccs_beta):
            raise UsageError(f"--ccs-beta {cfg.ccs_beta:g} drops more than the {1.0 - kept:.3g} of the data "
                             f"{flag} leaves out")
    if cfg.per_batch:
        from raypkg.selection.budget import subset_size
        from raypkg.selection.per_batch import units_needed

        units_needed(subset_size(len(data.train), cfg.fraction, cfg.budget), len(data.train), cfg.batch_size)


def check_selection_model(cfg: CoresetConfig, data) -> None:
    """``--selection-model`` (SVP's proxy) takes the loaded data: built once on its shape (a
    model that needs images refuses flat data in one line), a plug-in's output checked as
    ``--model``'s is; the RNG is left as it was."""
    if cfg.selection_model is None:
        return
    import torch

    from raypkg.models.registry import build_model, check_model

    check_model(cfg.scoring_config(), data)
    with torch.random.fork_rng(devices=[]):
        build_model(cfg.selection_model, data.input_shape, data.num_classes)


def check_coreset(cfg: CoresetConfig, data) -> None:
    """What a coreset run checks against the loaded data: the budget and the selection model."""
    check_budget(cfg, data)
    check_selection_model(cfg, data)


def selection_cache(run: Run) -> SelectionCache:
    """The run's cache of pre-trained models and selections: the caller's (a bench's
    scratch cache), else OUT/.cache (off with ``--no-cache``); a run in memory
    (``raypkg.run(..., save=False)``) neither reads nor writes one: nothing is written."""
    if "cache" not in run.state:
        in_memory = isinstance(run.sink, MemorySink)
        run.state["cache"] = run.shared.get("cache") or SelectionCache(Path(run.cfg.out) / ".cache",
                                                                       enabled=run.cfg.cache and not in_memory)
    return run.state["cache"]


def warm_up(run: Run) -> None:
    """Stage 1, DeepCore's: ``repeats`` full-data warm-ups of ``pretrain_epochs``."""
    cfg = run.cfg
    with run.sink.phase("pretrain"):
        run.state["pretrained"] = pretrain(cfg, run.data, run.device, use_augmentation(cfg, run.data),
                                           selection_cache(run))
    run.sink.timings.charge("pretrain", run.state["pretrained"].seconds)  # cached warm-ups: their own seconds
    run.note(**cfg.pretrain_settings())


def choose_subset(run: Run) -> None:
    """Stage 2: select with ``run.state["pretrained"]`` (with --reselect-every, the first
    subset: uniform, ``raypkg.selection.adaptive``); writes selection.parquet (and
    scores.parquet) and notes what was selected and what came from the cache."""
    cfg, data, pretrained = run.cfg, run.data, run.state["pretrained"]
    with run.sink.phase("selection"):
        if cfg.reselect_every is not None and not pretrained.models:
            result = initial_subset(cfg, data)
            selection_s, selection_hit = result.info["seconds"], False
        else:
            result, selection_s, selection_hit = select_stage(cfg, data, pretrained, run.device,
                                                              selection_cache(run))
    run.sink.timings.charge("selection", selection_s)
    run.state["selection"] = result
    run.sink.write_table("selection.parquet", result.table())
    if result.all_scores is not None:
        run.sink.write_table("scores.parquet", {"index": data.train.index.cpu().numpy(),
                                                "score": result.all_scores.numpy()})
    run.note(selection=cfg.selection, fraction=cfg.fraction, subset_size=len(result), train_size=len(data.train),
             actors=cfg.actors, embedding=cfg.embedding, options=cfg.options,
             cached={"pretrain_hits": pretrained.cache_hits, "selection_hit": selection_hit},
             **({"actor_device": result.info["actor_device"]} if result.info.get("actor_device") else {}))


def initial_subset(cfg: CoresetConfig, data):
    """The subset an adaptive run starts from: uniform at the run's size and seed."""
    from raypkg.selection.registry import Keep, select

    keep = Keep(fraction=cfg.fraction, budget=cfg.budget, class_budget=cfg.class_budget, balance=cfg.balance)
    return select("uniform", None, data.train, keep, seed=cfg.seed)


def train_subset(run: Run) -> None:
    """Stage 3: a fresh model on the weighted subset (``SubsetTraining``); with
    --reselect-every, selected again every R epochs with the model being trained, after
    CORDS's warm start when --warm-start is given (``Reselection``)."""
    cfg, data, initial = run.cfg, run.data, run.state["selection"]
    if cfg.reselect_every is None:
        train_stack(run, lambda cfg: SubsetTraining(cfg, data, initial), desc=f"train {cfg.selection}")
        return
    from raypkg.selection.adaptive import warm_start_epochs
    from raypkg.selection.pipeline import selection_pool

    warm, select_after = warm_start_epochs(cfg.epochs, cfg.warm_start, len(initial) / len(data.train))
    cache = None if cfg.workers else selection_cache(run)
    # the actors serve in-process training (--actors with --workers is refused for --reselect-every)
    with selection_pool(cfg, data) as pool:
        train_stack(run, lambda cfg: Reselection(cfg, data, initial, first=select_after, full_epochs=warm,
                                                 cache=cache, pool=pool),
                    desc=f"train {cfg.selection} (reselect every {cfg.reselect_every})")


SELECTION_METRICS = EPOCH_METRICS + ("pretrain_s", "selection_s", "subset_size")


CCS = "-ccs"  # a frontier method's suffix: its selector's subset re-picked by coverage (--stratify ccs)


def without_ccs(method: str) -> tuple[str, str]:
    """``grand-ccs`` -> (``grand``, ``ccs``); ``grand`` -> (``grand``, ``none``)."""
    return (method.removesuffix(CCS), "ccs") if method.endswith(CCS) else (method, "none")
