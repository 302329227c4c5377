"""The selection library's command line: the flags, config and summary line of the commands
that select a subset (the coreset method's `effray select` and `effray run coreset`, LiPT's)."""

from __future__ import annotations

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
