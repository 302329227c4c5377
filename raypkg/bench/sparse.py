"""`effray bench sparse`: dense vs SET-ITOP vs RigL-ITOP vs A-SET-ITOP vs A-RigL-ITOP.

Per (dataset, model) setup the methods train one after another through the sparse recipe
(after an untimed run per backend), same seed, density, epochs and schedule: the first
epoch reaching the target, median seconds per epoch (AGC's snapshot pass included), R_s,
the final density, ``x_vs_masked``, ``x_vs_dense`` and ``x_vs_dense_fp32`` (their seconds
per epoch / the row's; dense runs at ``--precision auto``'s pick and at fp32/contiguous,
``execution`` says which each row ran), and for each AGC row its pair's target (--target-of-dense x the plain version's
best) and both versions' epochs to it. The claim (Lei et al. 2024): AGC reaches the
target in >= 30% fewer epochs at <= 1.5x the time per epoch.
"""

from __future__ import annotations

import dataclasses
import statistics

import click
import pandas as pd

from raypkg.bench.harness import SAVE_HELP, BenchRunner, bench_options, compare
from raypkg.cli_options import config_options, list_option, name_list, number_list, target_acc_option
from raypkg.errors import UsageError
from raypkg.methods.sparse.config import AGC_SETTINGS, SparseConfig
from raypkg.methods.sparse.recipe import (
    EPOCH_RATIO_TARGET,
    SPARSE,
    SPARSE_METHODS,
    TIME_RATIO_TARGET,
    agc_vs_plain,
    epochs_to,
    sparse_point,
)
from raypkg.recipe import load_data
from raypkg.sparsity.settings import SPARSE_BACKENDS

# The SparseConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"epochs": 20, "batch_size": 128, "lr": [0.03], "update_frequency": 50, "train_size": 10000,
                  "test_size": 2000, "agc_gamma": 0.1, "agc_sample": None, "seed": 0}
SIZED_ONLY = "Fixed-size datasets (digits) ignore it."
DENSE_FP32 = "dense fp32"  # the dense row at fp32/contiguous, beside dense at --precision auto's pick


def run_method(runner: BenchRunner, base, agc: dict, data, name: str, density: float, backend: str) -> dict:
    """One method's run of the sparse recipe (its config from the sparse bench case, with the
    AGC settings ``agc`` for an A- method), in memory: its per-epoch curves (``acc``, ``epoch_s``:
    AGC's snapshot pass included) and its row's figures. Backend ``dense fp32`` is dense
    training at fp32/contiguous, whatever ``--precision auto`` picks for the other rows."""
    fields, sparse = {**dataclasses.asdict(base), **agc}, SPARSE_METHODS[name][0]
    cfg = sparse_point(name, density, fields, dict(fields, sparse_backend=backend if sparse else "masked"), None)
    if backend == DENSE_FP32:
        cfg = dataclasses.replace(cfg, precision="fp32", memory_format="contiguous")
    summary = runner.run(SPARSE, cfg.resolved().validate(), data,
                         key=(base.dataset, base.model, cfg.sparse_backend, cfg.precision, cfg.memory_format))
    history = summary["rows"]
    acc, epoch_s = [r["test_acc"] for r in history], [r["epoch_s"] + r.get("agc_snapshot_s", 0.0) for r in history]
    run = {"setup": f"{base.dataset}/{base.model}", "method": name, "target_density": density if sparse else 1.0,
           "backend": backend, "execution": f"{summary['precision']}/{summary['memory_format']}",
           "sparse_layers": len(summary.get("sparse_layers", [])), "s_per_epoch":
           statistics.median(epoch_s), "final_acc": acc[-1], "best_acc": max(acc), "R_s": summary.get("R_s", 1.0),
           "density": summary["density"], "agc_c_last": history[-1].get("agc_c"), "acc": acc, "epoch_s": epoch_s}
    click.echo(f"  {name} (density {run['target_density']:g}, {backend}): final acc {acc[-1]:.4f}, "
               f"{run['s_per_epoch']:.2f}s/epoch", err=True)
    return run


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
                    color=f"C{list(SPARSE_METHODS).index(base)}",
                    linestyle="--" if run["method"].startswith("A-") else "-")
        ax.axhline(targets[setup], color="grey", linewidth=0.8, linestyle=":", label=f"target {targets[setup]:.3f}")
        ax.set(title=setup, xlabel="epoch", ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


@click.command("sparse")
@list_option("--setups", default="digits-aug:lenet5,digits:mlp", show_default=True,
              help="Comma-separated DATASET:MODEL pairs.")
@list_option("--methods", default=",".join(SPARSE_METHODS), show_default=True)
@list_option("--density", "densities", default="0.05", show_default=True,
              help="Comma-separated densities of the sparse methods, e.g. 0.05,0.01 (0.01: the paper's 99% "
                   "sparsity); dense runs once per setup.")
@config_options(SparseConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"lr": "0.1 (the paper's, with BN) makes normalisation-free LeNet-5 diverge and collapse.",
                           "train_size": SIZED_ONLY, "test_size": SIZED_ONLY})
