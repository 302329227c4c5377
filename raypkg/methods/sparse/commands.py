"""`effray run sparse`: the AGENT/ITOP README's knobs on the engine's training."""

from __future__ import annotations

import click

from raypkg.cli_options import address_option, config_file_option, config_options, echo_run_directory


def sparse_options(func):
    """``--config FILE``, the SparseConfig flags (TrainConfig's included) and ``--address``."""
    from raypkg.methods.sparse.config import SparseConfig

    return address_option(config_file_option(config_options(SparseConfig)(func)))


@click.command("sparse")
@sparse_options
def run_sparse_command(config_file, **flags):
    """RigL-ITOP (default), SET-ITOP or dense training, optionally with adaptive gradient correction.

    With no flags: RigL-ITOP, ERK masks at density 0.05, on the embedded digits data.

    metrics.parquet has per epoch the real density, the ITOP exploration rate R_s and the
    AGC coefficient agc_c; mask_updates.parquet one row per mask update; summary.json the
    final density, R_s and test_acc.

    \b
    Examples:
      effray run sparse                                                   # RigL-ITOP, density 0.05
      effray run sparse --dataset digits-aug --model lenet5 --epochs 20 --dense   # the dense baseline
      effray run sparse --density 0.05 --growth random --update-frequency 100     # SET-ITOP
      effray run sparse --density 0.01 --agc --agc-gamma 0.1                     # A-RigL-ITOP at 99% sparsity
      effray run sparse --workers 2 --multiplier 2
    """
    from raypkg.api import run
    from raypkg.config import resolve_config
    from raypkg.methods.sparse.config import SparseConfig

    summary = run("sparse", resolve_config(SparseConfig, config_file, **flags)).summary
    extras = "  ".join(f"{k} {summary[k]:.4f}" for k in ("density", "R_s", "agc_c")
                       if isinstance(summary.get(k), float))
    name = "+".join([summary["method_variant"], *summary.get("stack", ())])  # RigL-ITOP+infobatch
    click.echo(f"{name} {summary['dataset']}/{summary['model']}: "
               f"test_acc {summary['test_acc']:.4f}  {extras}  wall {summary['wall_s']:.1f}s")
    echo_run_directory(summary)
