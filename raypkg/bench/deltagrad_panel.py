"""The frontier's DeltaGrad panel (`effray bench frontier --add deltagrad`): deletions of
0.1% and 1% of the training set served by retraining and by DeltaGrad, through its recipes,
on the frontier's data, label noise and seeds."""

from __future__ import annotations

from pathlib import Path

from raypkg.methods.deltagrad.config import DeltaGradTuneConfig, UnlearnTrainConfig
from raypkg.methods.deltagrad.recipe import DELTAGRAD, UNLEARN_TRAIN

# The frontier's DeltaGrad panel: the deletions served, as fractions of the training set (0.1% and 1%).
DELTAGRAD_RATIOS = (0.001, 0.01)
DELTAGRAD_COLUMNS = ["ratio", "seeds", "n_ids", "time_baseline", "time_deltagrad", "speedup", "speedup_std",
                     "acc_original", "acc_baseline", "acc_deltagrad", "dist_U_star", "dist_I_U"]


def deltagrad_configs(s: dict, seed: int) -> list[DeltaGradTuneConfig]:
    """The frontier panel's requests for ``seed``: each of DELTAGRAD_RATIOS deleted at random,
    in `bench deltagrad`'s training setting (BENCH_RUN), on the frontier's data and label noise
    (its settings ``s``)."""
    from raypkg.methods.deltagrad.config import BENCH_RUN

    paper = {k: v for k, v in BENCH_RUN.items() if k not in ("dataset", "seed")}
    data = {k: s[k] for k in ("dataset", "data_dir", "train_size", "test_size", "label_noise")}
    return [DeltaGradTuneConfig(**data, **paper, seed=seed, kind="delete", ratio=r, request_seed=seed + 1,
                                repeat=1).resolved().validate() for r in DELTAGRAD_RATIOS]


def deltagrad_panel(s: dict, seed: int, scratch: Path) -> list[dict]:
    """One cached SGD run for ``seed`` (unlearn-train, under ``scratch``), then each deletion
    served by retraining and by DeltaGrad (Wu et al. 2020, Algorithm 1) through the
    deltagrad recipe: a row each."""
    import dataclasses

    import click
    import torch

    from raypkg.recipe import MemorySink

    configs = deltagrad_configs(s, seed)
    training = {**dataclasses.asdict(configs[0].training_config()), "out": str(scratch),
                "name": f"deltagrad-seed{seed}", "wandb": "disabled", "progress": False}
    summary = UNLEARN_TRAIN.run(UnlearnTrainConfig(**training, threads=torch.get_num_threads()))
    run_dir = str(Path(summary["run_dir"]).resolve())
    rows = []
    for cfg in configs:
        metrics = DELTAGRAD.run(dataclasses.replace(cfg, run=run_dir), MemorySink)["rows"][0]
        rows.append({"seed": seed, "ratio": cfg.ratio, **{k: metrics[k] for k in DELTAGRAD_COLUMNS if k in metrics}})
        click.echo(f"  seed {seed} deltagrad delete {cfg.ratio:g}: speed-up {metrics['speedup']:.2f}, test_acc "
                   f"{metrics['acc_deltagrad']:.4f} (retrained {metrics['acc_baseline']:.4f})", err=True)
    return rows


def deltagrad_table(rows: list[dict]):
    """The panel's mean over seeds per deletion ratio, ``speedup_std`` its spread."""
    import pandas as pd

    groups = pd.DataFrame(rows).groupby("ratio")
    table = groups.mean(numeric_only=True).drop(columns="seed").reset_index()
    table["speedup_std"] = groups["speedup"].std(ddof=1).fillna(0.0).to_numpy()
    table["seeds"] = groups.size().to_numpy()
    return table


def plot_deltagrad(table, ax) -> None:
    """The panel's seconds per deletion ratio: retraining from scratch beside DeltaGrad."""
    from raypkg.plots import hbar

    labelled = table.assign(label=[f"delete {100 * r:g}%: acc {a:.3f} retrained / {b:.3f} DeltaGrad"
                                   for r, a, b in zip(table["ratio"], table["acc_baseline"], table["acc_deltagrad"])])
    hbar(labelled, ax, "label", ["time_baseline", "time_deltagrad"], "seconds")
