"""`effray bench coreset`: the DeepCore-style pipeline for every selector, side by side.

One process, one dataset, one seed: full-data training (the accuracy reference), then
for each fraction and each method the pipeline's three phases with their seconds:
warm-up (full-data training for --warmup-epochs; GraNd pays --repeats of them, uniform
none), selection, and training on the weighted subset for the same --epochs. The warm-up
models are trained once and shared by the methods (each method is charged the warm-ups
it uses). ``vs uniform`` is the test-accuracy difference to uniform at the same
fraction; ``speed-up`` is full-data training time / the method's total time.
"""

from __future__ import annotations

import dataclasses
import time

import click
import torch

from raypkg.bench.selection import print_table

DEFAULT_METHODS = "uniform,grand,glister,gradmatch,craig,craig:weights=none"


def parse_method(spec: str) -> tuple[str, dict]:
    """``"craig:weights=none"`` -> ("craig", {"weights": "none"}): a method with options."""
    import yaml

    from raypkg.errors import UsageError

    name, _, rest = spec.partition(":")
    options = {}
    for pair in filter(None, rest.split(";")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"method options take KEY=VALUE, got {pair!r} in {spec!r}")
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), options


def _seconds(device: torch.device, t0: float) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@click.command("coreset")
@click.option("--dataset", default="digits-aug", show_default=True)
@click.option("--model", default="mlp", show_default=True)
@click.option("--train-size", type=int, default=None, help="digits-aug/synthetic size (default: the dataset's).")
@click.option("--test-size", type=int, default=None)
@click.option("--fractions", default="0.1,0.3", show_default=True, help="Comma-separated fractions.")
@click.option("--methods", default=DEFAULT_METHODS, show_default=True,
              help="Comma-separated selection methods, each optionally with options: NAME:KEY=VALUE;KEY=VALUE.")
@click.option("--epochs", type=int, default=10, show_default=True, help="Training epochs (full data and every subset).")
@click.option("--warmup-epochs", type=int, default=2, show_default=True, help="Full-data warm-up epochs before selection.")
@click.option("--repeats", type=int, default=3, show_default=True, help="GraNd warm-ups (DeepCore: 10).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--actors", type=int, default=0, show_default=True, help="Shard actors for selection (0: in-process).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch threads of this process (0: torch's default; on 2-vCPU VMs 2 can be far slower).")
@click.option("--save", type=click.Path(dir_okay=False), help="Also write the table (.parquet or .csv).")
def coreset(dataset, model, train_size, test_size, fractions, methods, epochs, warmup_epochs, repeats,
            batch_size, lr, actors, seed, save, threads):
    """Full data vs uniform, GraNd, Glister, GradMatch, CRAIG at each fraction: accuracy and phase times.

    \b
    Examples:
      effray bench coreset                                  # digits-aug, fractions 0.1 and 0.3
      effray bench coreset --train-size 2000 --epochs 2 --warmup-epochs 1 --repeats 2
    """
    import pandas as pd

    from raypkg.engine.loop import evaluate, fit, seed_everything
    from raypkg.errors import UsageError
    from raypkg.models.registry import build_model
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.pipeline import prepare, run_selection, warm_up
    from raypkg.selection.registry import get_selector

    if threads > 0:
        torch.set_num_threads(threads)
    specs = [m.strip() for m in methods.split(",") if m.strip()]
    parsed = {spec: parse_method(spec) for spec in specs}
    try:
        fracs = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        raise UsageError(f"--fractions takes comma-separated numbers, got {fractions!r}") from None
    base = CoresetConfig(dataset=dataset, model=model, train_size=train_size, test_size=test_size, epochs=epochs,
                         selection_epochs=warmup_epochs, batch_size=batch_size, lr=[lr], seed=seed, actors=actors,
                         progress=False, wandb="disabled", cache=False)
    for name, options in parsed.values():
        for f in fracs:
            dataclasses.replace(base, selection=name, fraction=f, options=dict(options),
                                repeats=repeats if get_selector(name).uses_repeats else None).validate()
    data, device, augment = prepare(base)
    test = data.test.to(device)
    click.echo(f"# coreset pipeline on {dataset} ({len(data.train)} train / {len(data.test)} test), {model}, "
               f"torch threads {torch.get_num_threads()}, "
               f"{epochs} epochs, warm-up {warmup_epochs} epochs, GraNd repeats {repeats}, device {device}")

    seed_everything(seed)
    net = build_model(model, data.input_shape, data.num_classes).to(device)
    t0 = time.perf_counter()
    fit(net, data.train.to(device), None, base, device=device, augment=augment)
    full_s = _seconds(device, t0)
    full_acc = evaluate(net, test, device)["acc"]
    rows = [{"fraction": 1.0, "method": "full data", "warmup_s": 0.0, "selection_s": 0.0, "train_s": full_s,
             "total_s": full_s, "test_acc": full_acc, "vs uniform": float("nan"), "speed-up": 1.0}]

    needed = max([repeats if get_selector(m).uses_repeats else 1 for m, _ in parsed.values()
                  if get_selector(m).needs_model], default=0)
    warm_models, warm_s = [], []
    for r in range(needed):
        t0 = time.perf_counter()
        warm_models.append(warm_up(base, data, r, device, augment))
        warm_s.append(_seconds(device, t0))

    for f in fracs:
        for spec, (name, options) in parsed.items():
            selector = get_selector(name)
            cfg = dataclasses.replace(base, selection=name, fraction=f, options=dict(options),
                                      repeats=repeats if selector.uses_repeats else None).validate()
            used = (repeats if selector.uses_repeats else 1) if selector.needs_model else 0
            t0 = time.perf_counter()
            result = run_selection(cfg, data, warm_models[:used], device)
            sel_s = _seconds(device, t0)
            seed_everything(seed)
            net = build_model(model, data.input_shape, data.num_classes).to(device)
            t0 = time.perf_counter()
            fit(net, data.train.subset(result.positions).to(device), None, cfg, device=device,
                weights=result.weights.float().to(device), augment=augment)
            train_s = _seconds(device, t0)
            acc = evaluate(net, test, device)["acc"]
            total = sum(warm_s[:used]) + sel_s + train_s
            rows.append({"fraction": f, "method": spec, "warmup_s": sum(warm_s[:used]), "selection_s": sel_s,
                         "train_s": train_s, "total_s": total, "test_acc": acc, "speed-up": full_s / total})
    uniform = {r["fraction"]: r["test_acc"] for r in rows if r["method"] == "uniform"}
    for r in rows:
        r["vs uniform"] = r["test_acc"] - uniform[r["fraction"]] if r["fraction"] in uniform else float("nan")
    columns = ["fraction", "method", "warmup_s", "selection_s", "train_s", "total_s", "test_acc", "vs uniform",
               "speed-up"]
    print_table(rows, columns)
    if save:
        table = pd.DataFrame(rows)
        (table.to_parquet if save.endswith(".parquet") else table.to_csv)(save, index=False)
