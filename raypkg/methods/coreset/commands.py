"""`effray select` and `effray run coreset`: the coreset method's commands."""

from __future__ import annotations

import functools

import click

from raypkg.selection.command_line import echo_summary, resolve, selection_options


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
