"""`effray bench data`: ImageFolder data held in memory vs streamed from disk, as the set grows.

Generates ImageFolder trees of JPEG digits (``raypkg.data.digit_tree``; the smaller trees
hard-link into the largest) and trains on each size both ways, each case in a fresh
process, a driver of the one Ray instance the bench starts. Per case: the driver's and
each Ray Train worker's peak RSS, images/s in the steady state (``raypkg.timing.steady_epoch_s``:
the median epoch after the first, the warm-up),
load seconds, test accuracy and the last training loss (the same for both paths).
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

import click

from raypkg.bench.harness import SAVE_HELP, WANDB_HELP, BenchRunner
from raypkg.cli_options import check_bench_numbers, list_option, name_list, number_list, wandb_option
from raypkg.data.digit_tree import VAL_PER_CLASS, write_trees
from raypkg.distributed.cluster import connect_ray, joining_env
from raypkg.engine.callbacks import Callback
from raypkg.errors import UsageError
from raypkg.timing import steady_epoch_s, timed

MODES = ("memory", "stream")


class WorkerPeakRSS(Callback):
    """Adds every rank's peak RSS so far (ru_maxrss, MB) to the epoch's row, as
    ``worker_peak_mb`` (the largest) and ``rank<r>_peak_mb``."""

    def on_epoch_end(self, ctx, row: dict) -> None:
        import torch

        peaks = torch.zeros(ctx.world_size, dtype=torch.float64, device=ctx.device)
        peaks[ctx.rank] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
        peaks = ctx.all_reduce(peaks).cpu().tolist()
        row["worker_peak_mb"] = max(peaks)
        row.update({f"rank{r}_peak_mb": p for r, p in enumerate(peaks)})


def cases_per_size(modes: list[str], blocks: list[int]) -> list[tuple[str, str, int]]:
    """(label, data path, decode block) per case of one size: memory once, stream once per
    block (labelled ``stream-BLOCK`` when several blocks are compared)."""
    cases = []
    for mode in modes:
        cases += [("memory", "memory", blocks[0])] if mode == "memory" else \
            [("stream" if len(blocks) == 1 else f"stream-{b}", "stream", b) for b in blocks]
    return cases


def set_environment(values: dict[str, str]) -> None:
    """A spawned case's environment before it imports Ray (``joining_env``)."""
    import os

    os.environ.update(values)


def run_case(tree: Path, mode: str, cfg, storage: Path, address: str) -> dict:
    """Load ``tree`` with ``mode`` and train on it, in this (fresh) process joined to the Ray
    at ``address``; the case's row."""
    import dataclasses

    from raypkg.data.augment import use_augmentation
    from raypkg.data.registry import load_dataset
    from raypkg.engine.trainer import train

    connect_ray(address=address)
    cfg = dataclasses.replace(cfg, data_dir=str(tree), data_path=mode)
    data, load_s = timed(load_dataset, "imagefolder", data_dir=str(tree), image_size=cfg.image_size, data_path=mode)
    result = train(cfg, data, callbacks=[WorkerPeakRSS()] if cfg.workers else [],
                   augment=use_augmentation(cfg, data), storage=storage)
    last = result.history[-1]
    epoch_s = steady_epoch_s([r["epoch_s"] for r in result.history])
    row = {"images": len(data.train), "mode": mode, "load_s": load_s,
           "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "worker_peak_mb": last.get("worker_peak_mb", float("nan")),
           "img_per_s": len(data.train) / epoch_s, "epoch_s": epoch_s, "test_acc": last["test_acc"],
           "train_loss": last["train_loss"]}  # both paths: the same inputs and batches, the same loss
    row.update({k: v for k, v in last.items() if k.startswith("rank")})
    return row


def plot_memory_and_speed(frame, ax) -> None:
    """Peak memory per worker (driver when in-process) vs size, solid; images/s, dashed."""
    memory_column = "driver_peak_mb" if frame["worker_peak_mb"].isna().all() else "worker_peak_mb"
    speed = ax.twinx()
    for mode, part in frame.groupby("mode"):
        ax.plot(part["images"], part[memory_column], marker="o", label=f"{mode}: peak MB")
        speed.plot(part["images"], part["img_per_s"], marker="x", linestyle="--", label=f"{mode}: images/s")
    ax.set_xlabel("training images")
    ax.set_ylabel(memory_column.replace("_", " "))
    ax.set_ylim(bottom=0)
    speed.set_ylabel("images / s (steady state)")
    speed.set_ylim(bottom=0)  # from 0, so the gap between the two paths reads true
    lines = ax.get_legend_handles_labels()
    more = speed.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="best")


@click.command()
@list_option("--sizes", default="5000,10000,20000,40000", show_default=True,
              help="Training-set sizes (images), comma-separated.")
@list_option("--modes", default="memory,stream", show_default=True, help="Data paths to compare.")
@click.option("--image-size", default=64, show_default=True, help="Side of the square images.")
@click.option("--model", default="lenet5", show_default=True)
@click.option("--epochs", default=2, show_default=True,
              help="Epochs per case, >= 2 (the first is the warm-up; the median of the others counts).")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Ray Train workers (0: in-process).")
