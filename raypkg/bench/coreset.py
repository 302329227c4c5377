"""`effray bench coreset`: the coreset stages for every selector and weighting, side by side.

One process, one dataset, one seed: full-data training (the accuracy reference), then
for each fraction and each method the three stages with their seconds: pretrain
(full-data training for --pretrain-epochs; GraNd pays --repeats of them, uniform none),
selection, and training on the subset for the same --epochs with the method's weighting
(``craig:weighting=none`` overrides it). The pre-trained models are trained once and
shared by the methods (each method is charged the ones it uses). ``vs uniform`` is the test-accuracy difference to uniform at the same
fraction; ``speed-up`` is full-data training time / the method's total time.
"""

from __future__ import annotations

import dataclasses
import time

import click
import torch

from raypkg.bench.output import SAVE_HELP
from raypkg.bench.selection import print_table

DEFAULT_METHODS = ("uniform,grand,glister,gradmatch,gradmatch:weighting=loss,gradmatch:weighting=none,"
                   "craig,craig:weighting=loss,craig:weighting=none")


def parse_method(spec: str) -> tuple[str, dict]:
    """``"craig:weighting=none"`` -> ("craig", {"weighting": "none"}): a method with options."""
    import yaml

    from raypkg.errors import UsageError

    name, _, rest = spec.partition(":")
    options = {}
    for pair in filter(None, rest.split(";")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"method options take KEY=VALUE, got {pair!r} in {spec!r}")
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), options


def _seconds(device: torch.device, t0: float) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@click.command("coreset")
@click.option("--dataset", default="digits-aug", show_default=True)
@click.option("--model", default="mlp", show_default=True)
@click.option("--train-size", type=int, default=None, help="digits-aug/synthetic size (default: the dataset's).")
@click.option("--test-size", type=int, default=None)
@click.option("--fractions", default="0.1,0.3", show_default=True, help="Comma-separated fractions.")
@click.option("--methods", default=DEFAULT_METHODS, show_default=True,
              help="Comma-separated selection methods, each optionally with config fields (weighting, weight_cap) "
                   "or selector options: NAME:KEY=VALUE;KEY=VALUE.")
