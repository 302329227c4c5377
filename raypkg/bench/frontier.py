"""`effray bench frontier`: every method family on one dataset and model, one seed set,
epoch budget and LR schedule: what accuracy each method buys per second and per FLOP,
judged against the budget curve. (Over 400 lines: the presets, every family's and stack's
points, their count of examples and FLOPs, the table and its plots are one command's; the
curve's math is ``raypkg.bench.curve``.)
A method may be a stack of cases joined by ``+`` (``infobatch+rigl-itop``: InfoBatch with
RigL-ITOP's masks, ``raypkg.algorithms``), a point per combination of its members' grids.
Full training runs at fp32 (``full-fp32``, the reference of every ratio) and at
``--precision auto``'s choice (``full``).

**The budget curve** (Li et al., *Budgeted Training*, ICLR 2020; Kaddour et al., *No Train
No Gain*, NeurIPS 2023): full-data training at budgets B of the epoch budget
(``--budgets``, default 0.1, 0.2, 0.3, 0.5, 0.7 and 1), each with its schedule compressed
to round(B x epochs) epochs and fully decayed at its end, at fp32 and at auto's execution;
the schedules (``--curve-schedules``) are every method's cosine and Budgeted Training's
linear decay, so the curve is the better of the two at each budget.
Per seed and execution, the curve joins (0 s, chance accuracy) and the budget points in
order of seconds, each point's accuracy raised to the best before it (monotone). A point's
``x_vs_curve`` is the seconds that curve (at the point's own execution, auto) needs to
reach the point's accuracy, interpolated, divided by the point's seconds (inf: the curve
never reaches it); ``x_vs_fp32_curve`` the same against the fp32 curve; ``tta_vs_curve``
the curve's time-to-accuracy (its fastest budget point at the target) over the point's.
``verdict`` over the seeds: ``faster`` (``slower``) when the mean of log(x_vs_curve) is
above (below) 0 by more than 2 standard errors, else ``tie``; ``1 seed`` cannot tell. A
seed more accurate than every budget point (x_vs_curve inf) counts at its lower bound
``x_vs_curve_bound`` (the curve's seconds to its own best accuracy over the seed's;
``x_vs_fp32_curve_bound`` the same against the fp32 curve), so ``faster`` never
overclaims; with such a seed the verdict is not ``slower``, and ``beyond curve`` when
every seed is above the curve and not ``faster``; ``below curve`` when a seed's is below
the lowest budget point's, where the curve is only a straight line from chance: that line
flatters the method (a real curve rises faster), so a ``slower`` verdict stands there and
any other becomes ``below curve`` (add a smaller --budgets value).

The runner over every registered ``BenchCase``: per seed the data is loaded once (the
same noisy labels for all) and each point runs through its recipe in memory, as `effray
run` would; cached warm-ups, shard models and selections are charged their original
seconds. A row: each phase's seconds, ``e2e_s`` (their sum), ``test_acc``,
``examples_seen``, ``flops`` (3 x forward FLOPs per example seen, masked models by their
ERK densities), ``speedup_vs_full``/``acc_vs_full`` (points, against full-fp32 at budget 1)
and ``speedup_vs_rs2``/``acc_vs_rs2`` against RS2 at the same fraction within a seed,
``noisy_share`` of a selected subset, and ``tta_s``, its time-to-accuracy: seconds from the
run's start to the first epoch at the target (the preset's fixed target, or
``--target-acc``; with other data or model, full training's final accuracy of the seed
minus 0.5 points), evaluated every epoch, evaluation excluded and
cached work charged (NaN: never reached); ``tta_with_eval_s`` includes the evaluations
(MLPerf's rule). The summary: mean and spread over seeds per point (``tta_s`` over the
seeds that reached it, ``tta_reached`` of ``seeds``), MLPerf's olympic means
(``*_olympic``: without the fastest and slowest seed, of 3 or more), the verdicts, and
the Pareto fronts of accuracy vs e2e_s and vs FLOPs, and ``gain``: ``FLOPs only`` for a
sparse point less than 1.1x faster than full training at the same execution (it saves FLOPs,
not seconds: the kernels do not beat dense on this machine).

**SVP** (``--selection-models``; Coleman et al., ICLR 2020): every point whose selection
warms up and scores with a model also runs scored by each cheaper proxy (setting
``svp=MODEL``): the proxy's warm-up is charged its seconds and its own FLOPs, and
``spearman``/``overlap`` compare its scores and picks with the point scored by --model.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
from pathlib import Path

import click
import numpy as np
import pandas as pd

from raypkg.bench.curve import CURVES, add_curves, budget_epochs, olympic_mean, pareto_front, verdict
from raypkg.bench.deltagrad_panel import (
    DELTAGRAD_COLUMNS,
    deltagrad_configs,
    deltagrad_panel,
    deltagrad_table,
    plot_deltagrad,
)
from raypkg.bench.harness import (
    SAVE_HELP,
    BenchRunner,
    Point,
    bench_options,
    check_points,
    compare,
    selection_agreement,
)
from raypkg.cli_options import (
    FLOATS,
    NAMES,
    address_option,
    check_bench_numbers,
    check_seed_count,
    list_option,
    name_list,
    once_each,
    target_acc_option,
)
from raypkg.data.registry import dataset_entry
from raypkg.distributed.cluster import check_address_used
from raypkg.engine.config import SEED_LIMIT, parse_stack
from raypkg.errors import UsageError, choose
from raypkg.models.flops import TRAIN_STEP_FACTOR, flops_per_example
from raypkg.models.registry import model_entry
from raypkg.plots import figure, save_png
from raypkg.recipe import load_data
from raypkg.recipe_registry import find_recipe, load_cases
from raypkg.selection.cache import SelectionCache
from raypkg.tracking.tta import charged_time_to_accuracy, time_to_accuracy

# method -> its case (``raypkg.recipe.BenchCase``, registered beside each recipe). Full
# training always runs twice: at fp32 (every ratio's reference and the TTA target's) and at
# --precision auto's choice.
METHODS = load_cases()
REFERENCE = "full-fp32"
BUDGETS = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0]  # 0.1 and 0.3: the budgets of the default fractions
SCHEDULES = ("cosine", "linear")  # every method's (--schedule) and the curve's (--curve-schedules)
PHASES = ("pretrain", "merge", "selection", "check", "train", "eval")
# Presets: every setting a flag may override. digits-aug:mlp finishes in minutes on 2 cores.
MLP = {"dataset": "digits-aug", "model": "mlp", "train_size": 20000, "test_size": 5000, "label_noise": 0.0,
       "epochs": 10, "batch_size": 64, "lr": [0.1], "momentum": 0.9, "weight_decay": 5e-4, "seeds": 3,
       "fractions": [0.1, 0.3], "densities": [0.05], "pretrain_epochs": 5, "repeats": 3, "shards": 10,
       "pre_epochs": 5, "update_frequency": 100, "agc_sample": 2000, "budgets": BUDGETS, "schedule": "cosine",
       "curve_schedules": ["cosine", "linear"], "selection_models": [],
       "target_acc": 0.92}
FASHION_MNIST = {**MLP, "dataset": "fashion-mnist", "train_size": None, "test_size": None, "schedule": "linear",
                 "curve_schedules": ["linear"], "target_acc": None}
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
TABLE_COLUMNS = ["family", "method", "setting", "seeds", *[f"{p}_s" for p in PHASES], "e2e_s", "e2e_s_std",
                 "test_acc", "test_acc_std", "tta_s", "tta_with_eval_s", "tta_s_olympic", "tta_reached", "flops", "speedup_vs_full", "acc_vs_full",
                 "x_vs_curve", "x_vs_curve_bound", "x_vs_fp32_curve", "x_vs_fp32_curve_bound", "tta_vs_curve", "verdict", "gain", "speedup_vs_rs2", "acc_vs_rs2",
                 "noisy_share", "spearman", "overlap", "pareto", "pareto_flops"]
SPARSE_GAIN = 1.1  # a sparse point's wall-clock gain under this is "FLOPs only"
TTA_BELOW_FULL = 0.005  # the default time-to-accuracy target: full training's final accuracy minus 0.5 points


def is_reference(frame):
    """The rows of full training at fp32, the whole budget and every method's schedule (its
    setting ``b=1``, or ``-`` in rows without a budget)."""
    budget = frame["budget"] if "budget" in frame else pd.Series(1.0, index=frame.index)
    setting = frame["setting"] if "setting" in frame else pd.Series("b=1", index=frame.index)
    return (frame["method"] == REFERENCE) & budget.fillna(1.0).eq(1.0) & setting.isin(["b=1", "-"])


def add_deltas(frame):
    """``frame`` (a row per point and seed) with the ratios against full training and
    against RS2 at the same fraction, within each seed (NaN without a reference)."""
    frame = compare(frame, is_reference(frame), ["seed"], "speedup_vs_full", "acc_vs_full")
    return compare(frame, frame["method"] == "rs2", ["seed", "fraction"], "speedup_vs_rs2", "acc_vs_rs2",
                   rows=frame["fraction"].notna())


def aggregate(frame):
    """A row per point: the mean over seeds of every number, the standard deviation
    (``_std``, 0 for one seed) of e2e_s, test_acc and flops, the range (``_min``,
    ``_max``) of e2e_s and flops, ``seeds``, and the two Pareto fronts."""
    keys = ["family", "method", "setting"]
    numbers = [c for c in frame.columns if c not in keys and c != "seed" and frame[c].dtype.kind in "fi"]
    groups = frame.groupby(keys, sort=False)
    table = groups[numbers].mean().reset_index()
    for column in ("e2e_s", "test_acc", "flops"):
        table[f"{column}_std"] = groups[column].std(ddof=1).fillna(0.0).to_numpy()
    for column in ("e2e_s", "flops"):
        table[f"{column}_min"] = groups[column].min().to_numpy()
        table[f"{column}_max"] = groups[column].max().to_numpy()
    table.insert(3, "seeds", groups.size().to_numpy())
    if "tta_s" in frame:
        table["tta_reached"] = groups["tta_s"].count().to_numpy()
    for column in ("e2e_s", "tta_s", "tta_with_eval_s"):
        if column in frame:
            table[f"{column}_olympic"] = groups[column].agg(olympic_mean).to_numpy()
    if "x_vs_curve" in frame:
        # below the lowest budget point the line from chance flatters the method: "slower" stands, nothing else
        below = groups["below_curve"].agg(lambda flags: flags.eq(True).any()).to_numpy()
        said = np.array([verdict(list(rows["x_vs_curve"]), list(rows["x_vs_curve_bound"])) for _, rows in groups])
        table["verdict"] = np.where(below & (said != "slower"), "below curve", said)
    for flag, cost in (("pareto", "e2e_s"), ("pareto_flops", "flops")):
        front = set(pareto_front(table[cost].tolist(), table["test_acc"].tolist()))
        table[flag] = [i in front for i in range(len(table))]
    table["gain"] = flops_only(table)
    return table


def flops_only(table) -> np.ndarray:
    """``FLOPs only`` for a sparse point (its family names sparse) whose wall-clock gain, full
    training's seconds at the same execution and whole budget over its own, is under
    ``SPARSE_GAIN``: it saves FLOPs, not time; else empty."""
    full = table.loc[(table["method"] == "full") & (table["setting"] == "b=1"), "e2e_s"]
    gain = full.iloc[0] / table["e2e_s"] if len(full) else pd.Series(math.nan, index=table.index)
    return np.where(table["family"].str.contains("sparse") & (gain < SPARSE_GAIN), "FLOPs only", "")


def plot_frontier(table, ax, cost: str, xlabel: str) -> None:
    """Test accuracy against ``cost``: a marker per family, error bars over seeds (accuracy:
    one standard deviation; cost: its range), each point labelled, and the Pareto front."""
    from matplotlib.ticker import FuncFormatter

    markers = {case.family: case.marker for case in METHODS.values()}
    for family, group in table.groupby("family", sort=False):
        # the mean of equal values can round 1 ulp outside their range: no negative bar
        spread = [(group[cost] - group[f"{cost}_min"]).astype(float).clip(lower=0),
                  (group[f"{cost}_max"] - group[cost]).astype(float).clip(lower=0)]
        ax.errorbar(group[cost], 100 * group["test_acc"], xerr=spread, yerr=100 * group["test_acc_std"],
                    fmt=markers.get(family, "o"), markersize=7, capsize=2, linewidth=0.8, label=family)
        for _, row in group.iterrows():
            ax.annotate(row["method"] + ("" if row["setting"] == "-" else f" {row['setting']}"),
                        (row[cost], 100 * row["test_acc"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(table[cost].tolist(), table["test_acc"].tolist())
    ax.plot(table[cost].iloc[front], 100 * table["test_acc"].iloc[front], linestyle="--", color="grey",
            linewidth=1, label="Pareto front", zorder=0)
    for method, style in ((m, s) for m, s in (("full", "-"), (REFERENCE, ":")) if "budget" in table):
        curve = table[(table["method"] == method) & table["budget"].notna()].sort_values(cost)
        if len(curve) > 1:  # the baseline line: the monotone budget curve (means over seeds)
            ax.plot(curve[cost], 100 * curve["test_acc"].cummax(), linestyle=style, color="black", linewidth=1.2,
                    label=f"budget curve ({method})", zorder=0)
    if (table[cost] > 0).all():
        ax.set_xscale("log")  # ticks as plain numbers: 1, 2, 5, 10, ... (or 1e+10, 2e+10, ...)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def cases_of(method: str) -> list[str]:
    """The cases of a frontier method: ``rs2+rigl-itop`` is ``rs2`` with ``rigl-itop`` stacked."""
    first, added = parse_stack(method)
    return [first, *added]


def method_names(text: str) -> list[str]:
    """--methods: comma-separated cases, or stacks of them joined by ``+`` (``rs2+rigl-itop``)."""
    names = name_list(text, "--methods")
    for name in names:
        for part in cases_of(name):
            if not part:
                raise UsageError(f"--methods {name!r} has an empty stack member: join names with '+' (rs2+rigl-itop)")
            choose("method", part, METHODS)
    return names


def preset_settings(setup: str, flags: dict) -> dict:
    """The preset's settings with the flags given (not None) on top, checked: counts
    positive, fractions and densities in (0, 1] and each once, one --lr (every method
    trains on one schedule). A fixed-size --dataset drops the preset's sizes."""
    s = {**PRESETS[setup], "data_dir": None}
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
    s["budgets"] = curve_budgets(s)
    return s