@list_option("--decode-blocks", default="256", show_default=True,
              help="Images per decode task when streaming (--decode-block), comma-separated to compare several.")
@click.option("--seed", default=0, show_default=True)
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the image trees (default: a temporary directory, removed after).")
@click.option("--save", help=SAVE_HELP)
@wandb_option(WANDB_HELP)
def data_bench(sizes, modes, image_size, model, epochs, batch_size, workers, decode_blocks, seed, work_dir, save,
               wandb):
    """In-memory vs streamed (Ray Data) ImageFolder data at growing sizes: peak memory of
    the driver and of each Ray Train worker, training images per second.

    \b
    Example:
      effray bench data                                   # 5k, 10k, 20k, 40k images of 64x64
      effray bench data --sizes 2000,8000 --workers 2 --epochs 3
      effray bench data --sizes 20000 --workers 2 --decode-blocks 256,1024,4096
    """
    import dataclasses
    import multiprocessing
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    from raypkg.engine.config import TrainConfig
    from raypkg.paths import check_writable_dir

    size_list = sorted(number_list(sizes, "--sizes", "image counts (one per class at least)", int, 10, "10,20"))
    mode_list = name_list(modes, "--modes", MODES, "mode")
    blocks = number_list(decode_blocks, "--decode-blocks", "images per decode task", int, 1, "1,2")
    if epochs < 2:
        raise UsageError(f"--epochs must be >= 2 (the first epoch is the warm-up), got {epochs}")
    check_bench_numbers(image_size=image_size, batch_size=batch_size, workers=workers)
    cfg = TrainConfig(dataset="imagefolder", model=model, epochs=epochs, batch_size=batch_size, workers=workers,
                      lr=[0.05], schedule="constant", image_size=image_size, seed=seed, progress=False,
                      **({"max_failures": 0} if workers else {}),  # on Ray Train: timed, never restarted
                      precision="fp32", memory_format="contiguous",  # the data path is measured
                      ).resolved().validate()
    runner = BenchRunner("data", save, wandb=wandb)
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="effray-bench-data-"))
    if work_dir:
        if root.is_dir() and any(root.iterdir()):
            raise UsageError(f"--work-dir {root} is not empty: give a new or empty directory")
        check_writable_dir(root, "--work-dir")
    try:
        trees, seconds = timed(write_trees, root, size_list, image_size, seed)
        click.echo(f"wrote {max(size_list):,} + {10 * VAL_PER_CLASS:,} images of {image_size}x{image_size} "
                   f"in {seconds:.1f}s under {root}")
        rows, address = [], connect_ray()  # every case joins it
        for size in size_list:
            for mode, data_path, block in cases_per_size(mode_list, blocks):
                click.echo(f"[bench data] {size:,} images, {mode}: loading and training {epochs} epoch(s)")
                # a fresh spawned process per case, so its memory is its own (its Ray Train workers are
                # new processes whatever the instance; one instance saves a Ray start-up per case)
                with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=set_environment, initargs=(joining_env(),)) as pool:
                    r = pool.submit(run_case, trees[size], data_path, dataclasses.replace(cfg, decode_block=block),
                                    root / f"ray-{size}-{mode}", address).result()
                rows.append({**r, "mode": mode})
                click.echo(f"[bench data] {size:,} images, {mode}: {r['img_per_s']:.0f} img/s, driver "
                           f"{r['driver_peak_mb']:.0f} MB" + (f", worker {r['worker_peak_mb']:.0f} MB" * bool(workers)))
    finally:
        if not work_dir:
            shutil.rmtree(root, ignore_errors=True)
    table = pd.DataFrame(rows)
    click.echo(f"imagefolder {image_size}x{image_size}, {model}, batch {batch_size}, {epochs} epochs, "
               f"{'in-process' if not workers else f'{workers} Ray Train worker(s)'}, "
               f"decode blocks of {', '.join(map(str, blocks))} images")
    runner.finish(table, list(table.columns), {c: ".3f" for c in table.columns}, plot=plot_memory_and_speed,
                  title="memory vs streamed data as the set grows")
    summarise(table)


def summarise(table) -> None:
    """The two targets: streaming throughput within 1.5x of memory; memory flat in size."""
    streams = [m for m in dict.fromkeys(table["mode"]) if m.startswith("stream")]
    if "memory" in set(table["mode"]) and streams:
        by = table.pivot(index="images", columns="mode", values="img_per_s")
        for images, row in by.iterrows():
            for stream in streams:
                click.echo(f"{images:>8,} images: memory / {stream} images/s = {row['memory'] / row[stream]:.2f}x")
    column = "driver_peak_mb" if table["worker_peak_mb"].isna().all() else "worker_peak_mb"
    for mode, part in table.groupby("mode"):
        if len(part) < 2:
            continue  # one size: no growth to report
        part = part.sort_values("images")
        first, last = part.iloc[0], part.iloc[-1]
        click.echo(f"{mode}: {column} {first[column]:.0f} MB at {first['images']:,} -> {last[column]:.0f} MB at "
                   f"{last['images']:,} images ({last['images'] / first['images']:.0f}x the data, "
                   f"{last[column] / first[column]:.2f}x the memory)")
