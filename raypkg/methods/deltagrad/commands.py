"""`effray unlearn`: train and cache a run, then delete or add samples with DeltaGrad.

    effray unlearn train ...        plain SGD/GD, caching w_t, g_t, lr_t, permutations
    effray unlearn delete RUN ...   DeltaGrad vs the baseline retrain, side by side
    effray unlearn add RUN ...      the same for samples held out at training
    effray unlearn online RUN ...   a stream of requests, each served from the last answer

Each command runs a recipe of ``raypkg.methods.deltagrad.recipe`` (unlearn-train, unlearn-request,
unlearn-online): every request is checked before anything is written, and writes only
into its own directory (``RUN/requests/<name>`` or ``RUN/online/<name>``): the cached run
is opened read-only and never changes.
"""

from __future__ import annotations

import click

from raypkg.cli_options import EffrayGroup, address_option, config_file_option, config_options, echo_run_directory
from raypkg.methods.deltagrad.config import OnlineConfig, RequestConfig, UnlearnTrainConfig


@click.group(cls=EffrayGroup, context_settings={"help_option_names": ["-h", "--help"]})
def unlearn():
    """DeltaGrad: retrain quickly after deleting (or adding) a few training samples.

    \b
    Examples:
      effray unlearn train --dataset digits --model logreg --batch-size 256 --epochs 20 \\
          --lr 0.1 0.05 --lrlen 10 10 --wd 1e-4 --name dg-digits
      effray unlearn delete runs/dg-digits --ratio 0.01 --period 5 --init 20 -m 2
      effray unlearn online runs/dg-digits --requests 10 --samples-per-request 1
    """


def given(cls, **values):
    """A ``cls`` of the values given on the command line (an absent flag, None, keeps the field's default)."""
    return cls(**{k: v for k, v in values.items() if v is not None})


# ----- train ----------------------------------------------------------------------------------

@unlearn.command("train")
@address_option
@config_file_option
@config_options(UnlearnTrainConfig)
def train_cmd(config_file, **flags):
    """Train with plain SGD (or GD) and cache the trajectory DeltaGrad replays.

    \b
    Examples:
      effray unlearn train --dataset digits --model logreg --name dg-digits
      effray unlearn train --dataset digits-aug --model logreg --batch-size 16384 --epochs 20 \\
          --lr 0.1 0.05 --lrlen 10 10 --wd 1e-4 --holdout 0.001
      effray unlearn train --dataset digits --batch-size 0 --epochs 50   # full-batch GD
    """
    from raypkg.api import run
    from raypkg.config import resolve_config

    summary = run("unlearn-train", resolve_config(UnlearnTrainConfig, config_file, **flags)).summary
    click.echo(f"trained {summary['model']} on {summary['dataset']}: {summary['steps']} steps, "
               f"p = {summary['num_params']}, test_acc {summary['test_acc']:.4f}, "
               f"wall {summary['wall_s']:.1f}s")
    echo_run_directory(summary)


# ----- delete / add ---------------------------------------------------------------------------

def request_options(ids_flag: str, ids_help: str):
    """RUN, the ids file under ``ids_flag``, the request's settings and ``--address``."""
    def decorate(func):
        func = config_options(RequestConfig)(address_option(func))
        func = click.option(ids_flag, "ids_file", type=click.Path(dir_okay=False), help=ids_help)(func)
        return click.argument("run", type=click.Path())(func)
    return decorate


@unlearn.command("delete")
@request_options("--ids", "File of training-set ids to delete (.npy, .parquet/.csv column 'id', or text).")
def delete_cmd(**opts):
    """Delete samples from a cached run: DeltaGrad vs retraining without them.

    \b
    Examples:
      effray unlearn delete runs/dg-digits --ratio 0.01
      effray unlearn delete runs/dg-digits --ids ids.txt --method deltagrad --period 5 --init 20 -m 2
    """
    from raypkg.api import run

    print_outcome(run("unlearn-request", given(RequestConfig, kind="delete", **opts)).summary)


@unlearn.command("add")
@request_options("--from", "File of held-out training-set ids to add (.npy, .parquet/.csv column 'id', or text).")
def add_cmd(**opts):
    """Add samples held out at training: DeltaGrad vs retraining with them.

    Each new sample joins one random minibatch per epoch; the baseline uses the same.

    \b
    Examples:
      effray unlearn train --dataset digits --holdout 0.02 --name dg-holdout
      effray unlearn add runs/dg-holdout --ratio 0.01
    """
    from raypkg.api import run

    print_outcome(run("unlearn-request", given(RequestConfig, kind="add", **opts)).summary)


def _fmt(value, spec: str, unit: str = "") -> str:
    return "-" if value is None else format(value, spec) + unit


def outcome_rows(s: dict, suffix: str = "") -> list[tuple[str, str]]:
    """The result lines every request prints: times, speed-up, distances, accuracies."""
    return [(f"time_baseline{suffix}", _fmt(s["time_baseline"], ".3f", " s")),
            (f"time_deltagrad{suffix}", _fmt(s["time_deltagrad"], ".3f", " s")),
            ("speedup", _fmt(s["speedup"], ".2f", "x")),
            ("||wU - w*||", _fmt(s["dist_U_star"], ".3e")),
            ("||wI - wU||", _fmt(s["dist_I_U"], ".3e") + (f"   (ratio {s['dist_ratio']:.4f})"
                                                          if s["dist_ratio"] is not None else "")),
            ("test acc baseline", _fmt(s["acc_baseline"], ".4f")),
            ("test acc deltagrad", _fmt(s["acc_deltagrad"], ".4f")),
            ("test acc original", _fmt(s["acc_original"], ".4f"))]


def print_outcome(s: dict) -> None:
    click.echo(f"{'deletion' if s['kind'] == 'delete' else 'addition'} of {s['n_ids']} samples "
               f"({100 * s['n_ids'] / s['n_train']:.3g}% of {s['n_train']}); "
               f"T0={s['period']} j0={s['init']} m={s['m']}")
    rows = outcome_rows(s)
    if s.get("explicit_steps") is not None:
        rows.append(("explicit/approx steps", f"{s['explicit_steps']}/{s['approx_steps']}"))
    for key, value in rows:
        click.echo(f"  {key:<22} {value}")
    click.echo(f"saved: {s['run_dir']}")


# ----- online ---------------------------------------------------------------------------------

@unlearn.command("online")
@click.argument("run", type=click.Path())
@config_options(OnlineConfig, skip=("ratio",))  # a stream sizes its requests with --ratio-per-request
@address_option
def online_cmd(**opts):
    """Serve a stream of small requests, each from the previous answer's trajectory.

    \b
    Examples:
      effray unlearn online runs/dg-digits --requests 20 --samples-per-request 1
      effray unlearn online runs/dg-digits --requests 50 --drift-tol 0.5 --retrain-every 25
    """
    from raypkg.api import run

    summary = run("unlearn-online", given(OnlineConfig, **opts)).summary
    print_online(summary)


def print_online(s: dict) -> None:
    click.echo(f"online: {s['requests']} requests of {s['per_request']} ({s['kind']}), {s['retrains']} exact retrains")
    for key, value in outcome_rows(s, suffix=" (sum)"):
        click.echo(f"  {key:<22} {value}")
    click.echo(f"saved: {s['run_dir']}")