def setup_name(setup: str, s: dict) -> str:
    """``DATASET:MODEL`` that runs, and the preset its other settings come from."""
    name = f"{s['dataset']}:{s['model']}"
    return name if name == setup else f"{name} (the other settings: preset {setup})"


def curve_budgets(s: dict) -> list[float]:
    """The budgets the curve runs at: --budgets rounded to whole epochs of --epochs
    (``budget_epochs``), and 1. Budgets below 1 that all round to the whole run are refused;
    budgets that round to others are said in one line."""
    budgets = [e / s["epochs"] for e in budget_epochs(s["epochs"], s["budgets"])] + [1.0]
    if len(budgets) < 2 and min(s["budgets"]) < 1:
        raise UsageError(f"--budgets {','.join(f'{b:g}' for b in s['budgets'])} at --epochs {s['epochs']} leave the "
                         "budget curve one point (every budget rounds to the whole run): give more --epochs")
    if sorted(set(s["budgets"]) | {1.0}) != budgets:
        click.echo(f"note: --budgets {','.join(f'{b:g}' for b in s['budgets'])} round to whole epochs of "
                   f"{s['epochs']}: the curve runs at budgets {','.join(f'{b:.3g}' for b in budgets)}", err=True)
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
        members = [METHODS[name] for name in cases_of(method)]
        budget = (epochs or s["epochs"]) / s["epochs"] if members[0].family == "full" else math.nan
        setting = ",".join(f"{grid[0]}={value:g}" for grid, value in values.items()) or (
            f"b={budget:.3g}" + ("" if schedule == s["schedule"] else f",{schedule}") if budget == budget else "-")
        labels = {"family": "+".join(case.family for case in members), "method": method, "setting": setting,
                  "seed": seed, "fraction": values.get("fractions", math.nan),
                  "density": values.get("densities", math.nan), "budget": budget, "schedule": schedule}
        cfg = stacked_point(method, values, s, {**common, "epochs": epochs or s["epochs"], "schedule": schedule}, n)
        return Point(f"seed {seed} {method} {setting}", find_recipe(members[0].recipe, cfg.stack),
                     cfg.resolved().validate(), labels)

    def grids(method: str) -> list[dict[str, float]]:
        """Every combination of its members' grid values (one, empty, for no grid)."""
        names = [grid for grid in (METHODS[m].grid for m in cases_of(method)) if grid]
        return [dict(zip(names, values)) for values in itertools.product(*(s[grid] for grid in names))]

    points = [point(m, values) for m in methods if not any(METHODS[p].grid for p in cases_of(m))
              for values in grids(m)]
    for grid in ("fractions", "densities"):  # each grid's points, after those without one
        first = [m for m in methods if grid == next(filter(None, (METHODS[p].grid for p in cases_of(m))), None)]
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


