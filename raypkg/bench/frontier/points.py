"""What a frontier runs: its presets, and every point (a method, setting and seed) as a
validated config, with the work it shares with other points and its stable identity.

A method may be a stack of cases joined by ``+`` (``infobatch+rigl-itop``: InfoBatch with
RigL-ITOP's masks, ``raypkg.algorithms``), a point per combination of its members' grids.
Full training runs at fp32 (``full-fp32``, the reference of every ratio) and at
``--precision auto``'s choice (``full``); the budget curve is full training at budgets B of
the epoch budget (``--budgets``), its schedule compressed to round(B x epochs) epochs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math

import click
import numpy as np

from raypkg.bench.curve import CURVES, DENSE_FROM, EQUIVALENCE, budget_epochs, dense_epochs
from raypkg.bench.harness import Point, check_points
from raypkg.cli_options import check_bench_numbers, name_list, once_each
from raypkg.data.registry import dataset_entry
from raypkg.engine.config import parse_stack
from raypkg.errors import UsageError, choose
from raypkg.models.flops import TRAIN_STEP_FACTOR
from raypkg.models.registry import model_entry
from raypkg.recipe import load_data
from raypkg.recipe_registry import case_of, find_recipe, load_cases

# method -> its case (``raypkg.recipe.BenchCase``, registered beside each recipe). Full
# training always runs twice: at fp32 (every ratio's reference and the TTA target's) and at
# --precision auto's choice.
METHODS = load_cases()
REFERENCE = "full-fp32"
# 0.1 and 0.3: the budgets of the default fractions; from 0.5 up, where the targets land, each within
# EQUIVALENCE of the next (``dense_epochs``; docs/benchmarks.md, "One statistic per cell")
BUDGETS = [0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 1.0]
SCHEDULES = ("cosine", "linear")  # every method's (--schedule) and the curve's (--curve-schedules)
# Presets: every setting a flag may override. digits-aug:mlp finishes in minutes on 2 cores.
MLP = {"dataset": "digits-aug", "model": "mlp", "train_size": 20000, "test_size": 5000, "label_noise": 0.0,
       "epochs": 10, "batch_size": 64, "lr": [0.1], "momentum": 0.9, "weight_decay": 5e-4, "seeds": 3,
       "fractions": [0.1, 0.3], "densities": [0.05], "pretrain_epochs": 5, "repeats": 3, "shards": 10,
       "pre_epochs": 5, "update_frequency": 100, "agc_sample": 2000, "budgets": BUDGETS, "schedule": "cosine",
       "curve_schedules": ["cosine", "linear"], "selection_models": [],
       "target_acc": 0.92}
# The real-data presets run seeds until decided: 3 seeds, then a seed more for the cells the table has not
# decided, up to ``max_seeds`` (``until_decided``; not a setting of the points: never in frontier.json's settings).
# 7, measured on fashion-mnist:mlp against 5 fixed seeds, each timed alone: no cell ? (5 fixed: 3) at the same wall
# time (1.01x); up to 5 took 0.84x but left more cells ? (3 against 2) and fewer settled (docs/benchmarks.md,
# "Seeds until decided, measured")
FASHION_MNIST = {**MLP, "dataset": "fashion-mnist", "train_size": None, "test_size": None, "schedule": "linear",
                 "curve_schedules": ["linear"], "target_acc": None, "max_seeds": 7}
PRESET_ONLY = ("max_seeds",)  # what a preset says of how its frontier runs beside its settings
PRESETS = {
    "digits-aug:mlp": MLP,
    "digits-aug:mlp-noisy": {**MLP, "label_noise": 0.3, "target_acc": 0.84},
    "digits-aug:resnet20": {**MLP, "model": "resnet20", "train_size": 5000, "test_size": 1000, "batch_size": 128,
                            "seeds": 1, "pretrain_epochs": 2, "repeats": 2, "shards": 4, "pre_epochs": 2,
                            "update_frequency": 20, "agc_sample": 500, "target_acc": 0.97},
    # Full-size real data (60,000 / 10,000 images), every method and the curve on Budgeted Training's
    # linear schedule; the target is each seed's full training's accuracy less 0.5 points
    "fashion-mnist:mlp": FASHION_MNIST,
    "fashion-mnist:lenet5": {**FASHION_MNIST, "model": "lenet5", "lr": [0.03]},
    # ResNet-20 at full size is a GPU's work (an epoch: 1.7 s compiled on an H100; minutes a core):
    # docs/operations.md, "Compiled steps"
    "fashion-mnist:resnet20": {**FASHION_MNIST, "model": "resnet20", "batch_size": 128},
    # Its stated subset for a CPU (an epoch over 2,000 images: about 3 s at bf16 on one AMX core): a
    # stratified 2,000 / 2,000 of the real images, the stages scaled down as digits-aug:resnet20's are
    "fashion-mnist:resnet20-2k": {**FASHION_MNIST, "model": "resnet20", "batch_size": 128, "train_size": 2000,
                                  "test_size": 2000, "pretrain_epochs": 2, "repeats": 2, "shards": 4,
                                  "pre_epochs": 2, "update_frequency": 20, "agc_sample": 500},
    # CIFAR-10 at full size (50,000 / 10,000; `effray datasets fetch cifar10`), ResNet-20 as CREST trains it:
    # batch 128, SGD 0.1 with momentum 0.9, weight decay 1e-4, crop and flip; the linear schedule as above.
    # On a GPU, 30 epochs: at Fashion-MNIST's 1.7 s an epoch compiled on an H100 (docs/operations.md), a seed
    # of the frontier (about 12 full runs' worth of points) is about 10 minutes, within a lent card's 15; the
    # paper's 200 epochs would be 7x that
    "cifar10:resnet20": {**FASHION_MNIST, "dataset": "cifar10", "model": "resnet20", "batch_size": 128,
                         "weight_decay": 1e-4, "epochs": 30, "seeds": 3},
    # On a CPU: the same 50,000 / 10,000 images (the papers select 10-30% of them), 5 epochs, the warm-ups and
    # LiPT's pre-training scaled to them (docs/benchmarks.md, "What CIFAR-10 costs here")
    "cifar10:resnet20-cpu": {**FASHION_MNIST, "dataset": "cifar10", "model": "resnet20", "batch_size": 128,
                             "weight_decay": 1e-4, "epochs": 5, "seeds": 3, "pretrain_epochs": 1, "repeats": 2,
                             "pre_epochs": 1, "budgets": [0.2, 0.4, 0.6, 0.8, 1.0]},  # every whole epoch
}
# The integer flags, each the preset's by default: name -> help.
COUNTS = {"train_size": "Training examples of a sized dataset (generated, or fashion-mnist's stratified sample); "
                                 "dropped for a fixed-size --dataset.",
          "test_size": "Test examples of a sized dataset.", "seeds": "Seeds 0 .. N-1, each a run of every point.",
          "epochs": "Training epochs of every method (subsets train as many epochs).",
          "batch_size": "Mini-batch size of every method.",
          "pretrain_epochs": "DeepCore: full-data warm-up epochs before selection.",
          "repeats": "DeepCore GraNd: warm-ups whose scores are averaged.", "shards": "LiPT: shard models K.",
          "pre_epochs": "LiPT: pre-training epochs of every shard model.",
          "update_frequency": "RigL: optimizer steps between mask updates.",
          "agc_sample": "AGC: examples of the snapshot gradient."}


def cases_of(method: str) -> list[str]:
    """The cases of a frontier method: ``rs2+rigl-itop`` is ``rs2`` with ``rigl-itop`` stacked."""
    first, added = parse_stack(method)
    return [first, *added]


def method_names(text: str) -> list[str]:
    """--methods: comma-separated cases, or stacks of them joined by ``+`` (``rs2+rigl-itop``);
    a plug-in method (``MODULE:CLASS``) is a case of its own (``recipe_registry.case_of``)."""
    names = name_list(text, "--methods")
    for name in names:
        for part in cases_of(name):
            if not part:
                raise UsageError(f"--methods {name!r} has an empty stack member: join names with '+' (rs2+rigl-itop)")
            case_of(part)
    return names


def plugin_code(method: str) -> str | None:
    """The plug-in methods of a frontier method and the digest of each one's source
    (``raypkg.plugins.source_digest``), ``NAME@DIGEST`` joined by ``+``: what a stored point
    records beside effray's ``code``, so that an edited plug-in's points are stale; None for
    a method of effray's alone."""
    from raypkg.method_registry import find_method
    from raypkg.plugins import source_digest

    found = [f"{part}@{source_digest('method', part)[:12]}" for part in cases_of(method)
             if (m := find_method(part)) is not None and m.plugin]
    return "+".join(found) or None


