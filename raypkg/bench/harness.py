"""What every `effray bench` shares (timm's BenchmarkRunner): ``BenchRunner`` owns the
threads, the untimed warm-up, the timed runs, the header and progress lines, the printed
table and its files (Parquet, PNG) and W&B run; ``compare`` adds the speed-up and
accuracy-delta columns against a warmed reference row. Also the flags the benches share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import click

from raypkg.cli_options import print_table, wandb_option
from raypkg.errors import UsageError
from raypkg.paths import check_writable_dir
from raypkg.tracking.wandb_logger import use_wandb_mode

SAVE_HELP = "Write the table as STEM.parquet and its plot as STEM.png. Default: runs/bench/NAME-TIME."
WANDB_HELP = "W&B mode of the bench's runs: each table with its plots, under the --save directory's wandb/."
THREADS_HELP = "torch threads of this process, >= 1 (on 2-vCPU VMs 2 can be far slower)."


def check_threads(ctx, param, value: int | None) -> int | None:
    """``--threads``: at least 1 (absent: the bench's default); more than the CPUs this
    process may use is allowed, with a warning line (they would share those CPUs)."""
    import os

    if value is None:
        return None
    if value < 1:
        raise click.BadParameter(f"must be >= 1 (leave it out for the default), got {value}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if value > cpus:
        click.echo(f"warning: --threads {value} is more than the {cpus} CPUs available; the threads will share them",
                   err=True)
    return value


def bench_options(threads: int | None = 1, save_help: str = SAVE_HELP, threads_help: str = THREADS_HELP):
    """A bench command's ``--threads`` (default ``threads``), ``--save`` and ``--wandb`` flags."""
    def add(func):
        func = wandb_option(WANDB_HELP)(click.option("--save", help=save_help)(func))
        return click.option("--threads", type=int, default=threads, show_default=threads is not None,
                            callback=check_threads, help=threads_help)(func)
    return add


def check_save(save: str | None) -> None:
    """``--save`` names a file stem or a directory (checked as ``--out`` is): not empty, not a
    device or other special file (its tables would be written beside it)."""
    if save is None:
        return
    if not save.strip():
        raise UsageError("--save is empty: give a file stem or a directory (or leave it out for the default)")
    path = Path(save)
    if path.exists() and not path.is_dir() and not path.is_file():
        raise UsageError(f"--save {save!r} is a device or special file; give a file stem or a directory")


@dataclass(frozen=True)
class Point:
    """One timed row: its progress line's ``label``, its recipe, its validated config, the row's
    ``labels`` and its warm-up ``key``."""

    label: str
    recipe: Any
    cfg: Any
    labels: dict
    key: Any = None


def same_training(p: Point, data) -> str:
    """What point ``p`` trains, with ``auto``'s precision and memory format resolved as its run
    will resolve them: two points with the same train the same, bit for bit, so the second
    takes the first one's run (full training at auto where auto picks fp32 and contiguous
    weights is full-fp32)."""
    import dataclasses

    from raypkg.engine.placement import decide_execution, place

    cfg = decide_execution(p.cfg, data, place(p.cfg))[0]
    return repr((p.recipe.name, p.key, dataclasses.asdict(cfg)))


class PointRunner:
    """Timed points: its torch threads (0 or None: torch's default), an untimed warm-up per
    recipe (and ``key``) before its first timed row, and a progress line per row."""

    def __init__(self, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.warmed: set = set()
        self.ran: dict = {}  # what each point trained (``same_training``) -> (its label, its summary)

    def warm(self, recipe, cfg, data, key=None, **shared) -> None:
        """Once per (recipe, ``key``), an untimed short run of ``recipe`` (one epoch, one of
        warm-up or shard pre-training, no cache): the process's one-time costs (imports, the
        allocator, each code path's first call) are charged to no row, the baseline's included."""
        import dataclasses

        from raypkg.recipe import MemorySink

        if (recipe.name, key) in self.warmed:
            return
        fields = {f.name for f in dataclasses.fields(cfg)}
        short = {k: 1 for k in ("epochs", "pretrain_epochs", "pre_epochs", "repeats")
                 if k in fields and getattr(cfg, k)}
        short.update({k: v for k, v in (("cache", False), ("lr_warmup_epochs", 0)) if k in fields})
        recipe.run(dataclasses.replace(cfg, **short), MemorySink, data=data, **shared)
        self.warmed.add((recipe.name, key))

    def run(self, recipe, cfg, data, key=None, **shared) -> dict:
        """``recipe`` on ``cfg`` in memory, warmed up first (``warm``); its summary."""
        from raypkg.recipe import MemorySink

        self.warm(recipe, cfg, data, key)
        return recipe.run(cfg, MemorySink, data=data, **shared)

    def rows(self, points: list[Point], data, phases: tuple, total: str, **shared) -> list[tuple[dict, dict]]:
        """Each point's timed row (``run``), in order, with a progress line; (row, summary) each.
        A point that trains as an earlier one does (``same_training``, this runner's earlier
        calls included) takes its run.
        A row: the point's ``labels``, each phase's seconds (``<phase>_s``; cached work charged
        its original seconds), their sum ``total`` and ``test_acc``."""
        done, ran = [], self.ran
        for i, p in enumerate(points):
            same = same_training(p, data)
            twin = ran.get(same)
            summary = self.run(p.recipe, p.cfg, data, p.key, **shared) if twin is None else twin[1]
            ran.setdefault(same, (p.label, summary))
            row = {**p.labels, **{f"{phase}_s": summary["cost_s"].get(phase, 0.0) for phase in phases}}
            row.update({total: sum(row[f"{phase}_s"] for phase in phases), "test_acc": summary["test_acc"]})
            done.append((row, summary))
            self.progress(p.label, row, total, f" ({i + 1}/{len(points)})" + (f", the run of {twin[0]}" if twin else ""))
        return done

    @staticmethod
    def progress(label: str, row: dict, seconds: str, more: str = "") -> None:
        click.echo(f"  {label}: test_acc {row['test_acc']:.4f}, {row[seconds]:.1f}s{more}", err=True)


class BenchRunner(PointRunner):
    """One benchmark run: a ``PointRunner`` with its files' stem (checked writable before any
    work), the header line, and the tables printed, saved and logged to W&B in mode
    ``wandb`` (online checked for a key before any work)."""

    def __init__(self, name: str, save: str | None, threads: int | None = None, wandb: str = "disabled",
                 overwrite: bool = False):
        """``overwrite``: the stem's tables may exist (a stored frontier's, rendered again)."""
        from raypkg.tracking.provenance import provenance

        check_save(save)
        stem = Path(save) if save else Path("runs") / "bench" / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
        stem = stem.with_suffix("") if stem.suffix in (".parquet", ".png") else stem
        stem = stem / f"{name}-{datetime.now():%Y%m%d-%H%M%S}" if stem.is_dir() else stem
        file = next((p for p in (stem.parent, *stem.parent.parents) if p.exists() and not p.is_dir()), None)
        if save and file is not None:
            raise UsageError(f"--save {save!r}: {str(file)!r} is a file, not a directory")
        if save and not stem.parent.is_dir():
            raise UsageError(f"--save {save!r}: directory {str(stem.parent)!r} does not exist")
        check_writable_dir(stem.parent, "--save", shown=save)
        taken = [str(p) for p in (stem.with_name(stem.name + ".parquet"), stem.with_name(stem.name + ".png"))
                 if p.exists()]
        if taken and not overwrite:  # as a run refuses an existing --name: an earlier bench's files are never overwritten
            raise UsageError(f"--save {save!r}: {taken[0]!r} exists (an earlier bench's table); give a new stem "
                             "or a directory")
        super().__init__(threads)
        self.name, self.stem, self.settings = name, stem, {}
        self.group = f"bench-{name}"  # the W&B group of its runs
        self.wandb = use_wandb_mode(wandb) if wandb != "disabled" else wandb
        self.source = provenance(self.threads)  # the code and machine as the run starts (its tables say so)

    def header(self, what: str, data, **settings) -> None:
        """The first line: what runs on which data, with which settings (also the W&B runs' config)."""
        self.settings.update(what=what, train=len(data.train), test=len(data.test), **settings)
        text = {k: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in settings.items()}
        click.echo(f"# {self.name} {what} ({len(data.train)} train / {len(data.test)} test): "
                   + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in text.items())
                   + f"; torch threads {self.threads}")

    def finish(self, frame, columns: list[str], formats: dict | None = None, printed=None, suffix: str = "",
               plot: Callable | None = None, title: str | None = None, panels: int | None = None,
               extra: dict | None = None, images: dict | None = None) -> list[Path]:
        """Print the ``columns`` of ``printed`` (default ``frame``); write ``frame`` as
        STEM+``suffix``.parquet, with ``plot`` its PNG beside it (``plot(frame, ax)``, or
        ``plot(frame, axes)`` given a number of ``panels`` side by side), and each table of
        ``extra`` (its suffix -> the table) as STEM+``suffix``+its suffix.parquet; print where.
        Then one W&B run named like the files: the tables, the plot and the further PNGs of
        ``images`` (name -> path). The files written, ``images``' included."""
        from raypkg.plots import figure, save_png
        from raypkg.tracking.provenance import executions
        from raypkg.tracking.run import write_parquet

        print_table((frame if printed is None else printed).to_dict("records"), columns, formats)
        stem = self.stem.with_name(self.stem.name + suffix)
        # the source as the run started, and what it trained at (a merge of stored rows: what they trained at)
        source = {**self.source, "executions": executions() or self.source.get("executions", "")}
        written = [write_parquet(stem.with_name(stem.name + ".parquet"), frame, source)]
        pngs = dict(images or {})
        if plot is not None:
            fig, axes = figure(ncols=panels or 1, width=7.0 if panels is None else 6.0, height=4.2)
            plot(frame, axes[0] if panels is None else axes)
            if title:
                axes[0].set_title(title)
            pngs = {"plot": save_png(fig, stem.with_name(stem.name + ".png")), **pngs}
        for more, table in (extra or {}).items():
            written.append(write_parquet(stem.with_name(stem.name + more + ".parquet"), table, source))
        written[1:1] = pngs.values()
        click.echo("saved: " + ", ".join(str(p) for p in written))
        self.log_wandb(stem.name, {"table": frame, **{k.lstrip("-"): t for k, t in (extra or {}).items()}}, pngs)
        return written

    def log_wandb(self, run_name: str, tables: dict, images: dict) -> None:
        """Tables and PNGs (name -> a DataFrame, a path) as one W&B run ``run_name`` in
        STEM's directory, in the runner's ``group`` (bench-NAME), with the header's settings as
        its config."""
        from raypkg.tracking.run import to_plain
        from raypkg.tracking.wandb_logger import WandbLogger

        if self.wandb == "disabled":
            return
        logger = WandbLogger(self.stem.parent, name=run_name, group=self.group, mode=self.wandb,
                             config=to_plain({"threads": self.threads, **self.settings}))
        try:
            for key, table in tables.items():
                logger.log_table(f"{self.name}/{key}", table)
            logger.log_images({f"{self.name}/{key}": path for key, path in images.items()})
        finally:
            logger.finish()


def compare(frame, reference, keys: list[str], speedup: str | None = None, delta: str | None = None,
            seconds: str = "e2e_s", acc: str = "test_acc", points: bool = True, rows=None):
    """``frame`` with each row against its reference, the row of mask ``reference`` with the
    same ``keys``: ``speedup`` = the reference's ``seconds`` / the row's, ``delta`` = the
    row's ``acc`` - the reference's (x100 with ``points``); NaN without one or outside ``rows``."""
    import numpy as np

    frame = frame.reset_index(drop=True)
    refs = frame.loc[np.asarray(reference, bool), [*keys, *([seconds] if speedup else []), *([acc] if delta else [])]]
    matched = frame[keys].merge(refs, on=keys, how="left") if keys else refs.iloc[[0] * len(frame)]
    keep = np.ones(len(frame), bool) if rows is None else np.asarray(rows, bool)
    if speedup:
        frame[speedup] = np.where(keep, matched[seconds].to_numpy() / frame[seconds].to_numpy(), np.nan)
    if delta:
        frame[delta] = np.where(keep, (100 if points else 1) * (frame[acc].to_numpy() - matched[acc].to_numpy()),
                                np.nan)
    return frame


def check_points(points: list[Point], data) -> None:
    """Each point's config against the loaded data (its recipe's ``check``), before any row runs."""
    for p in points:
        if p.recipe.check:
            p.recipe.check(p.cfg, data)


def selection_agreement(ours: dict, reference: dict) -> dict[str, float]:
    """How one run's selection agrees with a reference run's, from their tables (LiPT against
    DeepCore, a proxy against the model itself): the Spearman correlation of the examples'
    scores (NaN unless both have scores.parquet) and the share of the picks (selection.parquet)
    both made."""
    import pandas as pd

    spearman = float("nan")
    if "scores.parquet" in ours and "scores.parquet" in reference:
        spearman = float(pd.Series(ours["scores.parquet"]["score"]).corr(
            pd.Series(reference["scores.parquet"]["score"]), method="spearman"))
    picks = [set(pd.Series(t["selection.parquet"]["index"]).tolist()) for t in (ours, reference)]
    return {"spearman": spearman, "overlap": len(picks[0] & picks[1]) / max(len(picks[0]), 1)}