def add_svp_agreement(done: list[tuple[dict, dict]]) -> None:
    """Each SVP row's ``spearman`` and ``overlap`` against the same point scored by the model
    itself (``selection_agreement``); NaN on the other rows."""
    tables = {(row["method"], row["setting"]): summary.get("tables", {}) for row, summary in done}
    for row, _ in done:
        own = tables.get((row["method"], row["setting"].split(",svp=")[0]))
        row.update(selection_agreement(tables[row["method"], row["setting"]], own) if ",svp=" in row["setting"]
                   and own is not None else {"spearman": math.nan, "overlap": math.nan})


def stacked_point(method: str, values: dict[str, float], s: dict, common: dict, n: int | None):
    """The config of ``method``, a case (``rs2``) or a stack of them (``rs2+rigl-itop``): the
    first member's config, with each later member's own settings (``raypkg.algorithms``) taken
    from that member's config at its grid value."""
    from raypkg.algorithms import stackable
    from raypkg.config import build_config
    from raypkg.engine.config import config_fields
    from raypkg.method_registry import import_object

    first, added = parse_stack(method)
    case = METHODS[first]
    cfg = case.config(first, values.get(case.grid), s, common, n)
    if not added:
        return cfg
    fields, stack = dataclasses.asdict(cfg), []
    for name in added:
        member = METHODS[name]
        if member.recipe not in stackable():
            raise UsageError(f"--methods {method}: {name} does not stack onto another method's training "
                             f"(those that do: {', '.join(m for m, c in METHODS.items() if c.recipe in stackable())})")
        own = member.config(name, values.get(member.grid), s, common, n)
        fields.update({key: getattr(own, key) for key in config_fields(import_object(stackable()[member.recipe].settings))})
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
    from raypkg.algorithms import stackable
    from raypkg.method_registry import import_object

    case, cfg = METHODS[parse_stack(point.labels["method"])[0]], point.cfg
    for name in cfg.stack:
        per_example = import_object(stackable()[name].algorithm).stacked_flops(cfg, per_example)
    return case.examples(cfg, summary, n, per_example)