@list_option("--backends", default="masked", show_default=True,
              help="Comma-separated --sparse-backend values each sparse method runs with (masked, sparse, auto): "
                   "one row per backend, with its speed-up against masked and against dense.")
@target_acc_option("Target test accuracy (default: --target-of-dense x the dense run's best accuracy).",
                   flag="--target")
@target_acc_option("The target as a fraction of the dense run's best accuracy, in (0, 1].", flag="--target-of-dense",
                   default=0.95, show_default=True)
@bench_options(threads=None, save_help=SAVE_HELP + " Per-epoch curves go to STEM-curves.parquet.")
def sparse_bench(setups, methods, densities, backends, target, target_of_dense, threads, save, wandb, **flags):
    """Dense vs SET/RigL-ITOP with and without AGC: epochs to a target accuracy, time per epoch.

    \b
    Examples:
      effray bench sparse                                  # digits-aug/lenet5 and digits/mlp, 20 epochs
      effray bench sparse --setups digits:mlp --epochs 10  # a quick look
      effray bench sparse --setups digits-aug:resnet20 --density 0.05,0.01 --train-size 2000 --epochs 10
    """
    names = name_list(methods, "--methods", SPARSE_METHODS, "method")
    if target is None and "dense" not in names:
        raise UsageError("without --target the dense run sets it: include dense in --methods")
    backend_list = name_list(backends, "--backends", SPARSE_BACKENDS, "sparse backend")
    density_list = number_list(densities, "--density", "densities", unit=True)
    agc = {name: flags.pop(name) for name in AGC_SETTINGS if name in flags}  # the A- methods' settings
    if not any(SPARSE_METHODS[name][2] for name in names):
        idle = [name for name, value in agc.items() if value != BENCH_DEFAULTS[name]]
        if idle:
            raise UsageError(f"--{idle[0].replace('_', '-')} sets AGC, which none of --methods {methods!r} uses: "
                             "add an A- method or drop it")
    if not any(SPARSE_METHODS[name][0] for name in names) and flags["update_frequency"] != \
            BENCH_DEFAULTS["update_frequency"]:
        raise UsageError(f"--update-frequency sets the sparse masks, which none of --methods {methods!r} uses: "
                         "add a sparse method or drop it")
    bases = []
    for item in name_list(setups, "--setups"):
        dataset, sep, model = item.partition(":")
        if not sep:
            raise UsageError(f"--setups takes DATASET:MODEL pairs, got {item!r}")
        sized = {k: flags[k] if dataset in ("digits-aug", "synthetic") else None for k in ("train_size", "test_size")}
        bases.append(SparseConfig(**{**flags, **sized}, dataset=dataset, model=model, density=density_list[0],
                                  progress=False, wandb="disabled").resolved().validate())
        if any(SPARSE_METHODS[name][2] for name in names):  # the AGC settings too, before any work
            dataclasses.replace(bases[-1], agc=True, **agc).validate()
    runner = BenchRunner("sparse", save, threads, wandb)
    runs, targets = [], {}
    for base in bases:
        data = load_data(base)
        click.echo(f"{base.dataset}/{base.model}: {len(data.train)} train, {len(data.test)} test ...", err=True)
        for backend in dict.fromkeys(["masked", *backend_list]):  # every timed row after the one-time costs
            runner.warm(SPARSE, dataclasses.replace(base, sparse_backend=backend), data,
                        key=(base.dataset, base.model, backend, base.precision, base.memory_format))
        these = [run_method(runner, base, agc, data, name, density, backend) for density in density_list
                 for name in names if name != "dense" or density == density_list[0]  # dense: once
                 for backend in (backend_list if SPARSE_METHODS[name][0] else ["dense", DENSE_FP32])]
        dense = next((run["acc"] for run in these if run["method"] == "dense"), None)
        targets[these[0]["setup"]] = target if target is not None else target_of_dense * max(dense)
        runs += these
    by = {(r["setup"], r["method"], r["target_density"], r["backend"]): r for r in runs}
    rows = []
    for run in runs:  # columns: the run's labels, its target, its figures, then an AGC run's against its plain one
        target = targets[run["setup"]]
        row = {k: run[k] for k in ("setup", "method", "target_density", "backend", "execution", "sparse_layers")}
        row.update(target=target, epochs_to_target=epochs_to(run["acc"], target), **{
            k: run[k] for k in ("s_per_epoch", "final_acc", "best_acc", "R_s", "density", "agc_c_last")})
        plain = by.get((run["setup"], run["method"].removeprefix("A-"), run["target_density"], run["backend"]))
        if run["method"].startswith("A-") and plain is not None:
            row.update(agc_vs_plain(run, plain, target, target_of_dense))
        rows.append(row)
    table = pd.DataFrame(rows)
    for column, reference, keys in (("x_vs_masked", table.backend == "masked", ["setup", "method", "target_density"]),
                                    ("x_vs_dense", (table.method == "dense") & (table.backend == "dense"), ["setup"]),
                                    ("x_vs_dense_fp32", table.backend == DENSE_FP32, ["setup"])):
        if reference.any():
            table = compare(table, reference, keys, column, seconds="s_per_epoch")
    b = bases[0]
    click.echo(f"densities {', '.join(f'{d:g}' for d in density_list)}, {b.epochs} epochs, batch {b.batch_size}, lr "
               f"{' '.join(map(str, b.lr))} (x0.1 at 1/2, 3/4), Nesterov, update every {b.update_frequency} steps, AGC "
               f"gamma {agc['agc_gamma']} alpha 0.3 sample {agc['agc_sample'] or 'full'}, seed {b.seed}; torch threads "
               f"{runner.threads}\npaper's claim: AGC variants reach the target in <= {EPOCH_RATIO_TARGET:.0%} of the "
               f"plain version's epochs at <= {TIME_RATIO_TARGET}x its time per epoch")
    curves = pd.DataFrame([{"setup": r["setup"], "method": r["method"], "target_density": r["target_density"],
                            "backend": r["backend"], "epoch": i + 1, "test_acc": acc, "epoch_s": s}
                           for r in runs for i, (acc, s) in enumerate(zip(r["acc"], r["epoch_s"]))])
    by_setup = {setup: [r for r in runs if r["setup"] == setup] for setup in targets}
    runner.finish(table, list(table.columns), {c: ".3f" for c in table.columns}, panels=len(targets),
                  plot=lambda _, axes: draw_curves(by_setup, targets, axes), extra={"-curves": curves})