@click.option("--epochs", type=int, default=10, show_default=True, help="Training epochs (full data and every subset).")
@click.option("--pretrain-epochs", type=int, default=2, show_default=True, help="Full-data training epochs before selection.")
@click.option("--repeats", type=int, default=3, show_default=True, help="GraNd pre-training repeats (DeepCore: 10).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--actors", type=int, default=0, show_default=True, help="Shard actors for selection (0: in-process).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch threads of this process (0: torch's default; on 2-vCPU VMs 2 can be far slower).")
@click.option("--save", help=SAVE_HELP)
def coreset(dataset, model, train_size, test_size, fractions, methods, epochs, pretrain_epochs, repeats,
            batch_size, lr, actors, seed, save, threads):
    """Full data vs uniform, GraNd, Glister, GradMatch, CRAIG at each fraction: accuracy and phase times.

    \b
    Examples:
      effray bench coreset                                  # digits-aug, fractions 0.1 and 0.3
      effray bench coreset --train-size 2000 --epochs 2 --pretrain-epochs 1 --repeats 2
    """
    import pandas as pd

    import tempfile

    from raypkg.bench.output import bench_stem, save_bench
    from raypkg.engine.loop import evaluate
    from raypkg.engine.trainer import train
    from raypkg.errors import UsageError
    from raypkg.selection.cache import SelectionCache
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.pipeline import prepare, pretrain, select_stage, train_stage

    if threads > 0:
        torch.set_num_threads(threads)
    specs = [m.strip() for m in methods.split(",") if m.strip()]
    stem = bench_stem(save, "coreset")
    try:
        fracs = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        raise UsageError(f"--fractions takes comma-separated numbers, got {fractions!r}") from None
    base = CoresetConfig(dataset=dataset, model=model, train_size=train_size, test_size=test_size, epochs=epochs,
                         pretrain_epochs=pretrain_epochs, batch_size=batch_size, lr=[lr], seed=seed, actors=actors,
                         progress=False, wandb="disabled", cache=False)
    configs = {(spec, f): method_config(base, spec, f, repeats) for spec in specs for f in fracs}
    data, device, augment = prepare(base)
    click.echo(f"# coreset stages on {dataset} ({len(data.train)} train / {len(data.test)} test), {model}, "
               f"torch threads {torch.get_num_threads()}, {epochs} epochs, pretrain {pretrain_epochs} epochs, "
               f"GraNd repeats {repeats}, device {device}")

    t0 = time.perf_counter()
    full = train(base, data, augment=augment)
    full_s = _seconds(device, t0)
    rows = [{"fraction": 1.0, "method": "full data", "weighting": "-", "pretrain_s": 0.0, "selection_s": 0.0,
             "train_s": full_s, "total_s": full_s, "test_acc": evaluate(full.model, data.test.to(device))["acc"],
             "vs uniform": float("nan"), "speed-up": 1.0}]
    click.echo(f"  full data: test_acc {rows[0]['test_acc']:.4f}, {full_s:.1f}s", err=True)
    # Pre-trained models are computed once and shared through a scratch cache; each method
    # is charged the seconds of the ones it uses (Pretrained.seconds counts cache hits too).
    with tempfile.TemporaryDirectory() as scratch:
        cache = SelectionCache(scratch)
        for (spec, f), cfg in configs.items():
            pretrained = pretrain(cfg, data, device, augment, cache)
            result, selection_s, _ = select_stage(cfg, data, pretrained, device)
            t0 = time.perf_counter()
            trained = train_stage(cfg, data, result)
            train_s = _seconds(device, t0)
            total = pretrained.seconds + selection_s + train_s
            rows.append({"fraction": f, "method": spec, "weighting": cfg.weighting, "pretrain_s": pretrained.seconds,
                         "selection_s": selection_s, "train_s": train_s, "total_s": total,
                         "test_acc": evaluate(trained.model, data.test.to(device))["acc"],
                         "speed-up": full_s / total})
            click.echo(f"  {spec} @{f:g}: test_acc {rows[-1]['test_acc']:.4f}, {total:.1f}s "
                       f"({len(rows) - 1}/{len(configs)})", err=True)
    uniform = {r["fraction"]: r["test_acc"] for r in rows if r["method"] == "uniform"}
    for r in rows:
        r["vs uniform"] = r["test_acc"] - uniform[r["fraction"]] if r["fraction"] in uniform else float("nan")
    columns = ["fraction", "method", "weighting", "pretrain_s", "selection_s", "train_s", "total_s", "test_acc",
               "vs uniform", "speed-up"]
    print_table(rows, columns)
    save_bench(pd.DataFrame(rows), stem, plot=accuracy_vs_seconds,
               title=f"coreset stages on {dataset}: test accuracy vs end-to-end seconds")


def accuracy_vs_seconds(frame, ax) -> None:
    """One marker per (method, fraction); full data as the reference line."""
    full = frame[frame["method"] == "full data"]
    for (method, fraction), group in frame[frame["method"] != "full data"].groupby(["method", "fraction"]):
        ax.scatter(group["total_s"], group["test_acc"], marker="o" if fraction < 0.2 else "s", s=28,
                   label=f"{method} @{fraction:g}")
    if len(full):
        ax.axhline(float(full["test_acc"].iloc[0]), color="black", linestyle="--", linewidth=1, label="full data")
    ax.set_xlabel("end-to-end seconds (pretrain + selection + train)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=6, ncol=2)


def method_config(base, spec: str, fraction: float, repeats: int):
    """The config of one table row: ``NAME:KEY=VALUE;...`` where a KEY that is a config
    field (``weighting``, ``weight_cap``) sets it and any other KEY is a selector option."""
    from raypkg.engine.config import config_fields
    from raypkg.selection.registry import get_selector

    name, options = parse_method(spec)
    fields = {k: v for k, v in options.items() if k in config_fields(type(base))}
    selector_options = {k: v for k, v in options.items() if k not in fields}
    return dataclasses.replace(base, selection=name, fraction=fraction, options=selector_options,
                               repeats=repeats if get_selector(name).uses_repeats else None, **fields).validate()
