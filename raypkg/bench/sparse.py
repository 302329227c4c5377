"""`effray bench sparse`: dense vs SET-ITOP vs RigL-ITOP vs A-SET-ITOP vs A-RigL-ITOP.

For each (dataset, model) setup, the five methods train in this process, one after
another, with the same seed, density, epochs and schedule, by the sparse recipe
(``raypkg.sparse.recipe``), in memory. Per method: test accuracy per epoch, the first epoch reaching the target accuracy, seconds per epoch
(training plus AGC's snapshot pass), R_s and the final density. Each AGC row also gets a
target of its own pair, --target-of-dense x the plain version's best accuracy, and both
versions' epochs to it: at 99% sparsity the dense run's target can be out of reach. The AGC claim checked
(Lei et al. 2024; spec sparse.md): an AGC variant reaches the target in >= 30% fewer
epochs than its plain version at <= 1.5x the time per epoch.
"""

from __future__ import annotations

import statistics

import click

from raypkg.bench.harness import (SAVE_HELP, bench_options, bench_stem, name_list, number_list, save_bench,
                                  use_threads, warm_up)
from raypkg.cli_options import config_options
from raypkg.sparse.config import SPARSE_BACKENDS, SparseConfig

METHODS = {  # name -> (sparse, growth, agc)
    "dense": (False, "random", False),
    "SET-ITOP": (True, "random", False),
    "RigL-ITOP": (True, "gradient", False),
    "A-SET-ITOP": (True, "random", True),
    "A-RigL-ITOP": (True, "gradient", True),
}
PAIRS = (("A-SET-ITOP", "SET-ITOP"), ("A-RigL-ITOP", "RigL-ITOP"))
EPOCH_RATIO_TARGET, TIME_RATIO_TARGET = 0.7, 1.5
# The SparseConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"epochs": 20, "batch_size": 128, "lr": [0.03], "update_frequency": 50, "train_size": 10000,
                  "test_size": 2000, "agc_gamma": 0.1, "agc_sample": None, "seed": 0}
SIZED_ONLY = "Fixed-size datasets (digits) ignore it."


def epochs_to(accuracies: list[float], target: float) -> int | None:
    """1-based epoch at which the test accuracy first reaches ``target`` (None: never)."""
    return next((i + 1 for i, acc in enumerate(accuracies) if acc >= target), None)


def run_method(base, data, name: str, density: float, backend: str = "masked") -> dict:
    """One method's run of the sparse recipe, in memory: its per-epoch curves and final figures."""
    import dataclasses

    from raypkg.recipe import MemorySink
    from raypkg.sparse.recipe import SPARSE

    sparse, growth, agc = METHODS[name]
    summary = SPARSE.run(dataclasses.replace(base, sparse=sparse, growth=growth, agc=agc, density=density,
                                             sparse_backend=backend if sparse else "masked"),
                         MemorySink, data=data)
    history = summary["rows"]
    return {"method": name, "target_density": density if sparse else 1.0, "backend": backend if sparse else "dense",
            "sparse_layers": len(summary.get("sparse_layers", [])),
            "acc": [r["test_acc"] for r in history],
            "epoch_s": [r["epoch_s"] + r.get("agc_snapshot_s", 0.0) for r in history],
            "agc_c": [r.get("agc_c") for r in history], "R_s": summary.get("R_s", 1.0), "density": summary["density"]}


