"""`effray run infobatch`: InfoBatch's unbiased dynamic pruning on the engine's training."""

from __future__ import annotations

import click

from raypkg.cli_options import address_option, config_file_option, config_options, print_summary


def infobatch_options(func):
    from raypkg.infobatch.config import InfoBatchConfig

    return address_option(config_file_option(config_options(InfoBatchConfig)(func)))


@click.command("infobatch")
@infobatch_options
def run_infobatch_command(config_file, **flags):
    """InfoBatch: each epoch prunes r of the well-learned examples at random and reweighs the rest.

    Well-learned: last seen loss below the mean. The kept ones weigh 1/(1-r), so an epoch's
    expected gradient is full data's; after --delta of the epochs all data trains. With no
    flags: r = 0.5, delta = 0.875 (the paper's), on the embedded digits data. summary.json
    has steps, full_steps and steps_saved; metrics.parquet the examples kept per epoch.

    \b
    Examples:
      effray run infobatch
      effray run infobatch --dataset digits-aug --model resnet20 --epochs 10 --lr 0.1
      effray run infobatch --prune-ratio 0.3 --delta 0.9 --workers 2
    """
    from raypkg.api import run
    from raypkg.config import resolve_config
    from raypkg.infobatch.config import InfoBatchConfig

    summary = run("infobatch", resolve_config(InfoBatchConfig, config_file, **flags)).summary
    click.echo(f"steps {summary['steps']} of {summary['full_steps']} (saved {summary['steps_saved']:.1%})")
    print_summary(summary)