def preset_settings(setup: str, flags: dict) -> dict:
    """The preset's settings with the flags given (not None) on top, checked: counts
    positive, fractions and densities in (0, 1] and each once, one --lr (every method
    trains on one schedule). A fixed-size --dataset drops the preset's sizes."""
    s = {**{k: v for k, v in PRESETS[setup].items() if k not in PRESET_ONLY}, "data_dir": None}
    if flags.get("dataset") and not dataset_entry(flags["dataset"]).sized:
        s.update(train_size=None, test_size=None)
    if any(flags.get(k) not in (None, s[k]) for k in ("dataset", "model", "label_noise")):
        s["target_acc"] = None  # the preset's target is for its own data and model
    s.update({k: v for k, v in flags.items() if v is not None})
    if len(s["lr"]) != 1:
        raise UsageError(f"--lr takes one value here (every method trains on one schedule), got "
                         f"{','.join(map(str, s['lr']))}")
    check_bench_numbers(**{k: s[k] for k in COUNTS if k not in ("train_size", "test_size")})
    choose("schedule", s["schedule"], SCHEDULES)
    for schedule in s["curve_schedules"]:
        choose("curve schedule", schedule, SCHEDULES)
    once_each(s["curve_schedules"], "--curve-schedules")
    once_each(s["selection_models"], "--selection-models")
    for proxy in s["selection_models"]:
        model_entry(proxy)
    if s["model"] in s["selection_models"]:
        raise UsageError(f"--selection-models names --model {s['model']} itself: its points are the ones each proxy "
                         "is compared with")
    for key in ("fractions", "densities", "budgets"):
        if not s[key] or not all(0 < v <= 1 for v in s[key]):
            raise UsageError(f"--{key} takes comma-separated numbers in (0, 1], got {','.join(map(str, s[key]))}")
        once_each(s[key], f"--{key}")
    s["budgets"] = curve_budgets(s, dense=flags.get("budgets") is None)
    return s


