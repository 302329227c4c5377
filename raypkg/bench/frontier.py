"""`effray bench frontier`: every method family on one dataset and model, one seed set,
one epoch budget and one LR schedule: what accuracy each method buys per second.

For each seed (0 .. --seeds - 1) the data is loaded once (with --label-noise, the same
noisy labels for every method: the noise is drawn from the data seed) and every point
runs through its method's recipe in memory (``MemorySink``), so a row is what `effray
run ...` with the same settings gives:

- ``full``: full-data training (``train`` recipe), the reference of every ratio;
- ``rs2``, ``uniform`` at each fraction f: RS2, a fresh uniform subset every epoch (the
  reference of every subset method), and one fixed uniform subset (``coreset`` recipe);
- ``grand``, ``glister``, ``craig`` at each f: DeepCore-style, a full-data warm-up of
  --pretrain-epochs (GraNd: --repeats of them), selection, subset training (``coreset``);
- ``lipt-grand``, ``lipt-glister`` at each f: LiPT's --shards sparse shard models of
  --pre-epochs, merged by its default rule, selection, subset training (``lipt``);
- ``crest`` at each f: mini-batch coresets for f times full training's steps (``crest``);
- ``infobatch``: InfoBatch's dynamic pruning with the paper's r and delta (``infobatch``);
- ``rigl-itop``, ``a-rigl-itop`` at each density d: dynamic sparse training without and
  with adaptive gradient correction (``sparse``).

Every config gets the same epochs, batch size, learning rate, cosine schedule, SGD
momentum, weight decay (no Nesterov) and seed, whatever the method's own defaults.
Warm-ups, shard models and selections are computed once per seed through a scratch cache
and every row that uses them is charged their original seconds, as the coreset and LiPT
benches do. An untimed one-epoch run of each recipe first pays the process's one-time
costs (imports, the first call of each code path).

A row (one per method, setting and seed) has the seconds of each phase the recipe
reports (pretrain, merge, selection, check, train, eval), ``e2e_s``, their sum,
``test_acc``, ``examples_seen`` (examples through a training forward and backward pass,
warm-ups and shard models included; CREST: steps x batch size) and ``flops``, the
training FLOPs: 3 x forward FLOPs per example seen (``raypkg.models.flops``), a masked
model's (sparse rows, LiPT's shard models) weighted layer by layer by its ERK densities,
and for AGC also its forward and backward at the snapshot on every batch and the
snapshot gradient over --agc-sample examples each epoch. Selection, check and evaluation
passes are not in ``flops`` (their seconds are). Ratios: ``speedup_vs_full`` = full
training's e2e_s / the row's, ``acc_vs_full`` the test-accuracy difference in points;
``speedup_vs_rs2`` and ``acc_vs_rs2`` the same against RS2 at the same fraction (the
random baseline the data-efficiency literature compares against: Okanovic et al. 2023),
all within a seed. With label noise, ``noisy_share`` is the share of a
selected subset whose labels were changed (the data's share is the noise level).

The aggregated table has the mean and standard deviation over seeds of each point;
``pareto`` and ``pareto_flops`` mark the points no other point beats in both accuracy
and end-to-end seconds (or FLOPs), computed by ``pareto_front``.

``--add deltagrad`` adds a separate panel, since DeltaGrad answers another question (how
fast a trained model forgets samples): per seed, one cached SGD run in DeltaGrad's own
setting on the same data, then deletions of 0.1% and 1% of the training set served by
retraining from scratch and by DeltaGrad (``deltagrad`` recipe): seconds, speed-up, test
accuracies and the distances between the models.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click

from raypkg.bench.harness import (SAVE_HELP, bench_options, bench_stem, check_bench_numbers, hbar, name_list,
                                  print_table, save_bench, use_threads, warm_up)
from raypkg.cli_options import FLOATS, address_option
from raypkg.recipe import load_cases

# method -> its case (``raypkg.recipe.BenchCase``, registered beside each recipe); "full"
# always runs (it is every ratio's reference).
METHODS = load_cases()
FAMILY_MARKERS = {"full": "s", "uniform": "o", "deepcore": "^", "lipt": "*", "crest": "D", "infobatch": "P",
                  "sparse": "v"}
PHASES = ("pretrain", "merge", "selection", "check", "train", "eval")
# Presets: every setting a flag may override. digits-aug:mlp finishes in minutes on 2 cores.
MLP = {"dataset": "digits-aug", "model": "mlp", "train_size": 20000, "test_size": 5000, "label_noise": 0.0,
       "epochs": 10, "batch_size": 64, "lr": [0.1], "momentum": 0.9, "weight_decay": 5e-4, "seeds": 3,
       "fractions": [0.1, 0.3], "densities": [0.05], "pretrain_epochs": 5, "repeats": 3, "shards": 10,
       "pre_epochs": 5, "update_frequency": 100, "agc_sample": 2000}
PRESETS = {
    "digits-aug:mlp": MLP,
    "digits-aug:mlp-noisy": {**MLP, "label_noise": 0.3},
    "digits-aug:resnet20": {**MLP, "model": "resnet20", "train_size": 5000, "test_size": 1000, "batch_size": 128,
                            "seeds": 1, "pretrain_epochs": 2, "repeats": 2, "shards": 4, "pre_epochs": 2,
                            "update_frequency": 20, "agc_sample": 500},
}
# --add deltagrad: the deletions served, as fractions of the training set (0.1% and 1%).
DELTAGRAD_RATIOS = (0.001, 0.01)
DELTAGRAD_COLUMNS = ["ratio", "seeds", "n_ids", "time_baseline", "time_deltagrad", "speedup", "speedup_std",
                     "acc_original", "acc_baseline", "acc_deltagrad", "dist_U_star", "dist_I_U"]
TABLE_COLUMNS = ["family", "method", "setting", "seeds", *[f"{p}_s" for p in PHASES], "e2e_s", "e2e_s_std",
                 "test_acc", "test_acc_std", "flops", "speedup_vs_full", "acc_vs_full", "speedup_vs_rs2",
                 "acc_vs_rs2", "noisy_share", "pareto", "pareto_flops"]


@dataclass(frozen=True)
class Point:
    """One method at one setting: its row's labels and the recipe and config that run it."""

    method: str
    fraction: float | None  # subset methods and CREST
    density: float | None  # sparse methods
    cfg: Any

    @property
    def family(self) -> str:
        return METHODS[self.method].family

    @property
    def recipe(self) -> str:
        return METHODS[self.method].recipe

    @property
    def setting(self) -> str:
        return f"f={self.fraction:g}" if self.fraction is not None else \
            f"d={self.density:g}" if self.density is not None else "-"


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates, in order of cost. Point j dominates
    i when cost_j <= cost_i and value_j >= value_i, one of them strictly (lower cost and
    higher value are better). Points with a NaN are neither on the front nor dominate."""
    ok = [i for i in range(len(cost)) if not (math.isnan(cost[i]) or math.isnan(value[i]))]

    def dominates(j: int, i: int) -> bool:
        return cost[j] <= cost[i] and value[j] >= value[i] and (cost[j] < cost[i] or value[j] > value[i])

    front = [i for i in ok if not any(dominates(j, i) for j in ok)]
    return sorted(front, key=lambda i: (cost[i], value[i]))


def add_deltas(frame):
    """``frame`` (one row per point and seed) with the ratios against full training and
    against RS2 at the same fraction, within each seed: ``speedup_vs_*`` = the
    reference's e2e_s / the row's, ``acc_vs_*`` = (test_acc - the reference's) in points.
    NaN where the reference is missing (RS2: rows without a fraction, or no rs2 row)."""
    frame = frame.copy()
    full = frame[frame["method"] == "full"].set_index("seed")
    rs2 = frame[frame["method"] == "rs2"].set_index(["seed", "fraction"])
    for i, row in frame.iterrows():
        ref = full.loc[row["seed"]] if row["seed"] in full.index else None
        frame.loc[i, "speedup_vs_full"] = ref["e2e_s"] / row["e2e_s"] if ref is not None else math.nan
        frame.loc[i, "acc_vs_full"] = 100 * (row["test_acc"] - ref["test_acc"]) if ref is not None else math.nan
        key = (row["seed"], row["fraction"])
        ref = rs2.loc[key] if not math.isnan(row["fraction"]) and key in rs2.index else None
        frame.loc[i, "speedup_vs_rs2"] = ref["e2e_s"] / row["e2e_s"] if ref is not None else math.nan
        frame.loc[i, "acc_vs_rs2"] = 100 * (row["test_acc"] - ref["test_acc"]) if ref is not None else math.nan
    return frame


def aggregate(frame):
    """One row per point: the mean over seeds of every number, ``e2e_s_std``,
    ``test_acc_std`` and ``flops_std`` (standard deviation over seeds, 0 for one seed),
    the range of e2e_s and flops (``_min``, ``_max``), ``seeds``, and the two Pareto
    fronts (accuracy vs e2e_s, accuracy vs FLOPs)."""
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
    for flag, cost in (("pareto", "e2e_s"), ("pareto_flops", "flops")):
        front = set(pareto_front(table[cost].tolist(), table["test_acc"].tolist()))
        table[flag] = [i in front for i in range(len(table))]
    return table


def plot_frontier(table, ax, cost: str, xlabel: str) -> None:
    """Test accuracy against ``cost``: one marker per family, error bars over seeds (accuracy:
    one standard deviation; cost: its range), each point labelled, and the Pareto front
    through the non-dominated points."""
    for family, group in table.groupby("family", sort=False):
        # the mean of equal values can round 1 ulp outside their range: no negative bar
        spread = [(group[cost] - group[f"{cost}_min"]).astype(float).clip(lower=0),
                  (group[f"{cost}_max"] - group[cost]).astype(float).clip(lower=0)]
        ax.errorbar(group[cost], 100 * group["test_acc"], xerr=spread,
                    yerr=100 * group["test_acc_std"], fmt=FAMILY_MARKERS.get(family, "o"), markersize=7,
                    capsize=2, linewidth=0.8, label=family)
        for _, row in group.iterrows():
            text = row["method"] + ("" if row["setting"] == "-" else f" {row['setting']}")
            ax.annotate(text, (row[cost], 100 * row["test_acc"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    front = pareto_front(table[cost].tolist(), table["test_acc"].tolist())
    ax.plot(table[cost].iloc[front], 100 * table["test_acc"].iloc[front], linestyle="--", color="grey",
            linewidth=1, label="Pareto front", zorder=0)
    if (table[cost] > 0).all():
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")  # ticks as plain numbers: 1, 2, 5, 10, ... (or 1e+10, 2e+10, ...)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def preset_settings(setup: str, flags: dict) -> dict:
    """The preset's settings with the flags given (not None) on top, each fraction and
    density once. A preset's dataset sizes belong to its generated dataset: --dataset naming
    a fixed-size one drops them. Every method trains on one cosine schedule: one --lr."""
    from raypkg.data.registry import dataset_entry
    from raypkg.errors import UsageError

    settings = {**PRESETS[setup], "data_dir": None}
    if flags.get("dataset") and not dataset_entry(flags["dataset"]).sized:
        settings.update(train_size=None, test_size=None)
    settings.update({k: v for k, v in flags.items() if v is not None})
    if len(settings["lr"]) != 1:
        raise UsageError(f"--lr takes one value here (every method trains on one cosine schedule), got "
                         f"{','.join(map(str, settings['lr']))}")
    return {**settings, **{k: list(dict.fromkeys(settings[k])) for k in ("fractions", "densities")}}


def parse_methods(text: str) -> list[str]:
    """``--methods``: comma-separated names of METHODS; full is always added first."""
    names = name_list(text, "--methods", METHODS, "method")
    return ["full"] + [m for m in dict.fromkeys(names) if m != "full"]


def build_points(s: dict, methods: list[str], seed: int, n: int | None = None) -> list[Point]:
    """Every point's validated config for ``seed`` from the settings ``s`` (a preset with
    the flags given on top): the shared training settings, then each method's own (its
    case's ``config``); full training first, then the other methods without a grid
    (InfoBatch), then each fraction's points and each density's. ``n``, the training set's
    size once loaded, sizes what depends on it (CREST's random subsets, AGC's sample)."""
    common = dict(dataset=s["dataset"], model=s["model"], data_dir=s["data_dir"], train_size=s["train_size"],
                  test_size=s["test_size"], label_noise=s["label_noise"], seed=seed, epochs=s["epochs"],
                  batch_size=s["batch_size"], lr=list(s["lr"]), schedule="cosine", momentum=s["momentum"],
                  weight_decay=s["weight_decay"], nesterov=False, workers=s["workers"], progress=False,
                  wandb="disabled")

    def point(method: str, value: float | None, grid: str | None) -> Point:
        cfg = METHODS[method].config(method, value, s, common, n).resolved().validate()
        return Point(method, value if grid == "fractions" else None, value if grid == "densities" else None, cfg)

    points = [point("full", None, None)] + [point(m, None, None) for m in methods
                                            if m != "full" and METHODS[m].grid is None]
    for grid in ("fractions", "densities"):
        points += [point(m, value, grid) for value in s[grid] for m in methods if METHODS[m].grid == grid]
    return points


def check_points(points: list[Point], data) -> None:
    """Each point's recipe ``check`` against the loaded data, before any row runs (a bench
    passes the data in, so the recipes do not check it themselves)."""
    from raypkg.recipe import load_recipes

    for p in points:
        check = load_recipes()[p.recipe].check
        if check:
            check(p.cfg, data)


def load_points(settings: dict, methods: list[str], seed: int):
    """The data of ``seed`` (loaded once: every method sees the same noisy labels) and
    the points' configs for it, checked against it."""
    from raypkg.recipe import load_data

    data = load_data(build_points(settings, methods, seed)[0].cfg)
    points = build_points(settings, methods, seed, n=len(data.train))
    check_points(points, data)
    return points, data


