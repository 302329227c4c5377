"""`effray bench precision`: fp32 against every precision and memory format, per model.

Per setup (DATASET:MODEL), in one process and one run:

1. the step that ``--precision auto`` times (forward + backward on one training batch) for
   every candidate: fp32 and bf16 autocast, each contiguous and (convolutional models)
   channels_last, measured as auto measures (``raypkg.engine.execution.measure``: warm-ups,
   interleaved rounds, at most ``--step-repeats``): auto's candidates on this machine
   together, then the rest (bf16 where the CPU lacks bf16 instructions, which shows why
   ``auto`` refuses it there) apart, so that their slow steps do not use up the candidates'
   time cap: the medians and their spread;
2. what auto picks from these same samples (``choose`` over auto's candidates on this
   machine), and what this machine's cache holds (what runs use; ``effray execution``);
3. full training (the ``train`` recipe) at fp32/contiguous and at the pick, for
   ``--seeds`` seeds: median epoch seconds and test accuracy (mean and spread).

Speed-ups are against fp32/contiguous measured in the same run.
"""

from __future__ import annotations

import dataclasses
import statistics

import click
import pandas as pd

from raypkg.bench.harness import BenchRunner, bench_options
from raypkg.cli_options import check_bench_numbers, check_seed_count, list_option, name_list
from raypkg.engine.config import TrainConfig
from raypkg.engine.execution import (
    ExecutionCache,
    cache_key,
    candidates,
    choose,
    cpu_flags,
    is_convolutional,
    label,
    measure,
    training_steps,
)
from raypkg.engine.loop import pick_device, seed_everything
from raypkg.errors import UsageError
from raypkg.methods.full.recipe import TRAIN
from raypkg.models.registry import build_model
from raypkg.plots import hbar
from raypkg.recipe import load_data
from raypkg.timing import iqr

# ResNet-18 at 3x32x32 (`--setups synthetic:resnet18 --seeds 0`): 8 s an fp32 step, 107-166 s a bf16 one on
# an AVX2 CPU (10 min in all; docs/operations.md), so step times only
SETUPS = "digits-aug:mlp,digits-aug:lenet5,digits-aug:resnet20,synthetic:resnet20"
TIMED = [(p, m) for p in ("fp32", "bf16") for m in ("contiguous", "channels_last")]


def step_samples(cfg: TrainConfig, data, pairs: list, repeats: int) -> dict:
    """Each candidate's step seconds on a fresh ``cfg.model`` and the first training batch,
    measured as ``--precision auto`` measures them (at most ``repeats`` rounds)."""
    device = pick_device(cfg.use_gpu)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    batch = min(cfg.batch_size, len(data.train))
    x, y = data.train.x[:batch].to(device), data.train.y[:batch].to(device)
    with training_steps(model, x, y, pairs) as steps:
        return measure(steps, min_rounds=min(5, repeats), max_rounds=repeats).samples


def train_seeds(runner: BenchRunner, cfg: TrainConfig, data, seeds: int) -> dict:
    """The ``train`` recipe at ``cfg``'s execution for each seed: median epoch seconds
    (the first epoch left out: it pays one-time costs) and test accuracy, mean and spread."""
    epoch_s, accs = [], []
    for seed in range(seeds):
        summary = runner.run(TRAIN, dataclasses.replace(cfg, seed=cfg.seed + seed), data,
                             key=(cfg.model, cfg.precision, cfg.memory_format))
        times = [row["epoch_s"] for row in summary["rows"]]
        epoch_s.append(statistics.median(times[1:]))  # --epochs >= 2: the first is left out
        accs.append(summary["test_acc"])
    return {"epoch_s": statistics.mean(epoch_s), "test_acc": statistics.mean(accs),
            "acc_spread": max(accs) - min(accs)}


@click.command("precision")
@list_option("--setups", default=SETUPS, show_default=True,
              help="Comma-separated DATASET:MODEL pairs (synthetic is 3x32x32).")
@click.option("--train-size", default=5000, show_default=True, help="Training examples of digits-aug/synthetic.")
@click.option("--test-size", default=1000, show_default=True)
@click.option("--epochs", default=3, show_default=True, help="Epochs of each full training, >= 2 (the first is "
              "not timed).")
