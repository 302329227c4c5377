"""`effray run crest`: CREST (or its random / full-data baseline) at the budget of --train-frac."""

from __future__ import annotations

import click

from raypkg.cli_options import address_option, config_file_option, config_options, print_summary


def crest_options(func):
    from raypkg.algorithms import method_config

    return address_option(config_file_option(config_options(method_config("crest"))(func)))


@click.command("crest")
@crest_options
def run_crest_command(config_file, **flags):
    """CREST: mini-batch coresets per quadratic region, at f = --train-frac of full training's steps.

    Every epoch takes f*N/B steps (rounded down with --drop-last). --selection-method
    random trains on a fresh uniform subset of f*N each epoch (same steps); none trains on everything (full budget).
    summary.json has the phases train / selection / check / eval, the regions, checks,
    re-selections, steps, dropped examples and test_acc; checks.parquet one row per
    validity check (true and predicted loss, approximation error, threshold).

    \b
    Examples:
      effray run crest --dataset digits-aug --model mlp --train-frac 0.1 --epochs 10
      effray run crest --dataset digits --random-subset-size 0.1 --batch-size 32 --actors 2
      effray run crest --selection-method random --train-frac 0.1 --dataset digits-aug
      effray run crest --dataset digits-aug --workers 2 --drop-learned --drop-interval 2
    """
    from raypkg.algorithms import method_config
    from raypkg.api import run
    from raypkg.config import resolve_config

    summary = run("crest", resolve_config(method_config("crest"), config_file, **flags)).summary
    click.echo(f"steps {summary['steps']}  regions {summary['regions']}  checks {summary['checks']}  "
               f"re-selections {summary['reselections']}  dropped {summary['dropped']}")
    print_summary(summary)