def draw_curves(curves: dict[str, list[dict]], targets: dict[str, float], axes) -> None:
    """Test accuracy per epoch, one panel per setup, with the setup's target."""
    for ax, (setup, runs) in zip(axes, curves.items()):
        densities = sorted({run["target_density"] for run in runs if run["target_density"] < 1}, reverse=True)
        for run in runs:  # a plain method and its AGC variant share a colour, AGC dashed; sparser: lighter
            base = run["method"].removeprefix("A-")
            label = run["method"] if run["target_density"] == 1 else f"{run['method']} d={run['target_density']:g}"
            label += f" ({run['backend']})" if run["backend"] not in ("masked", "dense") else ""
            alpha = 1.0 if run["target_density"] == 1 else 1.0 - 0.5 * densities.index(run["target_density"]) / \
                max(len(densities) - 1, 1)
            ax.plot(range(1, len(run["acc"]) + 1), run["acc"], marker=".", label=label, alpha=alpha,
                    color=f"C{list(METHODS).index(base)}",
                    linestyle="--" if run["method"].startswith("A-") else "-")
        ax.axhline(targets[setup], color="grey", linewidth=0.8, linestyle=":", label=f"target {targets[setup]:.3f}")
        ax.set(title=setup, xlabel="epoch", ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


@click.command("sparse")
@click.option("--setups", default="digits-aug:lenet5,digits:mlp", show_default=True,
              help="Comma-separated DATASET:MODEL pairs.")
@click.option("--methods", default=",".join(METHODS), show_default=True)
@click.option("--density", "densities", default="0.05", show_default=True,
              help="Comma-separated densities of the sparse methods, e.g. 0.05,0.01 (0.01: the paper's 99% "
                   "sparsity); dense runs once per setup.")
@config_options(SparseConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"lr": "0.1 (the paper's, with BN) makes normalisation-free LeNet-5 diverge and collapse.",
                           "train_size": SIZED_ONLY, "test_size": SIZED_ONLY})
@click.option("--backends", default="masked", show_default=True,
              help="Comma-separated --sparse-backend values each sparse method runs with (masked, sparse, auto): "
                   "one row per backend, with its speed-up against masked and against dense.")
@click.option("--target", type=float, default=None,
              help="Target test accuracy (default: --target-of-dense x the dense run's best accuracy).")
