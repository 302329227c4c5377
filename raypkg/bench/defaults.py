"""`effray bench defaults`: does every model train at its defaults? Each model, with nothing
but ``--model`` and ``--seed`` given (as `effray train --model M --seed S` runs it: the
model's default learning rate, ``raypkg.models.defaults``), over several seeds; ``--lr``
trains them all at one rate instead (what a model's own default replaced).

The table has a row per run and a summary per model: its learning rate, the lowest and the
mean test accuracy over the seeds, and how many seeds reached ``--bar``. A model whose
lowest seed is below the bar does not train at its defaults.
"""

from __future__ import annotations

import click
import pandas as pd

from raypkg.bench.harness import BenchRunner, Point, bench_options
from raypkg.cli_options import list_option, name_list, number_list, print_table
from raypkg.errors import UsageError

# The models a 2-core CPU trains 30 digits epochs of in under 2 minutes; the others (ResNet-18/34/50,
# the WRN-16-8 and 22-8, VGG-C) take 15-40 s an epoch there: name them with --models.
MODELS = "logreg,mlp,lenet300-100,lenet5,resnet20,resnet32,resnet56,wrn-28-2"
# digits: every model above reaches it in every seed at its default rate (docs/results.md), where a
# divergence ends near chance (0.1) and a stalled start near 0.5; the deep ResNets' lowest seeds are 0.94-0.95.
BAR = 0.93


def plot_accuracy(frame, ax) -> None:
    models = list(dict.fromkeys(frame["model"]))
    for i, model in enumerate(models):
        acc = frame[frame["model"] == model]["test_acc"]
        ax.scatter([i] * len(acc), acc, color="tab:blue", s=18)
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("test accuracy (each seed)")


@click.command("defaults")
@click.option("--dataset", default="digits", show_default=True, help="Dataset every model trains on.")
@click.option("--data-dir", type=click.Path(), help="Directory of a real dataset's files in its own layout "
                                                   "(MNIST/raw/ idx files for mnist; `effray datasets`).")
@list_option("--models", default=MODELS, show_default=True, help="Comma-separated models (`effray models`).")
@list_option("--seeds", default="0,1,2,3,4", show_default=True, help="Comma-separated seeds.")
@click.option("--bar", type=float, default=BAR, show_default=True,
              help="Test accuracy every seed must reach, in (0, 1].")
@click.option("--lr", type=float, help="Train every model at this learning rate instead of its default "
                                     "(what the defaults are measured against).")
@click.option("--gpu/--cpu", "use_gpu", default=None, help="Force GPU or CPU (default: GPU if present, as train).")
@bench_options(threads=1)
def defaults_bench(dataset, data_dir, models, seeds, bar, lr, use_gpu, threads, save, wandb):
    """Every model at its defaults (`effray train --model M --seed S`), over several seeds.

    \b
    Examples:
      effray bench defaults                                   # 8 models x 5 seeds on digits
      effray bench defaults --models lenet5,resnet20 --seeds 0,1,2
      effray bench defaults --models lenet5,resnet56 --lr 0.1   # what their defaults replace
      effray bench defaults --dataset mnist --data-dir ~/data  # on a real dataset's files
    """
    from raypkg.config import resolve_config
    from raypkg.engine.config import TrainConfig
    from raypkg.methods.full.recipe import TRAIN
    from raypkg.models.registry import available_models
    from raypkg.recipe import load_data

    names = name_list(models, "--models", available_models(), what="model")
    seed_list = number_list(seeds, "--seeds", "seeds", kind=int, minimum=0, example="0,1,2")
    if not 0 < bar <= 1:
        raise UsageError(f"--bar must be in (0, 1], got {bar:g}")
    configs = [resolve_config(TrainConfig, None, dataset=dataset, data_dir=data_dir, model=m, seed=s,
                              lr=None if lr is None else [lr], use_gpu=use_gpu, progress=False).validate()
               for m in names for s in seed_list]
    runner = BenchRunner("defaults", save, threads, wandb)
    data, first = load_data(configs[0]), configs[0]
    what = "every model at its defaults" if lr is None else f"every model at lr {lr:g}"
    where = {"data_dir": data_dir} if data_dir else {}
    runner.header(what, data, dataset=dataset, **where, epochs=first.epochs, batch_size=first.batch_size,
                  schedule=first.schedule, seeds=seed_list, bar=bar)
    points = [Point(f"{c.model} seed {c.seed}", TRAIN, c, {"model": c.model, "seed": c.seed, "lr": c.lr[0]},
                    key=c.model) for c in configs]
    rows = pd.DataFrame([row for row, _ in runner.rows(points, data, ("train",), "e2e_s")])
    per_model = rows.groupby("model", sort=False).agg(lr=("lr", "first"), seeds=("seed", "size"),
                                                      min_acc=("test_acc", "min"), mean_acc=("test_acc", "mean"),
                                                      reached=("test_acc", lambda a: int((a >= bar).sum())))
    per_model = per_model.reset_index()
    runner.finish(rows, ["model", "seed", "lr", "test_acc", "e2e_s"], {"test_acc": ".4f", "e2e_s": ".1f"},
                  plot=plot_accuracy, title=f"{what} ({dataset})",
                  extra={"-models": per_model})
    print_table(per_model.to_dict("records"), ["model", "lr", "seeds", "min_acc", "mean_acc", "reached"],
                {"min_acc": ".4f", "mean_acc": ".4f"})
    below = per_model[per_model["reached"] < per_model["seeds"]]
    click.echo("every model reached the bar in every seed" if below.empty else
               f"below {bar:g} in some seed: {', '.join(below['model'])}")