def setup_name(setup: str, s: dict) -> str:
    """``DATASET:MODEL`` that runs, and the preset its other settings come from."""
    name = f"{s['dataset']}:{s['model']}"
    return name if name == setup else f"{name} (the other settings: preset {setup})"


def curve_budgets(s: dict, dense: bool = False) -> list[float]:
    """The budgets the curve runs at: --budgets rounded to whole epochs of --epochs
    (``budget_epochs``), and 1; ``dense`` (the default budgets, no --budgets given), with the
    budgets ``dense_epochs`` adds so that from ``DENSE_FROM`` up each is within ``EQUIVALENCE``
    of the next, as whole epochs allow. Budgets below 1 that all round to the whole run are
    refused; budgets that round to others, or that the rule adds to, are said in one line."""
    counts = budget_epochs(s["epochs"], s["budgets"])
    if len(counts) < 1 and min(s["budgets"]) < 1:
        raise UsageError(f"--budgets {','.join(f'{b:g}' for b in s['budgets'])} at --epochs {s['epochs']} leave the "
                         "budget curve one point (every budget rounds to the whole run): give more --epochs")
    budgets = [e / s["epochs"] for e in (dense_epochs(s["epochs"], counts) if dense else counts)] + [1.0]
    if sorted(set(s["budgets"]) | {1.0}) != budgets:
        rule = (f", each from {DENSE_FROM:g} up within {EQUIVALENCE:g}x of the next as whole epochs allow"
                if dense else "")
        click.echo(f"note: --budgets {','.join(f'{b:g}' for b in s['budgets'])} round to whole epochs of "
                   f"{s['epochs']}{rule}: the curve runs at budgets {','.join(f'{b:.3g}' for b in budgets)}", err=True)
    return budgets