@dataclass
class ForwardFlops:
    """A model's forward FLOPs per example (``raypkg.models.flops``), dense or masked."""

    model: Any  # the nn.Module, for its masks' layer densities
    layers: dict[str, float]

    @classmethod
    def of(cls, model_name: str, data) -> "ForwardFlops":
        from raypkg.models.flops import layer_flops
        from raypkg.models.registry import build_model

        model = build_model(model_name, data.input_shape, data.num_classes)
        return cls(model, layer_flops(model, data.input_shape))

    def per_example(self, density: float = 1.0, init: str = "ERK") -> float:
        """Dense (density 1), or each layer weighted by its density under ``init``."""
        from raypkg.models.flops import forward_flops
        from raypkg.sparse.masks import layer_densities

        return forward_flops(self.layers, None if density == 1 else layer_densities(self.model, density, init))


def examples_and_flops(point: Point, summary: dict, n: int, flops: ForwardFlops) -> tuple[int, float]:
    """(examples seen, training FLOPs) of one run: its case's examples and their forward
    FLOPs, times the forward passes of a training step (``TRAIN_STEP_FACTOR``)."""
    from raypkg.models.flops import TRAIN_STEP_FACTOR

    seen, forward = METHODS[point.method].examples(point.cfg, summary, n, flops.per_example)
    return seen, TRAIN_STEP_FACTOR * forward