def load_points(settings: dict, methods: list[str], seed: int):
    """The data of ``seed`` (every method sees the same noisy labels) and the points'
    configs for it, each checked against it by its recipe's ``check``."""
    data = load_data(build_points(settings, methods, seed)[0].cfg)
    points = build_points(settings, methods, seed, n=len(data.train))
    check_points(points, data)
    return points, data


def add_tta(done: list[tuple[dict, dict]], target_acc: float | None) -> None:
    """Each row's ``tta_s`` (NaN: never reached) and ``tta_target``: ``target_acc`` (the
    preset's, or --target-acc), else the seed's full training's final accuracy minus
    ``TTA_BELOW_FULL`` (full-fp32 at budget 1: the first row)."""
    assert done[0][0]["method"] == REFERENCE and done[0][0]["budget"] == 1.0
    target = target_acc if target_acc is not None else done[0][0]["test_acc"] - TTA_BELOW_FULL
    for row, summary in done:
        tta = charged_time_to_accuracy(summary, target)
        evaluations = time_to_accuracy(summary["rows"], summary["started_at"], target)["tta_eval_s"]
        row["tta_s"], row["tta_target"] = math.nan if tta is None else tta, target
        row["tta_with_eval_s"] = math.nan if tta is None else tta + evaluations  # MLPerf's clock


