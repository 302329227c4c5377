"""`effray select` and `effray run coreset`: the selection library's command line."""

from __future__ import annotations

import functools

import click

from raypkg.cli_options import config_file_option, config_options, echo_run_directory, parse_options


def selection_options(func, select: bool = False):
    """``--config FILE``, the CoresetConfig flags (TrainConfig's included; ``select``: those of
    SelectConfig, without the subset training's) and ``--option``."""
    from raypkg.selection.config import SUBSET_TRAINING, CoresetConfig, SelectConfig

    func = click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
                        help="Method option, repeatable, e.g. --option eta=0.05 (glister), --option lam=1 "
                             "(gradmatch).")(func)
    options = config_options(SelectConfig, skip=SUBSET_TRAINING) if select else config_options(CoresetConfig)
    return config_file_option(options(func))


def resolve(config_file: str | None, flags: dict, cls: type | None = None):
    """The config of a coreset command (``cls``: CoresetConfig or a subclass such as LiptConfig)."""
    from raypkg.config import resolve_config
    from raypkg.selection.config import CoresetConfig

    flags = dict(flags)
    flags["options"] = parse_options(flags.pop("option_pairs", ()))
    return resolve_config(cls or CoresetConfig, config_file, **flags)


def echo_summary(summary: dict) -> None:
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in summary.get("phases", {}).items())
    acc = summary.get("test_acc")
    acc_text = f"test_acc {acc:.4f}  " if acc is not None else ""
    hits = summary.get("cached", {})
    cache_text = ""
    if hits.get("pretrain_hits") or hits.get("selection_hit"):
        cache_text = (f"  [cache: {hits.get('pretrain_hits', 0)} pre-trained model(s)"
                      f"{', selection' if hits.get('selection_hit') else ''}]")
    click.echo(f"{summary['method']} {summary['dataset']}/{summary['model']}: "
               f"{summary['subset_size']} of {summary['train_size']} examples  {acc_text}"
               f"wall {summary['wall_s']:.1f}s  ({phases}){cache_text}")
    echo_run_directory(summary)


@click.command("select")
@functools.partial(selection_options, select=True)
def select_command(config_file, **flags):
    """Warm up a model on the full data, select a weighted coreset, save selection.parquet.

    The run directory gets selection.parquet (index, weight, score, label, rank) and, for
    GraNd, scores.parquet (every example's score); summary.json has the phase times.

    \b
    Examples:
      effray select --method grand --fraction 0.1 --dataset digits --model mlp --pretrain-epochs 5 --repeats 3
      effray select --method craig --fraction 0.3 --dataset digits-aug --actors 2
      effray select --method glister --budget 200 --option eta=0.05 --no-cache
    """
    from raypkg.api import run
    from raypkg.selection.config import SelectConfig

    echo_summary(run("select", resolve(config_file, flags, SelectConfig)).summary)


@click.command("coreset")
@selection_options
def run_coreset_command(config_file, **flags):
    """DeepCore-style coreset training: full-data warm-up, selection, weighted-subset training.

    Phases in summary.json: pretrain (R warm-ups for GraNd), selection, train, eval (seconds),
    and test_acc. The same seed gives the same indices; warm-ups and selections are cached
    under OUT/.cache (--no-cache recomputes them). With --reselect-every R the subset is
    selected again every R epochs with the model being trained (CORDS's adaptive selection,
    after --warm-start's full-data epochs); rounds.parquet holds every round's subset.

    \b
    Examples:
      effray run coreset --selection gradmatch --fraction 0.1 --dataset digits --epochs 30
      effray run coreset --selection grand --fraction 0.3 --repeats 10 --pretrain-epochs 5
      effray run coreset --selection craig --fraction 0.1 --dataset digits-aug --actors 2
      effray run coreset --selection gradmatch --fraction 0.1 --epochs 20 --reselect-every 5 --warm-start 0.5
      effray run coreset --selection craig --per-batch --fraction 0.3 --reselect-every 5
    """
    from raypkg.api import run

    echo_summary(run("coreset", resolve(config_file, flags)).summary)