def build_points(s: dict, methods: list[str], seed: int, n: int | None = None) -> list[Point]:
    """Every point's validated config for ``seed`` from the settings ``s``: the shared
    training settings, then each method's own (its case's ``config``); full training first,
    then the methods without a grid (InfoBatch), then each fraction's and each density's
    points. ``n``, the training set's size once loaded, sizes what depends on it."""
    common = dict(dataset=s["dataset"], model=s["model"], data_dir=s["data_dir"], train_size=s["train_size"],
                  test_size=s["test_size"], label_noise=s["label_noise"], seed=seed, epochs=s["epochs"],
                  batch_size=s["batch_size"], lr=list(s["lr"]), schedule=s["schedule"], momentum=s["momentum"],
                  weight_decay=s["weight_decay"], nesterov=False, workers=s["workers"], progress=False,
                  wandb="disabled")

    def point(method: str, values: dict[str, float], epochs: int | None = None, schedule: str | None = None) -> Point:
        """``epochs``: a point of the budget curve (full training compressed to them), on
        ``schedule`` (every other point: every method's, ``s["schedule"]``)."""
        schedule = schedule or s["schedule"]
        members = [case_of(name) for name in cases_of(method)]
        budget = (epochs or s["epochs"]) / s["epochs"] if members[0].family == "full" else math.nan
        setting = ",".join(f"{grid[0]}={value:g}" for grid, value in values.items()) or (
            f"b={budget:.3g}" + ("" if schedule == s["schedule"] else f",{schedule}") if budget == budget else "-")
        labels = {"family": "+".join(case.family for case in members), "method": method, "setting": setting,
                  "seed": seed, "fraction": values.get("fractions", math.nan),
                  "density": values.get("densities", math.nan), "budget": budget, "schedule": schedule,
                  # what the frontier ran (a merge of stored rows checks and titles itself by these)
                  "dataset": s["dataset"], "model": s["model"], "label_noise": s["label_noise"], "epochs": s["epochs"]}
        if plugin_code(method):  # a plug-in's source, recorded beside effray's code (store.stale)
            labels["plugin"] = plugin_code(method)
        cfg = stacked_point(method, values, s, {**common, "epochs": epochs or s["epochs"], "schedule": schedule}, n)
        return Point(f"seed {seed} {method} {setting}", find_recipe(members[0].recipe, cfg.stack),
                     cfg.resolved().validate(), labels)

    def grids(method: str) -> list[dict[str, float]]:
        """Every combination of its members' grid values (one, empty, for no grid)."""
        names = [grid for grid in (case_of(m).grid for m in cases_of(method)) if grid]
        return [dict(zip(names, values)) for values in itertools.product(*(s[grid] for grid in names))]

    points = [point(m, values) for m in methods if not any(case_of(p).grid for p in cases_of(m))
              for values in grids(m)]
    for grid in ("fractions", "densities"):  # each grid's points, after those without one
        first = [m for m in methods if grid == next(filter(None, (case_of(p).grid for p in cases_of(m))), None)]
        points += [q for m in first for values in grids(m)
                   for q in with_proxies(point(m, values), s["selection_models"])]
    curves = [m for m in methods if m in CURVES]  # the budget curve's points below the whole budget, last;
    budgets = {schedule: budget_epochs(s["epochs"], s["budgets"]) + ([] if schedule == s["schedule"] else [s["epochs"]])
               for schedule in s["curve_schedules"]}  # another schedule's whole budget is a point of the curve too
    return points + [point(m, {}, epochs, schedule) for schedule, counts in budgets.items() for epochs in counts
                     for m in curves]


def with_proxies(p: Point, proxies: list[str]) -> list[Point]:
    """``p``, then (SVP, --selection-models) ``p`` scored by each proxy where its selection
    warms up and scores with a model (DeepCore's model-based selectors, LiPT's shard models;
    not in a stack): its setting says ``svp=PROXY``."""
    from raypkg.selection.registry import get_selector

    cfg = p.cfg
    scored_by_a_model = hasattr(cfg, "selection_model") and cfg.selection_model is None and not cfg.stack \
        and cfg.reselect_every is None and get_selector(cfg.selection).needs_model
    if not scored_by_a_model:
        return [p]
    return [p] + [Point(f"{p.label} scored by {proxy}", p.recipe,
                        dataclasses.replace(cfg, selection_model=proxy).validate(),
                        {**p.labels, "setting": f"{p.labels['setting']},svp={proxy}"}) for proxy in proxies]