def plot_tta(table, ax) -> None:
    """Time-to-accuracy per point (mean over the seeds that reached the target); the points
    that never did are named in the title."""
    from raypkg.plots import hbar

    points = table.assign(point=(table["method"] + " " + table["setting"].replace("-", "")).str.strip())
    hbar(points[points["tta_s"].notna()], ax, "point", ["tta_s"], "seconds to the target accuracy (evaluation excluded)")
    never = points.loc[points["tta_s"].isna(), "point"]
    ax.set_title("time-to-accuracy" + (f"; never reached: {', '.join(never)}" if len(never) else ""), fontsize=9)


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


def count_options(func):
    for name, text in reversed(COUNTS.items()):
        func = click.option(f"--{name.replace('_', '-')}", type=int, help=text + " Default: the preset's.")(func)
    return func


@click.command("frontier")
@click.option("--setup", default="digits-aug:mlp", show_default=True, type=click.Choice(list(PRESETS)),
              help="Preset of every setting below (a flag given overrides it): digits-aug:mlp (20k train / 5k "
                   "test, MLP, 10 epochs, 3 seeds; minutes), digits-aug:mlp-noisy (the same with --label-noise 0.3), "
                   "digits-aug:resnet20 (5k / 1k, ResNet-20, batch 128, 1 seed; 30-60 minutes on 2 cores), "
                   "fashion-mnist:mlp, fashion-mnist:lenet5 and fashion-mnist:resnet20 (the full 60k / 10k real "
                   "images, 3 seeds, every method and the curve on the linear schedule; `effray datasets` says where "
                   "the data comes from; ResNet-20 wants a GPU), and fashion-mnist:resnet20-2k, ResNet-20's stated "
                   "subset for a CPU (a class-stratified 2k / 2k of those images, drawn by seed; 43-46 minutes "
                   "a seed with 3 seeds side by side on 2 cores, 1 thread each).")