@click.option("--target-of-dense", default=0.95, show_default=True)
@bench_options(threads=None, save_help=SAVE_HELP + " Per-epoch curves go to STEM-curves.parquet.")
def sparse_bench(setups, methods, densities, backends, epochs, batch_size, lr, update_frequency, train_size,
                 test_size, agc_gamma, agc_sample, target, target_of_dense, seed, threads, save):
    """Dense vs SET/RigL-ITOP with and without AGC: epochs to a target accuracy, time per epoch.

    \b
    Examples:
      effray bench sparse                                  # digits-aug/lenet5 and digits/mlp, 20 epochs
      effray bench sparse --setups digits:mlp --epochs 10  # a quick look
      effray bench sparse --setups digits-aug:resnet20 --density 0.05,0.01 --train-size 2000 --epochs 10
      effray bench sparse --setups digits-aug:mlp --methods dense,RigL-ITOP --backends masked,sparse --threads 1
    """
    import dataclasses

    import pandas as pd
    import torch

    from raypkg.errors import UsageError
    from raypkg.recipe import load_data
    from raypkg.sparse.recipe import SPARSE

    names = name_list(methods, "--methods", METHODS, "method")
    if target is None and "dense" not in names:
        raise UsageError("without --target the dense run sets it: include dense in --methods")
    backend_list = name_list(backends, "--backends", SPARSE_BACKENDS, "sparse backend")
    density_list = number_list(densities, "--density", "densities in (0, 1]")
    if not all(0 < d <= 1 for d in density_list):
        raise UsageError(f"--density takes densities in (0, 1], got {densities!r}")
    pairs = []
    for item in name_list(setups, "--setups"):
        dataset, sep, model = item.strip().partition(":")
        if not sep:
            raise UsageError(f"--setups takes DATASET:MODEL pairs, got {item!r}")
        pairs.append((dataset, model))
    bases = []
    for dataset, model in pairs:
        sized = dataset in ("digits-aug", "synthetic")
        bases.append(SparseConfig(dataset=dataset, model=model, epochs=epochs, batch_size=batch_size, lr=lr,
                                  density=density_list[0], update_frequency=update_frequency, agc_gamma=agc_gamma,
                                  agc_sample=agc_sample, seed=seed, train_size=train_size if sized else None,
                                  test_size=test_size if sized else None, progress=False,
                                  wandb="disabled").resolved().validate())
    use_threads(threads)
    stem = bench_stem(save, "sparse")

    rows, curves, targets = [], {}, {}
    for base in bases:
        data = load_data(base)
        setup = f"{base.dataset}/{base.model}"
        click.echo(f"{setup}: {len(data.train)} train, {len(data.test)} test ...", err=True)
        for backend in dict.fromkeys(["masked", *backend_list]):  # every timed row after the one-time costs
            warm_up(SPARSE, dataclasses.replace(base, sparse_backend=backend), data)
        runs = []
        for density in density_list:
            for name in names:
                if name == "dense" and density != density_list[0]:
                    continue  # dense does not depend on the density
                for backend in (backend_list if METHODS[name][0] else ["dense"]):
                    runs.append(run_method(base, data, name, density, backend))
                    click.echo(f"  {name} (density {runs[-1]['target_density']:g}, {runs[-1]['backend']}): final acc "
                               f"{runs[-1]['acc'][-1]:.4f}, {statistics.median(runs[-1]['epoch_s']):.2f}s/epoch",
                               err=True)
        dense = next((run for run in runs if run["method"] == "dense"), None)
        targets[setup] = target if target is not None else target_of_dense * max(dense["acc"])
        curves[setup] = runs
        setup_rows, curves_of = {}, {}
        for run in runs:
            key = run["method"], run["target_density"], run["backend"]
            curves_of[key] = run["acc"]
            setup_rows[key] = row = {
                "setup": setup, "method": run["method"], "target_density": run["target_density"],
                "backend": run["backend"], "sparse_layers": run["sparse_layers"],
                "target": targets[setup], "epochs_to_target": epochs_to(run["acc"], targets[setup]),
                "s_per_epoch": statistics.median(run["epoch_s"]), "final_acc": run["acc"][-1],
                "best_acc": max(run["acc"]), "R_s": run["R_s"], "density": run["density"],
                "agc_c_last": run["agc_c"][-1]}
            rows.append(row)
        dense_s = statistics.median(dense["epoch_s"]) if dense else None
        for (name, density, backend), a in setup_rows.items():
            masked = setup_rows.get((name, density, "masked"))
            if masked is not None:
                a["x_vs_masked"] = masked["s_per_epoch"] / a["s_per_epoch"]
            if dense_s is not None:
                a["x_vs_dense"] = dense_s / a["s_per_epoch"]
        for (name, density, backend), a in setup_rows.items():
            plain_name = dict(PAIRS).get(name)
            p = setup_rows.get((plain_name, density, backend))
            if p is None:
                continue
            a["time_vs_plain"] = a["s_per_epoch"] / p["s_per_epoch"]
            # A target every density can reach: --target-of-dense x the plain version's best
            # (at 99% sparsity the dense run's target may be out of reach of both).
            a["pair_target"] = target_of_dense * p["best_acc"]
            a["epochs_to_pair_target"] = epochs_to(curves_of[name, density, backend], a["pair_target"])
            a["plain_epochs_to_pair_target"] = epochs_to(curves_of[plain_name, density, backend], a["pair_target"])
            if a["epochs_to_target"] is not None and p["epochs_to_target"] is not None:
                a["epochs_vs_plain"] = a["epochs_to_target"] / p["epochs_to_target"]
                a["meets_paper_target"] = bool(a["epochs_vs_plain"] <= EPOCH_RATIO_TARGET
                                               and a["time_vs_plain"] <= TIME_RATIO_TARGET)
    table = pd.DataFrame(rows)
    click.echo(f"densities {', '.join(f'{d:g}' for d in density_list)}, {epochs} epochs, batch {batch_size}, lr {' '.join(map(str, lr))} (x0.1 at 1/2, 3/4), Nesterov, "
               f"update every {update_frequency} steps, AGC gamma {agc_gamma} alpha 0.3 sample "
               f"{agc_sample or 'full'}, seed {seed}; torch threads {torch.get_num_threads()}")
    click.echo(f"paper's claim: AGC variants reach the target in <= {EPOCH_RATIO_TARGET:.0%} of the plain "
               f"version's epochs at <= {TIME_RATIO_TARGET}x its time per epoch")
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    long = pd.DataFrame([{"setup": setup, "method": run["method"], "target_density": run["target_density"],
                          "backend": run["backend"],
                          "epoch": i + 1, "test_acc": acc, "epoch_s": s}
                         for setup, runs in curves.items() for run in runs
                         for i, (acc, s) in enumerate(zip(run["acc"], run["epoch_s"]))])
    save_bench(table, stem, plot=lambda _, axes: draw_curves(curves, targets, axes), panels=len(curves),
               extra={"-curves": long})
