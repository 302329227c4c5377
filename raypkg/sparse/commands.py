"""`effray run sparse`: the AGENT/ITOP README's knobs on the engine's training."""

from __future__ import annotations

import click

from raypkg.cli_options import train_options
from raypkg.errors import UsageError
from raypkg.sparse.dst import DEATH_MODES, GROWTH_MODES, REDISTRIBUTION_MODES
from raypkg.sparse.masks import SPARSE_INITS

AGC_FLAGS = ("agc_gamma", "agc_alpha", "agc_sample")


def sparse_options(func):
    """Flags of SparseConfig; all default to None so that --config values stay."""
    options = [
        click.option("--sparse/--dense", default=None, help="Sparse training (dense when absent)."),
        click.option("--sparse-init", help=f"Initial layer densities: {', '.join(SPARSE_INITS)}. Default: ERK."),
        click.option("--density", type=float, help="Overall density of the masked weights, in (0, 1]. Default: 0.05."),
        click.option("--scale-init/--no-scale-init", default=None,
                     help="Scale each layer's initial weights by 1/sqrt(its density) (sparse-aware init). "
                          "Default: on."),
        click.option("--growth", help=f"Regrowth: {', '.join(GROWTH_MODES)} (random = SET, gradient = RigL). "
                                      "Default: random."),
        click.option("--death", help=f"Pruning: {', '.join(DEATH_MODES)}. Default: magnitude."),
        click.option("--redistribution", help=f"Regrowth budget between layers: {', '.join(REDISTRIBUTION_MODES)}. "
                                              "Default: none."),
        click.option("--death-rate", type=float, help="Initial pruning rate, cosine-decayed. Default: 0.5."),
        click.option("--update-frequency", type=int, help="Optimizer steps between mask updates. Default: 100."),
        click.option("--multiplier", type=int, help="Stretch epochs and the LR schedule m times. Default: 1."),
        click.option("--agc/--no-agc", default=None, help="Adaptive gradient correction (AGENT)."),
        click.option("--agc-gamma", type=float, help="AGC scale gamma of the balance coefficient. Default: 0.1."),
        click.option("--agc-alpha", type=float, help="AGC smoothing alpha of the balance coefficient. Default: 0.3."),
        click.option("--agc-sample", type=int,
                     help="AGC: examples sampled for the snapshot gradient. Default: the whole training set."),
    ]
    for opt in reversed(options):
        func = opt(func)
    return train_options(func)


def resolve(config_file: str | None, flags: dict):
    from raypkg.engine.config import resolve_config
    from raypkg.sparse.config import SparseConfig

    given = [name for name in AGC_FLAGS if flags.get(name) is not None]
    cfg = resolve_config(SparseConfig, config_file, **flags)
    if given and not cfg.agc:
        raise UsageError(f"--{given[0].replace('_', '-')} needs --agc")
    return cfg


@click.command("sparse")
@sparse_options
def run_sparse_command(config_file, **flags):
    """Dense, SET-ITOP or RigL-ITOP training, optionally with adaptive gradient correction.

    metrics.parquet has per epoch the real density, the ITOP exploration rate R_s and the
    AGC coefficient agc_c; mask_updates.parquet one row per mask update; summary.json the
    final density, R_s and test_acc.

    \b
    Examples:
      effray run sparse --dataset digits-aug --model lenet5 --epochs 20            # dense
      effray run sparse --sparse --density 0.05 --growth random --update-frequency 100   # SET-ITOP
      effray run sparse --sparse --density 0.05 --growth gradient --agc --agc-gamma 0.1  # A-RigL-ITOP
      effray run sparse --sparse --workers 2 --multiplier 2
    """
    from raypkg.sparse.train import run_sparse

    summary = run_sparse(resolve(config_file, flags))
    extras = "  ".join(f"{k} {summary[k]:.4f}" for k in ("density", "R_s", "agc_c")
                       if isinstance(summary.get(k), float))
    click.echo(f"{summary['method_variant']} {summary['dataset']}/{summary['model']}: "
               f"test_acc {summary['test_acc']:.4f}  {extras}  wall {summary['wall_s']:.1f}s")
    click.echo(f"run directory: {summary['run_dir']}")