@click.option("--seeds", default=3, show_default=True, help="Seeds of each full training (0: step times only).")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--step-repeats", default=15, show_default=True, help="Timed steps per candidate (the median counts).")
@bench_options(threads=1)
def precision_bench(setups, train_size, test_size, epochs, seeds, batch_size, step_repeats, threads, save, wandb):
    """fp32 vs bf16 autocast vs channels_last: step ms, epoch seconds and accuracy per model,
    and what --precision auto picks on this machine.

    \b
    Examples:
      effray bench precision                          # 4 setups, 3 seeds, 1 thread
      effray bench precision --setups digits:mlp --seeds 1 --epochs 2   # a quick look
      effray bench precision --setups synthetic:resnet18 --seeds 0      # step times only
    """
    check_bench_numbers(train_size=train_size, test_size=test_size, epochs=epochs, batch_size=batch_size,
                        step_repeats=step_repeats)
    if seeds < 0:
        raise UsageError(f"--seeds must be >= 0 (0: step times only), got {seeds}")
    if seeds and epochs < 2:  # train_seeds: the median of the epochs after the first
        raise UsageError(f"--epochs {epochs}: the training comparison times the epochs after the first (which pays "
                         "one-time costs); give --epochs 2 or more, or --seeds 0 for step times only")
    check_seed_count(seeds)
    bases = []
    for item in name_list(setups, "--setups"):
        dataset, sep, model = item.partition(":")
        if not sep:
            raise UsageError(f"--setups takes DATASET:MODEL pairs, got {item!r}")
        sized = dataset in ("digits-aug", "synthetic")
        bases.append(TrainConfig(dataset=dataset, model=model, epochs=epochs, batch_size=batch_size,
                                 train_size=train_size if sized else None, test_size=test_size if sized else None,
                                 nesterov=True, progress=False, wandb="disabled").resolved().validate())
    runner = BenchRunner("precision", save, threads, wandb)
    bf16_flags = sorted(f for f in cpu_flags() if "bf16" in f or f.startswith("amx")) or ["none"]
    loaded = [load_data(base) for base in bases]
    runner.header("fp32 vs bf16 autocast vs channels_last", loaded[0], setups=setups, epochs=epochs, seeds=seeds,
                  batch=batch_size, bf16_cpu_flags=",".join(bf16_flags))
    rows, cache = [], ExecutionCache()
    for base, data in zip(bases, loaded):
        setup = f"{base.dataset}:{base.model}"
        click.echo(f"{setup}: {len(data.train)} train, {len(data.test)} test ...", err=True)
        device = pick_device(base.use_gpu)
        model = build_model(base.model, data.input_shape, data.num_classes)
        conv = is_convolutional(model)
        timed = [pair for pair in TIMED if conv or pair[1] == "contiguous"]
        auto_pairs, _ = candidates("auto", "auto", device.type, conv)
        # auto's candidates are measured alone, as auto measures them: steps it never takes
        # (bf16 on an AVX2 CPU, ~10x slower) would use up its time cap within MIN_ROUNDS
        samples = step_samples(base, data, auto_pairs, step_repeats)
        rest = [pair for pair in timed if pair not in auto_pairs]
        samples.update(step_samples(base, data, rest, step_repeats) if rest else {})
        samples = {pair: samples[pair] for pair in timed}
        pick = choose({pair: samples[pair] for pair in auto_pairs}) if len(auto_pairs) > 1 else auto_pairs[0]
        batch = min(base.batch_size, len(data.train))
        cached = cache.get(cache_key(base.model, tuple(data.input_shape), batch, device, auto_pairs))
        medians = {pair: 1000 * statistics.median(s) for pair, s in samples.items()}
        row = {"setup": setup, "input": "x".join(map(str, data.input_shape)),
               **{f"{p}_{m}_ms": ms for (p, m), ms in medians.items()},
               **{f"{p}_{m}_iqr_ms": 1000 * iqr(s) for (p, m), s in samples.items()},
               "auto": label(pick), "cached": f"{cached['precision']}/{cached['memory_format']}" if cached else "-"}
        plain_ms = medians[("fp32", "contiguous")]
        row.update({f"x_{p}_{m}": plain_ms / ms for (p, m), ms in medians.items() if (p, m) != ("fp32", "contiguous")})
        if seeds:
            fp32 = dataclasses.replace(base, precision="fp32", memory_format="contiguous")
            chosen = dataclasses.replace(base, precision=pick[0], memory_format=pick[1])
            plain = train_seeds(runner, fp32, data, seeds)
            auto = plain if chosen == fp32 else train_seeds(runner, chosen, data, seeds)
            row.update({"fp32_epoch_s": plain["epoch_s"], "auto_epoch_s": auto["epoch_s"],
                        "x_epoch_auto": plain["epoch_s"] / auto["epoch_s"],
                        "fp32_acc": plain["test_acc"], "auto_acc": auto["test_acc"],
                        "fp32_acc_spread": plain["acc_spread"], "auto_acc_spread": auto["acc_spread"]})
        rows.append(row)
        medians_text = ", ".join(f"{label(k)} {v:.1f} ms" for k, v in medians.items())
        click.echo(f"  {setup}: auto picks {label(pick)} from these medians: {medians_text}", err=True)
        if cached and (cached["precision"], cached["memory_format"]) != pick:
            click.echo(f"  note: this machine's cache holds {row['cached']} for {setup}, which runs use; "
                       "`effray execution --clear` measures again", err=True)
    names = [f"{p}_{m}" for p, m in TIMED]
    order = ["setup", "input", *[f"{c}_ms" for c in names], *[f"{c}_iqr_ms" for c in names], "auto",
             "cached", *[f"x_{c}" for c in names[1:]],
             "fp32_epoch_s", "auto_epoch_s", "x_epoch_auto", "fp32_acc", "auto_acc", "fp32_acc_spread",
             "auto_acc_spread"]
    table = pd.DataFrame(rows)
    table = table[[c for c in order if c in table.columns]]
    speedups = [c for c in table.columns if c.startswith("x_")]
    runner.finish(table, list(table.columns), {c: ".3f" for c in table.columns if c not in ("setup", "input", "auto", "cached")},
                  title="speed-up over fp32/contiguous (one training step; epochs with auto)",
                  plot=lambda frame, ax: hbar(frame, ax, "setup", speedups, "x fp32/contiguous"))