def stacked_point(method: str, values: dict[str, float], s: dict, common: dict, n: int | None):
    """The config of ``method``, a case (``rs2``) or a stack of them (``rs2+rigl-itop``): the
    first member's config, with each later member's own settings (``raypkg.algorithms``) taken
    from that member's config at its grid value."""
    from raypkg.algorithms import stackable
    from raypkg.config import build_config
    from raypkg.engine.config import config_fields
    from raypkg.method_registry import find_method, import_object

    first, added = parse_stack(method)
    case = case_of(first)
    cfg = case.config(first, values.get(case.grid), s, common, n)
    if not added:
        return cfg
    fields, stack = dataclasses.asdict(cfg), []
    for name in added:
        member = case_of(name)
        row = find_method(member.recipe)
        if row is None or row.stacks:
            raise UsageError(f"--methods {method}: {name} does not stack onto another method's training "
                             f"(those that do: {', '.join(m for m, c in METHODS.items() if c.recipe in stackable())})")
        own = member.config(name, values.get(member.grid), s, common, n)
        fields.update({key: getattr(own, key) for key in config_fields(import_object(row.settings))})
        stack.append(member.recipe)
    try:
        return build_config(type(cfg), {**fields, "stack": stack})
    except UsageError as e:  # the stack's own line names --with, a flag this bench does not have
        reason = str(e).split(": ", 1)[1] if str(e).startswith("--with ") and ": " in str(e) else \
            str(e).replace("--with names", "names")
        raise UsageError(f"--methods {method}: {reason}") from None


def stacked_examples(point: Point, summary: dict, n: int, per_example) -> tuple[int, float]:
    """Examples seen and forward FLOPs of a point: its first member's count, each added
    algorithm changing the FLOPs per example its own way (``Algorithm.stacked_flops``:
    sparse masks count at their densities)."""
    from raypkg.method_registry import find_method, import_object

    case, cfg = case_of(parse_stack(point.labels["method"])[0]), point.cfg
    for name in cfg.stack:
        per_example = import_object(find_method(name).algorithm).stacked_flops(cfg, per_example)
    return case.examples(cfg, summary, n, per_example)


def load_points(settings: dict, methods: list[str], seed: int):
    """The data of ``seed`` (every method sees the same noisy labels) and the points'
    configs for it, each checked against it by its recipe's ``check``."""
    data = load_data(build_points(settings, methods, seed)[0].cfg)
    points = build_points(settings, methods, seed, n=len(data.train))
    check_points(points, data)
    return points, data


def count_examples(point: Point, row: dict, summary: dict, data, per_example) -> dict:
    """``row`` with its case's examples seen and training FLOPs, the share of noisy labels
    among a subset's picks, and the execution it trained in (``precision/memory_format``)."""
    seen, forward = stacked_examples(point, summary, len(data.train), per_example)
    row["examples_seen"], row["flops"], row["noisy_share"] = seen, TRAIN_STEP_FACTOR * forward, math.nan
    row["execution"] = ("/".join(str(summary[k]) for k in ("precision", "memory_format") if k in summary)
                        + ("/compiled" if summary.get("compile") == "on" else ""))
    if data.noisy is not None and "selection.parquet" in summary["tables"]:
        picked = np.asarray(summary["tables"]["selection.parquet"]["index"])
        row["noisy_share"] = float(np.isin(picked, data.noisy.numpy()).mean())
    return row


def point_id(p: Point) -> str:
    """A point's stable name in a frontier's store: its seed, method and setting (what a
    frontier of the same settings always calls it), made a file name."""
    label = f"{p.labels['seed']}|{p.labels['method']}|{p.labels['setting']}"
    return f"seed{p.labels['seed']}-" + hashlib.sha1(label.encode()).hexdigest()[:16]


def shared_work(p: Point) -> tuple:
    """What ``p`` computes that other points of its seed reuse: a model-based selection's
    warm-up, LiPT's shard models (both cached by config), or nothing (``()``). Points with the
    same key run one after another in one unit of work, so the work is computed once."""
    from raypkg.selection.registry import get_selector

    cfg = p.cfg
    if p.recipe.name == "lipt":
        return ("lipt", p.labels["seed"], getattr(cfg, "selection_model", None))
    if hasattr(cfg, "selection") and get_selector(cfg.selection).needs_model and not getattr(cfg, "stack", ()):
        return ("warm-up", p.labels["seed"], cfg.selection_model)
    return ()