def run_point(point: Point, data, cache, flops: ForwardFlops) -> dict:
    """One row: the point's recipe run in memory; phase seconds (a cached warm-up, shard
    model or selection charged its original seconds), accuracy and compute."""
    import numpy as np

    from raypkg.recipe import MemorySink, load_recipes

    summary = load_recipes()[point.recipe].run(point.cfg, MemorySink, data=data, cache=cache)
    phases = summary["cost_s"]
    row = {"family": point.family, "method": point.method, "setting": point.setting, "seed": point.cfg.seed,
           "fraction": math.nan if point.fraction is None else point.fraction,
           "density": math.nan if point.density is None else point.density,
           **{f"{p}_s": phases.get(p, 0.0) for p in PHASES}}
    row["e2e_s"] = sum(row[f"{p}_s"] for p in PHASES)
    row["test_acc"] = summary["test_acc"]
    row["examples_seen"], row["flops"] = examples_and_flops(point, summary, len(data.train), flops)
    row["noisy_share"] = math.nan
    if data.noisy is not None and "selection.parquet" in summary["tables"]:
        picked = np.asarray(summary["tables"]["selection.parquet"]["index"])
        row["noisy_share"] = float(np.isin(picked, data.noisy.numpy()).mean())
    return row


def deltagrad_configs(s: dict, seed: int) -> list:
    """The DeltaGrad panel's requests for ``seed``: deleting each of DELTAGRAD_RATIOS at
    random, through DeltaGrad's recipe in its own training setting (`bench deltagrad`'s,
    the paper's MNIST one: logistic regression on pixels in [0, 1], plain SGD with batch
    16384, 20 epochs, lr 0.1 then 0.05, float64), on the frontier's data and label noise."""
    from raypkg.bench.deltagrad import BENCH_RUN
    from raypkg.deltagrad.config import DeltaGradTuneConfig

    paper = {k: v for k, v in BENCH_RUN.items() if k not in ("dataset", "seed")}
    data = dict(dataset=s["dataset"], data_dir=s["data_dir"], train_size=s["train_size"],
                test_size=s["test_size"], label_noise=s["label_noise"], seed=seed)
    return [DeltaGradTuneConfig(**data, **paper, kind="delete", ratio=r, request_seed=seed + 1,
                                repeat=1).resolved().validate() for r in DELTAGRAD_RATIOS]


