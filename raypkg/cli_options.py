"""Shared click options: training flags that mirror TrainConfig, list-valued flags."""

from __future__ import annotations

import functools
import sys

import click

from raypkg.engine.config import SCHEDULES
from raypkg.errors import UsageError

# Flags that take several values, written either `--lr 0.1 0.05` (the DeltaGrad README's
# form) or `--lr 0.1,0.05`. `join_list_flags` rewrites the first form into the second
# before click parses the command line.
LIST_FLAGS = ("--lr", "--lrlen", "--milestones")


def join_list_flags(args: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] in LIST_FLAGS:
            values = []
            i += 1
            while i < len(args) and not _is_flag(args[i]):
                values.append(args[i])
                i += 1
            out.append(",".join(values))
            continue
        i += 1
    return out


def run_standalone(call) -> None:
    """Run ``call()`` (a click ``main(..., standalone_mode=False)``) and exit with its
    status; bad input of any kind ends as one line ``error: ...`` and status 2."""
    try:
        status = call()
    except UsageError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        where = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
        click.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


def _is_flag(arg: str) -> bool:
    """``-h``, ``--epochs``: a flag; ``-0.5``, ``1e-3``: a value."""
    if not arg.startswith("-"):
        return False
    try:
        float(arg)
        return False
    except ValueError:
        return True


class EffrayGroup(click.Group):
    """Accepts `--lr 0.1 0.05` list flags, and turns bad input (our UsageError, and click's
    own errors such as `--epochs abc`) into one line ``error: ...`` on stderr with exit
    status 2 (no traceback), for itself and every subcommand below it."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        run_standalone(lambda: super(EffrayGroup, self).main(args, prog_name, complete_var,
                                                              standalone_mode=False, **extra))

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, join_list_flags(args))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


class NumberList(click.ParamType):
    name = "list"

    def __init__(self, kind: type):
        self.kind = kind

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [self.kind(v) for v in str(value).replace(",", " ").split()]
        except ValueError:
            self.fail(f"{value!r} is not a list of {self.kind.__name__} values", param, ctx)


FLOATS, INTS = NumberList(float), NumberList(int)


def _set_address(ctx, param, value):
    from raypkg.cluster import set_address

    set_address(value)


def address_option(func):
    """``--address``: the Ray cluster to join (recorded for ``raypkg.cluster.connect_ray``)."""
    return click.option("--address", expose_value=False, callback=_set_address,
                        help="Ray cluster to join (HOST:PORT or ray://HOST:PORT). Default: RAY_ADDRESS "
                             "if set (as `ray job submit` sets it), else a private local Ray.")(func)


def train_options(func):
    """The TrainConfig flags. All default to None: a flag given overrides --config."""
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="YAML/JSON file of config keys (e.g. a run's config.yaml); flags override it."),
        click.option("--dataset", help="Dataset name (`effray datasets`). Default: digits."),
        click.option("--model", help="Model name (`effray models`). Default: mlp."),
        click.option("--epochs", type=int, help="Training epochs. Default: 30."),
        click.option("--batch-size", type=int, help="Mini-batch size (per worker on Ray Train). Default: 64."),
        click.option("--lr", type=FLOATS, help="Learning rate; several values with --lrlen make a piecewise schedule."),
        click.option("--lrlen", type=INTS, help="Epochs for each --lr value, e.g. `--lr 0.1 0.05 --lrlen 10 10`."),
        click.option("--schedule", type=click.Choice(SCHEDULES), help="LR schedule. Default: cosine."),
        click.option("--milestones", type=INTS, help="multistep: epochs at which lr *= gamma."),
        click.option("--gamma", type=float, help="multistep decay factor. Default: 0.1."),
        click.option("--warmup-epochs", type=int, help="Linear LR warm-up epochs. Default: 0."),
        click.option("--momentum", type=float, help="SGD momentum. Default: 0.9."),
        click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum."),
        click.option("--weight-decay", "--wd", "weight_decay", type=float, help="L2 weight decay. Default: 5e-4."),
        click.option("--seed", type=int, help="Seed for data split, init and shuffling. Default: 0."),
        click.option("--workers", type=int, help="0: train in this process; N: Ray Train with N workers."),
        click.option("--gpu/--cpu", "use_gpu", default=None, help="Force GPU or CPU (default: GPU if present)."),
        click.option("--amp/--no-amp", default=None, help="bf16 autocast on GPU. Default: on."),
        click.option("--augment/--no-augment", default=None, help="Random crop + flip (default: the dataset's)."),
        click.option("--data-dir", help="Directory of the torchvision datasets / ImageFolder tree."),
        click.option("--download/--no-download", default=None, help="Allow torchvision to download."),
        click.option("--train-size", type=int, help="Size of sized datasets (digits-aug, synthetic)."),
        click.option("--test-size", type=int, help="Test size of sized datasets."),
        click.option("--image-size", type=int, help="imagefolder: resize images to this square size. Default: 64."),
        click.option("--num-classes", type=int, help="synthetic: number of classes. Default: 10."),
        click.option("--shape", help="synthetic: per-sample shape, e.g. 3x32x32 or 64. Default: 3x32x32."),
        click.option("--normalize/--no-normalize", default=None,
                     help="Standardise inputs with train statistics (default) or keep pixels in [0, 1]."),
        click.option("--flat/--images", default=None, help="Feed flattened features instead of images."),
        click.option("--out", help="Root directory of run directories. Default: runs."),
        click.option("--name", help="Run directory name. Default: METHOD-DATASET-MODEL-TIME."),
        click.option("--wandb", type=click.Choice(["offline", "online", "disabled"]), help="W&B mode. Default: offline."),
        click.option("--wandb-project", help="W&B project. Default: effray."),
        address_option,
        click.option("--max-failures", type=int, help="Ray Train restarts from the last checkpoint. Default: 1."),
        click.option("--progress/--no-progress", default=None, help="Progress bars. Default: on."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)
