"""`effray select` and `effray run coreset`: the selection library's command line."""

from __future__ import annotations

import click
import yaml

from raypkg.cli_options import train_options
from raypkg.errors import UsageError
from raypkg.selection.config import EMBEDDINGS


def _train_flags(func):
    """The TrainConfig flags, with TrainConfig's LR warm-up renamed --lr-warmup-epochs:
    in a coreset run --warmup-epochs means the full-data training before selection."""
    probe = train_options(lambda: None)
    params = []
    for param in probe.__click_params__:
        if param.name == "warmup_epochs":
            param = click.Option(["--lr-warmup-epochs", "warmup_epochs"], type=int,
                                 help="Linear LR warm-up epochs. Default: 0.")
        params.append(param)
    func.__click_params__ = getattr(func, "__click_params__", []) + params
    return func


def selection_options(func):
    """Flags of CoresetConfig (all default to None so that --config values stay)."""
    options = [
        click.option("--selection", "--method", "selection",
                     help="Selection method: uniform, grand, glister, gradmatch, craig. Default: uniform."),
        click.option("--fraction", type=float, help="Fraction of the training set to keep, in (0, 1]. Default: 0.1."),
        click.option("--budget", type=int, help="Number of examples to keep (instead of --fraction)."),
        click.option("--class-budget", type=int, help="Examples to keep from every class (instead of --fraction)."),
        click.option("--balance/--no-balance", default=None, help="Select per class, budget split by class share. Default: on."),
        click.option("--warmup-epochs", "--selection-epochs", "selection_epochs", type=int,
                     help="Full-data training epochs before selection (DeepCore's selection_epochs). Default: 5."),
        click.option("--repeats", type=int, help="GraNd: independent warm-ups averaged. Default: 10 for grand."),
        click.option("--actors", type=int, help="Shard actors for per-example work (0: in-process). Default: 0."),
        click.option("--embedding", type=click.Choice(EMBEDDINGS),
                     help="full: exact last-layer gradient; bias: g alone; proj: random projection. Default: full."),
        click.option("--proj-dim", type=int, help="Dimension of --embedding proj. Default: 256."),
        click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
                     help="Method option, repeatable, e.g. --option eta=0.05 (glister), --option lam=1 (gradmatch)."),
        click.option("--cache/--no-cache", default=None,
                     help="Reuse cached warm-ups and selections under OUT/.cache. Default: on."),
    ]
    for opt in reversed(options):
        func = opt(func)
    return _train_flags(func)


def parse_options(pairs: tuple[str, ...]) -> dict | None:
    """``("eta=0.05", "batch=4")`` -> ``{"eta": 0.05, "batch": 4}`` (values read as YAML)."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def resolve(config_file: str | None, flags: dict):
    from raypkg.engine.config import resolve_config
    from raypkg.selection.config import CoresetConfig

    flags = dict(flags)
    flags["options"] = parse_options(flags.pop("option_pairs", ()))
    cfg = resolve_config(CoresetConfig, config_file, **flags)
    if flags.get("fraction") is not None and flags.get("budget") is None and flags.get("class_budget") is None:
        cfg.fraction, cfg.budget, cfg.class_budget = flags["fraction"], None, None  # the flag beats the file
        cfg.validate()
    return cfg


def echo_summary(summary: dict) -> None:
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in summary.get("phases", {}).items())
    acc = summary.get("test_acc")
    acc_text = f"test_acc {acc:.4f}  " if acc is not None else ""
    hits = summary.get("cached", {})
    cache_text = ""
    if hits.get("warmup_hits") or hits.get("selection_hit"):
        cache_text = (f"  [cache: {hits.get('warmup_hits', 0)} warm-up(s)"
                      f"{', selection' if hits.get('selection_hit') else ''}]")
    click.echo(f"{summary['method']} {summary['dataset']}/{summary['model']}: "
               f"{summary['subset_size']} of {summary['train_size']} examples  {acc_text}"
               f"wall {summary['wall_s']:.1f}s  ({phases}){cache_text}")
    click.echo(f"run directory: {summary['run_dir']}")


@click.command("select")
@selection_options
def select_command(config_file, **flags):
    """Warm up a model on the full data, select a weighted coreset, save selection.parquet.

    The run directory gets selection.parquet (index, weight, score, label, rank) and, for
    GraNd, scores.parquet (every example's score); summary.json has the phase times.

    \b
    Examples:
      effray select --method grand --fraction 0.1 --dataset digits --model mlp --warmup-epochs 5 --repeats 3
      effray select --method craig --fraction 0.3 --dataset digits-aug --actors 2
      effray select --method glister --budget 200 --option eta=0.05 --no-cache
    """
    from raypkg.selection.pipeline import run_select

    echo_summary(run_select(resolve(config_file, flags)))


@click.command("coreset")
@selection_options
def run_coreset_command(config_file, **flags):
    """DeepCore-style coreset training: full-data warm-up, selection, weighted-subset training.

    Phases in summary.json: warmup (R warm-ups for GraNd), selection, train, eval (seconds),
    and test_acc. The same seed gives the same indices; warm-ups and selections are cached
    under OUT/.cache (--no-cache recomputes them).

    \b
    Examples:
      effray run coreset --selection gradmatch --fraction 0.1 --dataset digits --epochs 30
      effray run coreset --selection grand --fraction 0.3 --repeats 10 --warmup-epochs 5
      effray run coreset --selection craig --fraction 0.1 --dataset digits-aug --actors 2
    """
    from raypkg.selection.pipeline import run_coreset

    echo_summary(run_coreset(resolve(config_file, flags)))