def deltagrad_panel(s: dict, seed: int, scratch: Path) -> list[dict]:
    """One cached SGD run for ``seed`` (`effray unlearn train`), then each deletion served
    by retraining from scratch without the deleted samples and by DeltaGrad (Wu et al. 2020,
    Algorithm 1), both through DeltaGrad's recipe: one row per deletion."""
    import torch

    from raypkg.deltagrad.commands import train_run
    from raypkg.deltagrad.recipe import DELTAGRAD
    from raypkg.recipe import MemorySink

    configs = deltagrad_configs(s, seed)
    training = dataclasses.replace(configs[0].training_config(), out=str(scratch), name=f"deltagrad-seed{seed}",
                                   wandb="disabled", progress=False)
    run_dir = Path(train_run(training, threads=torch.get_num_threads())["run_dir"]).resolve()
    rows = []
    for cfg in configs:
        metrics = DELTAGRAD.run(dataclasses.replace(cfg, run=str(run_dir)), MemorySink)["rows"][0]
        rows.append({"seed": seed, "ratio": cfg.ratio, **{k: metrics[k] for k in DELTAGRAD_COLUMNS if k in metrics}})
        click.echo(f"  seed {seed} deltagrad delete {cfg.ratio:g}: speed-up {metrics['speedup']:.2f}, test_acc "
                   f"{metrics['acc_deltagrad']:.4f} (retrained {metrics['acc_baseline']:.4f})", err=True)
    return rows