@click.option("--dataset", help="Dataset (`effray datasets`) or MODULE:FACTORY. Default: digits-aug.")
@click.option("--model", help="Model (`effray models`) or MODULE:FACTORY. Default: the preset's.")
@click.option("--data-dir", type=click.Path(), help="Directory of the torchvision datasets / ImageFolder tree.")
@click.option("--label-noise", type=float,
              help="Symmetric noise on this fraction of the training labels, in [0, 1) (the same noisy labels for "
                   "every method of a seed). Default: the preset's (0, or 0.3 for digits-aug:mlp-noisy).")
@list_option("--methods", default=",".join(m for m, case in METHODS.items() if case.family != "full" and case.default),
              show_default=True, help="Comma-separated methods, or stacks of them joined by + (e.g. "
                                      "infobatch+rigl-itop,rs2+rigl-itop). Full training always runs, at fp32 and "
                                      "contiguous weights (full-fp32: the reference of every ratio and of the TTA "
                                      "target) and at the precision and memory format that auto picks on this "
                                      "machine (full).")
@list_option("--fractions", type=FLOATS, help="Subset fractions (uniform, DeepCore, LiPT) and CREST's fractions "
                                               "of full training's steps, in (0, 1]. Default: 0.1,0.3.")
@list_option("--densities", type=FLOATS, help="Densities of the sparse methods, in (0, 1]. Default: 0.05.")
@list_option("--budgets", type=FLOATS,
             help="The budget curve: full training at these fractions of --epochs, in (0, 1], each with its "
                  "schedule compressed to round(B x epochs) epochs, at fp32 and at auto's execution; 1 always "
                  "runs. Default: 0.1,0.2,0.3,0.5,0.7,1.")
@list_option("--curve-schedules", type=NAMES,
             help="The budget curve's LR schedules, each decayed to 0 at its budget: cosine and linear (Budgeted "
                  "Training's); with both, the curve is the better of the two at every budget (a schedule other "
                  "than --schedule runs every budget, 1 included). Default: cosine,linear.")
@click.option("--schedule", type=click.Choice(SCHEDULES),
              help="LR schedule of every method and of full training at the whole budget (the reference), decayed "
                   "to 0 at the end. Default: cosine.")
@list_option("--lr", type=FLOATS, help="Learning rate of every method (--schedule).")
@list_option("--selection-models", type=NAMES,
             help="SVP (Coleman et al., ICLR 2020): comma-separated proxy models (`effray models`), each of which "
                  "also warms up and scores for every point whose selection uses a model (DeepCore's model-based "
                  "selectors, LiPT's shard models): a point of its own (setting svp=MODEL), its warm-up counted at "
                  "the proxy's FLOPs, with spearman and overlap against the point scored by --model. Default: none.")
@count_options
@click.option("--first-seed", type=int, default=0, show_default=True,
              help="The first of the --seeds seeds: runs seeds FIRST .. FIRST + N - 1 (split a frontier's seeds over "
                   "cores or machines, then --merge their tables).")
@click.option("--merge", multiple=True, type=click.Path(dir_okay=False),
              help="A frontier's stored rows (STEM.parquet) over other seeds of the same points; repeated, they are "
                   "merged into one table, summary and plots as if one run had made them; nothing is trained "
                   "(give the runs' --setup; no other flag).")
