"""`effray run lipt`: LiPT's four stages in one run directory."""

from __future__ import annotations

import click

from raypkg.cli_options import address_option, config_file_option, config_options

# DeepCore's full-data warm-up is what LiPT replaces: its flags are not LiPT's.
HIDDEN = ("pretrain_epochs", "repeats")


def lipt_options(func):
    from raypkg.methods.lipt.config import LiptConfig

    func = click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
                        help="Selector option, repeatable, e.g. --option eta=0.05 (glister).")(func)
    return address_option(config_file_option(config_options(LiptConfig, skip=HIDDEN)(func)))


def resolve_lipt(config_file: str | None, flags: dict):
    from raypkg.methods.lipt.config import LiptConfig
    from raypkg.selection.command_line import resolve

    return resolve(config_file, flags, LiptConfig)


def echo_lipt(summary: dict) -> None:
    from raypkg.selection.command_line import echo_summary

    if "merged_test_acc" in summary:
        shards = ", ".join(f"{a:.3f}" for a in summary["shard_test_acc"])
        merge = f" ({summary['merge']})" if "merge" in summary else ""
        click.echo(f"shard models test_acc [{shards}]  merged{merge} {summary['merged_test_acc']:.4f}")
    echo_summary(summary)


@click.command("lipt")
@lipt_options
def run_lipt_command(config_file, **flags):
    """LiPT: K sparse shard models pre-trained in parallel, merged, selection, subset training.

    Stage 1 trains --shards models for --pre-epochs epochs, each on its own class-stratified
    shard with an ERK random mask at --density and RandAugment (N=1, M=5) on images, as one
    Ray Train job over --workers workers (0: in this process); stage 2 averages them by
    the --merge rule (shared-mask: one mask for all shards, their plain average; keepers:
    own masks, each weight averaged over the shards that keep it; zeros: own masks,
    zeros averaged in) and re-estimates batch norm; stage 3 selects with the merged model (GraNd: --score
    ensemble averages the shard models' scores); stage 4 trains on the weighted subset for
    --epochs (Ray Train DDP over --workers), re-selecting every --reselect epochs if given.
    summary.json: phases pretrain, merge, selection, train; shard_test_acc, merged_test_acc.

    \b
    Examples:
      effray run lipt --selection grand --fraction 0.1 --shards 10 --pre-epochs 5 --density 0.05
      effray run lipt --selection glister --fraction 0.3 --dataset digits-aug --workers 2 --epochs 20
      effray run lipt --selection grand --score ensemble --shards 4 --reselect 5
      effray run lipt --selection grand --model resnet20 --shards 4 --merge keepers
    """
    from raypkg.api import run

    echo_lipt(run("lipt", resolve_lipt(config_file, flags)).summary)