def deltagrad_table(rows: list[dict]):
    """The panel's mean over seeds per deletion ratio (``speedup_std``: its spread)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    groups = frame.groupby("ratio")
    table = groups.mean(numeric_only=True).drop(columns="seed").reset_index()
    table["speedup_std"] = groups["speedup"].std(ddof=1).fillna(0.0).to_numpy()
    table["seeds"] = groups.size().to_numpy()
    return table


def plot_deltagrad(table, ax) -> None:
    """Retraining vs DeltaGrad seconds per deleted fraction, with the test accuracies."""
    labelled = table.assign(label=[f"delete {100 * r:g}%: acc {a:.3f} retrained / {b:.3f} DeltaGrad"
                                   for r, a, b in zip(table["ratio"], table["acc_baseline"], table["acc_deltagrad"])])
    hbar(labelled, ax, "label", ["time_baseline", "time_deltagrad"], "seconds")


@click.command("frontier")
@click.option("--setup", default="digits-aug:mlp", show_default=True,
              type=click.Choice(list(PRESETS)),
              help="Preset of every setting below (a flag given overrides it): digits-aug:mlp (20k train / 5k "
                   "test, MLP, 10 epochs, 3 seeds; minutes), digits-aug:mlp-noisy (the same with --label-noise 0.3), "
                   "digits-aug:resnet20 (5k / 1k, ResNet-20, batch 128, 1 seed; 30-60 minutes on 2 cores).")
@click.option("--dataset", help="Dataset (`effray datasets`) or MODULE:FACTORY. Default: digits-aug (every "
                                "preset's).")
@click.option("--model", help="Model (`effray models`) or MODULE:FACTORY. Default: the preset's.")
@click.option("--data-dir", type=click.Path(), help="Directory of the torchvision datasets / ImageFolder tree.")
@click.option("--train-size", type=int, help="Size of a generated dataset (digits-aug, synthetic). Default: the "
                                            "preset's (dropped for a fixed-size --dataset).")
@click.option("--test-size", type=int, help="Test size of a generated dataset. Default: the preset's.")
@click.option("--label-noise", type=float,
              help="Symmetric noise on this fraction of the training labels, in [0, 1) (the same noisy labels for "
                   "every method of a seed). Default: the preset's (0, or 0.3 for digits-aug:mlp-noisy).")
@click.option("--seeds", type=int, help="Seeds 0 .. N-1, each a run of every point. Default: the preset's.")
@click.option("--methods", default=",".join(m for m, case in METHODS.items() if m != "full" and case.default),
              show_default=True,
              help="Comma-separated methods (full training always runs: it is the reference).")
@click.option("--fractions", type=FLOATS, help="Subset fractions (uniform, DeepCore, LiPT) and CREST's fractions "
                                               "of full training's steps, in (0, 1]. Default: 0.1,0.3.")
@click.option("--densities", type=FLOATS, help="Densities of the sparse methods, in (0, 1]. Default: 0.05.")
@click.option("--epochs", type=int, help="Training epochs of every method (subsets train as many epochs).")
@click.option("--batch-size", type=int, help="Mini-batch size of every method.")
@click.option("--lr", type=FLOATS, help="Learning rate of every method (cosine schedule).")
@click.option("--pretrain-epochs", type=int, help="DeepCore: full-data warm-up epochs before selection.")
@click.option("--repeats", type=int, help="DeepCore GraNd: warm-ups whose scores are averaged.")
@click.option("--shards", type=int, help="LiPT: shard models K.")
@click.option("--pre-epochs", type=int, help="LiPT: pre-training epochs of every shard model.")
@click.option("--update-frequency", type=int, help="RigL: optimizer steps between mask updates.")
@click.option("--agc-sample", type=int, help="AGC: examples of the snapshot gradient.")
@click.option("--add", "panels", type=click.Choice(["deltagrad"]), multiple=True,
              help="A separate panel: deltagrad serves deletions of 0.1% and 1% of the training set by retraining "
                   "and by DeltaGrad (in its own setting, `bench deltagrad`'s: SGD on logistic regression) on the "
                   "same data, label noise and seeds.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Ray Train workers for every training (0: in this process); with --address, on that cluster.")
@click.option("--wandb", type=click.Choice(["offline", "online", "disabled"]), default="offline", show_default=True,
              help="W&B mode of the bench's run (the tables and both plots), under the --save directory.")
@bench_options(save_help=SAVE_HELP + " Also STEM-summary.parquet (mean and spread over seeds) and STEM-flops.png "
                                     "(accuracy vs FLOPs).")
@address_option
def frontier_bench(setup, methods, panels, workers, wandb, threads, save, **flags):
    """Every method family on one dataset and model: accuracy vs end-to-end seconds and FLOPs.

    Full training, RS2 and fixed uniform subsets, DeepCore-style GraNd/Glister/CRAIG, LiPT
    GraNd/Glister, CREST, InfoBatch, RigL-ITOP and A-RigL-ITOP, each through its recipe, at
    one epoch budget and LR schedule, over --seeds seeds; one row per method, setting and
    seed, a table of means and spreads, and the Pareto front of accuracy against seconds
    and against FLOPs.

    \b
    Examples:
      effray bench frontier                                      # digits-aug, MLP, 3 seeds
      effray bench frontier --setup digits-aug:mlp-noisy         # the same with 30% label noise
      effray bench frontier --label-noise 0.2 --seeds 5          # any noise level, more seeds
      effray bench frontier --setup digits-aug:resnet20          # the papers' model class (slow)
      effray bench frontier --dataset digits --model logreg --epochs 5 --methods uniform,glister,crest
      effray bench frontier --fractions 0.05,0.2 --densities 0.1,0.02 --methods uniform,crest,rigl-itop
      effray bench frontier --add deltagrad                      # also DeltaGrad vs retraining
    """
    import pandas as pd
    import torch

    from raypkg.distributed.cluster import check_address_used
    from raypkg.errors import UsageError
    from raypkg.recipe import load_recipes
    from raypkg.selection.cache import SelectionCache
    from raypkg.tracking.wandb_logger import use_wandb_mode

    names = parse_methods(methods)
    settings = preset_settings(setup, {**flags, "workers": workers})
    check_bench_numbers(seeds=settings["seeds"], epochs=settings["epochs"], batch_size=settings["batch_size"],
                        repeats=settings["repeats"], shards=settings["shards"], pre_epochs=settings["pre_epochs"],
                        update_frequency=settings["update_frequency"], agc_sample=settings["agc_sample"],
                        pretrain_epochs=settings["pretrain_epochs"])
    for flag, values in (("--fractions", settings["fractions"]), ("--densities", settings["densities"])):
        if not values or not all(0 < v <= 1 for v in values):
            raise UsageError(f"{flag} takes comma-separated numbers in (0, 1], got {','.join(map(str, values))}")
    if workers < 0 or threads < 0:
        raise UsageError(f"--workers and --threads must be >= 0, got {workers} and {threads}")
    build_points(settings, names, seed=0)  # every config checked before any data is loaded
    if panels:
        deltagrad_configs(settings, seed=0)
    check_address_used(workers > 0)
    use_wandb_mode(wandb)
    stem = bench_stem(save, "frontier")
    use_threads(threads)

    rows, deltagrad_rows = [], []
    with tempfile.TemporaryDirectory(prefix="effray-frontier-") as scratch:
        cache = SelectionCache(scratch)  # warm-ups, shard models, selections: keyed by config, seed included
        for seed in range(settings["seeds"]):
            points, data = load_points(settings, names, seed)
            if seed == 0:
                echo_header(settings, setup, names, data, torch.get_num_threads())
                flops = ForwardFlops.of(settings["model"], data)
                for point in {p.recipe: p for p in reversed(points)}.values():  # each recipe's first point
                    warm_up(load_recipes()[point.recipe], point.cfg, data)
            for i, point in enumerate(points):
                rows.append(run_point(point, data, cache, flops))
                click.echo(f"  seed {seed} {point.method} {point.setting}: test_acc {rows[-1]['test_acc']:.4f}, "
                           f"{rows[-1]['e2e_s']:.1f}s ({i + 1}/{len(points)})", err=True)
            if panels:
                deltagrad_rows += deltagrad_panel(settings, seed, Path(scratch))
    frame = add_deltas(pd.DataFrame(rows))
    table = aggregate(frame)
    print_results(table)
    panel = deltagrad_table(deltagrad_rows) if deltagrad_rows else None
    if panel is not None:
        from raypkg.bench.selection import print_table

        click.echo("\n# DeltaGrad vs retraining from scratch after deleting a random fraction of the training set")
        print_table(panel.to_dict("records"), DELTAGRAD_COLUMNS, {"acc_baseline": ".4f", "acc_deltagrad": ".4f"})
    save_results(frame, table, stem, settings, setup, wandb, panel)


def echo_header(s: dict, setup: str, names: list[str], data, threads: int) -> None:
    click.echo(f"# frontier ({setup}) on {s['dataset']} ({len(data.train)} train / {len(data.test)} test), "
               f"{s['model']}, label noise {s['label_noise']:g}, {s['seeds']} seed(s); every method {s['epochs']} "
               f"epochs, batch {s['batch_size']}, lr {' '.join(map(str, s['lr']))} cosine, momentum {s['momentum']}, "
               f"wd {s['weight_decay']:g}; fractions {','.join(map(str, s['fractions']))}, densities "
               f"{','.join(map(str, s['densities']))}\n# DeepCore warm-up {s['pretrain_epochs']} epochs (GraNd x"
               f"{s['repeats']}); LiPT {s['shards']} shards x {s['pre_epochs']} epochs; RigL update every "
               f"{s['update_frequency']} steps, AGC sample {s['agc_sample']}; torch threads {threads}; "
               f"methods: {', '.join(names)}")


def print_results(table) -> None:

    shown = [c for c in TABLE_COLUMNS if c in table.columns and not (c == "noisy_share" and table[c].isna().all())]
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
               for r in table.to_dict("records")]
    print_table(records, shown, {"flops": ".3g", "test_acc": ".4f", "test_acc_std": ".4f"})


def save_results(frame, table, stem: Path, settings: dict, setup: str, wandb_mode: str, panel=None) -> None:
    """STEM.parquet (rows), STEM-summary.parquet (means), STEM.png (accuracy vs seconds),
    STEM-flops.png (accuracy vs FLOPs), with --add deltagrad STEM-deltagrad.parquet and
    .png; the tables and plots to W&B."""
    from raypkg.paths import atomic_write
    from raypkg.plots import figure, save_png
    from raypkg.tracking.run import to_plain, write_parquet
    from raypkg.tracking.wandb_logger import WandbLogger

    title = f"{settings['dataset']}/{settings['model']}, label noise {settings['label_noise']:g}"
    written = save_bench(frame, stem, title=f"{title}: accuracy vs end-to-end seconds",
                         plot=lambda _, ax: plot_frontier(table, ax, "e2e_s", "end-to-end seconds"))
    fig, (ax,) = figure(width=7.0, height=4.2)
    plot_frontier(table, ax, "flops", "training FLOPs")
    ax.set_title(f"{title}: accuracy vs training FLOPs")
    flops_png = save_png(fig, stem.with_name(stem.name + "-flops.png"))
    summary = atomic_write(stem.with_name(stem.name + "-summary.parquet"), lambda p: write_parquet(p, table))
    click.echo(f"saved: {summary}, {flops_png}")
    images = {"frontier/accuracy_vs_seconds": written[1], "frontier/accuracy_vs_flops": flops_png}
    if panel is not None:
        images["frontier/deltagrad"] = save_bench(panel, stem.with_name(stem.name + "-deltagrad"), plot=plot_deltagrad,
                                                  title="DeltaGrad vs retraining after a deletion")[1]
    logger = WandbLogger(stem.parent, name=stem.name, group="bench-frontier", mode=wandb_mode,
                         config=to_plain({"setup": setup, **settings}))
    try:
        logger.log_table("frontier/rows", frame)
        logger.log_table("frontier/summary", table)
        if panel is not None:
            logger.log_table("frontier/deltagrad", panel)
        logger.log_images(images)
    finally:
        logger.finish()