@click.option("--add", "panels", type=click.Choice(["deltagrad"]), multiple=True,
              help="A separate panel: deltagrad serves deletions of 0.1% and 1% of the training set by retraining "
                   "and by DeltaGrad (in `bench deltagrad`'s setting) on the same data, label noise and seeds.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Ray Train workers for every training (0: in this process); with --address, on that cluster.")
@target_acc_option("Time-to-accuracy target of every row. Default: the preset's (digits-aug:mlp 0.92, "
                   "digits-aug:mlp-noisy 0.84, digits-aug:resnet20 0.97); with a fashion-mnist preset or another "
                   "--dataset, --model or --label-noise, each seed's full training's final test accuracy minus 0.5 "
                   "points.")
@bench_options(save_help=SAVE_HELP + " Also STEM-summary.parquet (mean and spread over seeds) and STEM-flops.png "
                                     "(accuracy vs FLOPs).")
@address_option
def frontier_bench(setup, methods, first_seed, merge, panels, workers, target_acc, wandb, threads, save, **flags):
    """Every method family on one dataset and model: accuracy vs end-to-end seconds and FLOPs.

    Every method's bench cases, in the registry's order (full training first; --methods
    picks), each through its recipe, at one epoch budget and LR schedule, over --seeds
    seeds: a row per method, setting and seed, means and spreads, and the Pareto fronts.

    \b
    Examples:
      effray bench frontier                                      # digits-aug, MLP, 3 seeds
      effray bench frontier --setup digits-aug:mlp-noisy         # the same with 30% label noise
      effray bench frontier --label-noise 0.2 --seeds 5          # any noise level, more seeds
      effray bench frontier --setup fashion-mnist:mlp            # real data at full size
    """
    if merge:
        return merge_runs(setup, merge, save, wandb, threads, given=[
            name for name in ("methods", "first_seed", "panels", "workers", "target_acc", "threads", *flags)
            if click.get_current_context().get_parameter_source(name) != click.core.ParameterSource.DEFAULT])
    names = [REFERENCE, "full"] + [m for m in method_names(methods) if m not in (REFERENCE, "full")]
    settings = preset_settings(setup, {**flags, "workers": workers, "target_acc": target_acc})
    check_bench_numbers(workers=workers, threads=threads)
    check_seed_count(settings["seeds"], check_first_seed(first_seed))
    points = build_points(settings, names, seed=0)  # every config checked before any data is loaded
    if settings["selection_models"] and not any(",svp=" in p.labels["setting"] for p in points):
        raise UsageError(f"--selection-models {','.join(settings['selection_models'])}: no method of --methods scores "
                         "with a model (DeepCore's model-based selectors such as grand, LiPT), so no proxy would run")
    if panels:
        deltagrad_configs(settings, seed=0)
    check_address_used(workers > 0)
    runner = BenchRunner("frontier", save, threads, wandb)
    rows, deltagrad_rows = [], []
    with tempfile.TemporaryDirectory(prefix="effray-frontier-") as scratch:
        cache = SelectionCache(scratch)  # warm-ups, shard models, selections: keyed by config, seed included
        for seed in range(first_seed, first_seed + settings["seeds"]):
            points, data = load_points(settings, names, seed)
            if seed == first_seed:
                runner.header(setup_name(setup, settings), data, methods=names, **{
                    k: v for k, v in settings.items() if k not in ("dataset", "model", "data_dir", "train_size",
                                                                   "test_size", "target_acc")},
                    target_acc=settings["target_acc"] or f"full training's less {TTA_BELOW_FULL * 100:g} points")
                per_example = flops_per_example(settings["model"], data)
            done = runner.rows(points, data, PHASES, "e2e_s", cache=cache)
            if settings["selection_models"]:
                add_svp_agreement(done)
            add_tta(done, settings["target_acc"])
            rows += [count_examples(p, row, summary, data, per_example) for p, (row, summary) in zip(points, done)]
            if panels:
                deltagrad_rows += deltagrad_panel(settings, seed, Path(scratch))
    frame = add_curves(add_deltas(pd.DataFrame(rows)), chance=1.0 / data.num_classes)
    save_results(runner, frame, aggregate(frame), settings, deltagrad_table(deltagrad_rows) if deltagrad_rows else None)


def check_first_seed(first: int) -> int:
    """``--first-seed``: a seed itself (the seeds after it are ``check_seed_count``'s)."""
    if not 0 <= first < SEED_LIMIT:
        raise UsageError(f"--first-seed must be a seed in [0, 2**32), got {first}")
    return first


def merge_runs(setup: str, paths: tuple[str, ...], save: str | None, wandb: str, threads: int | None,
               given: list[str]) -> None:
    """`--merge`: the stored rows of frontier runs over disjoint seeds of the same points (its
    ratios and curves are per seed) concatenated, summarised and saved as one run's."""
    from raypkg.tracking.markdown import read_table
    from raypkg.tracking.provenance import read_provenance

    if given:
        raise UsageError(f"--merge reads stored rows and trains nothing: leave out --{given[0].replace('_', '-')}")
    frames = [read_table(path, "--merge") for path in paths]
    for path, frame in zip(paths, frames):
        if not {"method", "setting", "seed", "e2e_s", "x_vs_curve"} <= set(frame.columns):
            raise UsageError(f"--merge: {path} is not a frontier's rows (STEM.parquet, not STEM-summary.parquet)")
    points = [sorted(set(zip(f["method"], f["setting"]))) for f in frames]
    if any(p != points[0] for p in points):
        raise UsageError(f"--merge: {paths[next(i for i, p in enumerate(points) if p != points[0])]} has other points "
                         f"than {paths[0]}: merge runs of the same --methods and grids")
    seeds = [s for f in frames for s in sorted(set(f["seed"]))]
    if len(seeds) != len(set(seeds)):
        raise UsageError(f"--merge: seed {next(s for s in seeds if seeds.count(s) > 1)} is in more than one table")
    frame = pd.concat(frames, ignore_index=True).sort_values("seed", kind="stable", ignore_index=True)
    runner = BenchRunner("frontier", save, threads, wandb)
    sources = [read_provenance(path) for path in paths]  # where the rows were measured, not where they merge
    if all(sources):
        draft = next((s["draft"] for s in (runner.source, *sources) if s.get("draft")), None)  # the merge's or a row's
        runner.source = {**sources[0], "command": f"{runner.source['command']}; its rows: " + "; ".join(
            f"{source['command']} (at {source['commit']})" for source in sources), **({"draft": draft} if draft else {})}
    settings = PRESETS[setup]  # the title's dataset, model and label noise
    click.echo(f"# frontier {setup}: merged {len(paths)} tables, seeds {', '.join(map(str, seeds))}")
    save_results(runner, frame, aggregate(frame), settings, None)


def save_results(runner: BenchRunner, frame, table, settings: dict, panel) -> None:
    """The summary printed; STEM.parquet (rows), STEM.png (accuracy vs seconds),
    STEM-summary.parquet (means), STEM-flops.png (accuracy vs FLOPs), with --add deltagrad
    STEM-deltagrad.parquet and .png; each table with its plots to W&B."""
    stem, title = runner.stem, f"{settings['dataset']}/{settings['model']}, label noise {settings['label_noise']:g}"
    shown = [c for c in TABLE_COLUMNS if c in table.columns and not (c == "noisy_share" and table[c].isna().all())]
    fig, (ax,) = figure(width=7.0, height=4.2)
    plot_frontier(table, ax, "flops", "training FLOPs")
    ax.set_title(f"{title}: accuracy vs training FLOPs")
    flops = save_png(fig, stem.with_name(stem.name + "-flops.png"))
    fig, (ax,) = figure(width=7.0, height=4.2)
    plot_tta(table, ax)
    tta = save_png(fig, stem.with_name(stem.name + "-tta.png"))
    runner.finish(frame, shown, {"flops": ".3g", "test_acc": ".4f", "test_acc_std": ".4f"}, printed=table,
                  title=f"{title}: accuracy vs end-to-end seconds", extra={"-summary": table},
                  plot=lambda _, ax: plot_frontier(table, ax, "e2e_s", "end-to-end seconds"),
                  images={"accuracy_vs_flops": flops, "time_to_accuracy": tta})
    if panel is not None:
        click.echo("\n# DeltaGrad vs retraining from scratch after deleting a random fraction of the training set")
        runner.finish(panel, DELTAGRAD_COLUMNS, {"acc_baseline": ".4f", "acc_deltagrad": ".4f"}, suffix="-deltagrad",
                      plot=plot_deltagrad, title="DeltaGrad vs retraining after a deletion")
