"""`effray bench deltagrad`: DeltaGrad vs retraining from scratch, side by side in one run.

The paper's MNIST setting (Wu et al. 2020, section 5) on ``digits-aug`` (60,000 x 784,
10 classes): logistic regression, batch 16384, 20 epochs, lr 0.1 then 0.05, weight
decay 1e-4, T0 = 5, j0 = 20, m = 2. Rows: deletion of 0.1% and 1%, addition of 0.1%
(from a run trained with those samples held out), full-batch GD, the 784-300-10 MLP,
and a stream of single-sample online deletions. Each row times the baseline retrain
and DeltaGrad on the same cached run (best of ``--repeat``), after one warm-up call,
and reports ||w^U - w*||, ||w^I - w^U||, their ratio and both test accuracies.

With ``--actors K`` it also times one exact gradient sum over N rows in-process and on
K shard actors (where the actors start to pay) and serves the GD row on the actors.

Learning rate: the paper's MNIST pixels are in [0, 1]; ``digits-aug`` is standardised
(per-pixel mean 0, variance 1 overall), which multiplies the top curvature of the
logistic loss by ~10: at lr 0.1 SGD oscillates (the test loss rises between epochs,
the bench prints a warning) and no quasi-Newton replay can follow the run. lr 0.01
then 0.005 puts digits-aug in the paper's regime.

Time accounting: each exact step of the baseline and of DeltaGrad gathers its batch's
rows and runs two thin matrix products over them; an approximate DeltaGrad step touches
only the requested rows plus an O(p m) L-BFGS product. With T0 = 5 and j0 = 20 over the
80 steps of this setting 32 steps are exact, so the speed-up cannot pass 80 / 32 = 2.5.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import click
import torch

from raypkg.bench.harness import bench_options, bench_stem, hbar, save_bench, use_threads
from raypkg.cli_options import FLOATS, address_option, config_options
from raypkg.errors import UsageError


def _parse_hypers(text: str) -> list[tuple[int, int, int]]:
    out = []
    for item in [t for t in text.split(";") if t.strip()]:
        try:
            values = [int(v) for v in item.replace(",", " ").split()]
        except ValueError:
            values = []
        if len(values) != 3:
            raise UsageError(f"--also {item!r}: give T0,j0,m as three integers (several: 'T0,j0,m;T0,j0,m')")
        out.append(tuple(values))
    return out


# The paper's MNIST setting on digits-aug; pixels stay in [0, 1] as the paper's MNIST (ToTensor
# without Normalize), where lr 0.1 is stable (standardised, lr 0.1 oscillates).
BENCH_RUN = {"dataset": "digits-aug", "normalize": False, "batch_size": 16384, "epochs": 20, "lr": [0.1, 0.05],
             "lrlen": [10, 10], "weight_decay": 1e-4, "seed": 0}


def bench_run_options(func):
    """The training flags of DeltaGradConfig this bench varies; their bench defaults are BENCH_RUN."""
    from raypkg.deltagrad.config import DeltaGradConfig

    return config_options(DeltaGradConfig, only=[*BENCH_RUN, "train_size", "test_size"], defaults=BENCH_RUN,
                          fill_defaults=True)(func)


def bench_request_options(func):
    """DeltaGrad's T0, j0 and m (RequestSettings); the paper's 5, 20, 2 by default."""
    from raypkg.deltagrad.config import RequestSettings

    return config_options(RequestSettings, only=("period", "init", "m"), fill_defaults=True)(func)


@click.command("deltagrad")
@bench_run_options
@bench_request_options
@click.option("--ratios", type=FLOATS, default="0.001,0.01", show_default=True, help="Deletion ratios.")
@click.option("--add-ratio", type=float, default=0.001, show_default=True, help="Addition ratio (0: skip).")
@click.option("--also", "also", default="", help="More T0,j0,m settings for the first deletion row, "
                                                  "';'-separated, e.g. '10,5,2;10,10,4'.")
@click.option("--gd-epochs", type=int, default=40, show_default=True, help="GD iterations (0: skip the GD row).")
@click.option("--gd-init", type=int, default=10, show_default=True, help="j0 of the GD row.")
@click.option("--gd-ratio", type=float, default=0.001, show_default=True)
@click.option("--mlp/--no-mlp", default=True, show_default=True, help="The 784-300-10 MLP row.")
@click.option("--online-requests", type=int, default=100, show_default=True, help="0: skip the online row.")
@click.option("--online-baseline-every", type=int, default=10, show_default=True,
              help="Time the sequential baseline retrain for every Nth request (and the last) and scale "
                   "to all requests; 1 = retrain after every request.")
@click.option("--actors", type=int, default=0, show_default=True,
              help="K > 0: also time exact gradients on K shard actors, and the GD row on them.")
@click.option("--repeat", type=int, default=3, show_default=True,
              help="Best of N interleaved timings per method (shared CPUs are noisy).")
@click.option("--out", type=click.Path(file_okay=False), help="Keep the cached runs here (default: a temp dir).")
@bench_options(threads=None)
@address_option
def deltagrad_bench(period, init, m, ratios, add_ratio, also, gd_epochs, gd_init, gd_ratio, mlp, online_requests,
                    online_baseline_every, actors, repeat, threads, out, save, **run_flags):
    """DeltaGrad vs the baseline retrain: deletion, addition, GD, MLP, online.

    Training flags default to the paper's MNIST setting on digits-aug: digits-aug, pixels
    in [0, 1] (--no-normalize), batch 16384, 20 epochs, lr 0.1 0.05 x 10 10, wd 1e-4.

    \b
    Examples:
      effray bench deltagrad                                   # the paper's MNIST setting on digits-aug
      effray bench deltagrad --lr 0.01 0.005 --also '4,4,2'    # a learning rate stable on digits-aug
      effray bench deltagrad --train-size 6000 --batch-size 1024 --online-requests 10 --no-mlp --gd-epochs 0
    """
    import pandas as pd

    from raypkg.data.registry import load_dataset
    from raypkg.deltagrad.exact import ExactGradients
    from raypkg.deltagrad.online import OnlineSettings, run_online
    from raypkg.deltagrad.requests import addition_request, deletion_ids, measure
    from raypkg.deltagrad.replay import Request
    from raypkg.deltagrad.config import DeltaGradConfig, RequestSettings
    from raypkg.deltagrad.workload import workload_from_splits
    from raypkg.engine.loop import pick_device
    from raypkg.errors import UsageError
    from raypkg.paths import check_writable_dir

    run = DeltaGradConfig(**run_flags).resolved().validate()
    dataset, train_size, test_size, normalize = run.dataset, run.train_size, run.test_size, run.normalize
    batch_size, epochs, lr, lrlen, wd, seed = run.batch_size, run.epochs, run.lr, run.lrlen, run.weight_decay, run.seed
    RequestSettings(period=period, init=init, m=m).check_request()
    extra = _parse_hypers(also)
    if repeat < 1 or online_baseline_every < 1:
        raise UsageError("--repeat and --online-baseline-every must be >= 1")
    for flag, value in (("--ratios", min(ratios, default=0)), ("--gd-ratio", gd_ratio)):
        if not 0 < value < 1:
            raise UsageError(f"{flag} must be in (0, 1), got {value:g}")
    if not 0 <= add_ratio < 1 or gd_epochs < 0 or online_requests < 0 or actors < 0 or gd_init < 0:
        raise UsageError("--add-ratio must be in [0, 1); --gd-epochs, --gd-init, --online-requests "
                         "and --actors must be >= 0")
    if out:
        check_writable_dir(out, "--out")
    stem = bench_stem(save, "deltagrad")
    use_threads(threads)
    device = pick_device(None)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="effray-bench-deltagrad-"))
    splits = load_dataset(dataset, flat=True, seed=seed, train_size=train_size, test_size=test_size,
                          normalize=normalize)
    n = len(splits.train)
    click.echo(f"{dataset}: {n} train x {splits.input_shape[0]} features, {len(splits.test)} test; "
               f"batch {batch_size or 'full'}, {epochs} epochs, lr {lr} x {lrlen}, wd {wd}; "
               f"T0={period} j0={init} m={m}; device {device}, {torch.get_num_threads()} threads")
    rows: list[dict] = []
    workloads: dict = {}

    def workload(model):
        if model not in workloads:
            workloads[model] = workload_from_splits(splits, model, seed, "float64", device)
        return workloads[model]

    def train(name, model, holdout=0.0, bs=batch_size, ep=epochs, lrlen_=lrlen):
        from raypkg.deltagrad.trajectory import Trajectory
        from raypkg.deltagrad.workload import train_trajectory

        wl = workload(model)
        cfg = dataclasses.replace(run, model=model, epochs=ep, batch_size=bs, lrlen=list(lrlen_), holdout=holdout,
                                  progress=False).resolved().validate()
        start = time.perf_counter()
        traj = train_trajectory(cfg, wl, root / name, ExactGradients(wl.net, wl.x, wl.y))
        traj.finish(read_only=False)
        traj = Trajectory.open(root / name)
        seconds = time.perf_counter() - start
        k = traj.header.steps_per_epoch
        losses = [wl.evaluate(traj.w[e * k].to(device))["loss"] for e in range(traj.header.epochs + 1)]
        acc = wl.evaluate(traj.w[-1].to(device))["acc"]
        click.echo(f"  trained {name}: {traj.header.steps} steps, p = {traj.header.p}, "
                   f"test acc {acc:.4f} ({seconds:.1f}s)")
        rises = [e for e in range(1, len(losses)) if losses[e] > 1.01 * losses[e - 1]]
        if rises:
            click.echo(f"  warning: {name}'s test loss rises at epoch(s) {rises[:5]}: SGD is unstable at "
                       f"this learning rate, and DeltaGrad's quasi-Newton steps cannot follow an unstable "
                       f"run (on standardised digits-aug, lr 0.01 behaves like the paper's 0.1 on [0, 1] "
                       f"MNIST pixels)")
        return traj

    def add_row(setting, traj, request, model, grads=None, hyper=(period, init, m)):
        wl = workload(model)
        grads = grads or ExactGradients(wl.net, wl.x, wl.y)
        metrics = measure(traj, request, grads, wl.evaluate, hyper, repeat, device)
        rows.append({"setting": setting, "T0,j0,m": ",".join(map(str, hyper)), **metrics})
        click.echo(f"  {setting}: {_row_text(rows[-1])}")

    # ----- logistic regression, SGD: deletions (and other hyperparameters), addition ------
    traj = train("logreg-sgd", "logreg")
    plan = traj.plan()
    for i, ratio in enumerate(ratios):
        request = Request("delete", deletion_ids(plan, n, ratio=ratio, seed=seed + 1))
        add_row(f"logreg delete {100 * ratio:g}%", traj, request, "logreg")
        for hyper in extra if i == 0 else []:
            add_row(f"logreg delete {100 * ratio:g}%", traj, request, "logreg", hyper=hyper)
    if add_ratio > 0:
        traj_h = train("logreg-sgd-holdout", "logreg", holdout=add_ratio)
        request = addition_request(traj_h, traj_h.plan(), ids=traj_h.addable(), seed=seed + 2)
        add_row(f"logreg add {100 * add_ratio:g}%", traj_h, request, "logreg")

    # ----- full-batch GD ----------------------------------------------------------------------
    if gd_epochs > 0:
        half = [gd_epochs // len(lr)] * len(lr)
        half[-1] += gd_epochs - sum(half)
        traj_gd = train("logreg-gd", "logreg", bs=0, ep=gd_epochs, lrlen_=half if len(lr) > 1 else [])
        gd_request = Request("delete", deletion_ids(traj_gd.plan(), n, ratio=gd_ratio, seed=seed + 3))
        add_row(f"logreg GD delete {100 * gd_ratio:g}%", traj_gd, gd_request, "logreg",
                hyper=(period, gd_init, m))

    # ----- the MLP ----------------------------------------------------------------------------
    if mlp:
        traj_mlp = train("mlp-sgd", "mlp")
        request = Request("delete", deletion_ids(traj_mlp.plan(), n, ratio=ratios[0], seed=seed + 1))
        add_row(f"mlp delete {100 * ratios[0]:g}%", traj_mlp, request, "mlp")

    # ----- online single-sample deletions -----------------------------------------------------
    if online_requests > 0:
        wl = workload("logreg")
        grads = ExactGradients(wl.net, wl.x, wl.y)
        work = traj.copy_to(root / "online")
        start = time.perf_counter()
        stream, w, w_u = run_online(traj, work, grads, online_requests, "delete", 1,
                                    OnlineSettings(period, init, m), seed=seed + 4, with_baseline=True,
                                    device=device, baseline_every=online_baseline_every)
        measured = [r["time_baseline"] for r in stream if "time_baseline" in r]
        tb = sum(measured) / len(measured) * len(stream)
        td = sum(r["time_deltagrad"] for r in stream)
        w_star = traj.w[-1].to(device)
        d_u = float(torch.linalg.vector_norm(w_u - w_star))
        d_i = float(torch.linalg.vector_norm(w - w_u))
        note = "" if len(measured) == len(stream) else f" (baseline: {len(measured)} retrains timed, scaled)"
        rows.append({"setting": f"logreg online {online_requests} x 1 delete{note}",
                     "T0,j0,m": f"{period},{init},{m}", "n_ids": online_requests, "time_baseline": tb,
                     "time_deltagrad": td, "speedup": tb / td, "dist_U_star": d_u, "dist_I_U": d_i,
                     "dist_ratio": d_i / d_u if d_u else None, "acc_baseline": wl.evaluate(w_u)["acc"],
                     "acc_deltagrad": wl.evaluate(w)["acc"]})
        click.echo(f"  online: {_row_text(rows[-1])} ({time.perf_counter() - start:.0f}s)")

    # ----- last (Ray's processes stay up once started): the shard actors ----------------------
    if actors > 0:
        from raypkg.deltagrad.exact import make_gradients

        wl = workload("logreg")
        actor_rows(wl, actors, n)
        if gd_epochs > 0:
            sharded = make_gradients(wl.net, wl.x, wl.y, actors)
            try:
                add_row(f"logreg GD delete {100 * gd_ratio:g}%, {actors} actors", traj_gd, gd_request, "logreg",
                        grads=sharded, hyper=(period, gd_init, m))
            finally:
                sharded.close()

    table = pd.DataFrame(rows)
    cols = ["setting", "T0,j0,m", "n_ids", "time_baseline", "time_deltagrad", "speedup", "dist_U_star",
            "dist_I_U", "dist_ratio", "acc_baseline", "acc_deltagrad"]
    shown = table[cols].rename(columns={"time_baseline": "t_base_s", "time_deltagrad": "t_dg_s",
                                        "dist_U_star": "|wU-w*|", "dist_I_U": "|wI-wU|", "dist_ratio": "ratio",
                                        "acc_baseline": "acc_U", "acc_deltagrad": "acc_I"})
    click.echo("")
    click.echo(shown.to_string(index=False, formatters={
        "t_base_s": "{:.2f}".format, "t_dg_s": "{:.2f}".format, "speedup": "{:.2f}x".format,
        "|wU-w*|": "{:.2e}".format, "|wI-wU|": "{:.2e}".format, "ratio": "{:.4f}".format,
        "acc_U": "{:.4f}".format, "acc_I": "{:.4f}".format}))
    save_bench(table, stem, title="DeltaGrad vs retraining: speed-up",
               plot=lambda f, ax: hbar(f, ax, "setting", ["speedup"], "speed-up (baseline s / DeltaGrad s)"))
    if not out:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def actor_rows(wl, actors: int, n: int) -> None:
    """Time one exact gradient sum over N rows: in-process vs K shard actors."""
    from raypkg.deltagrad.exact import ExactGradients, make_gradients

    local = ExactGradients(wl.net, wl.x, wl.y)
    sharded = make_gradients(wl.net, wl.x, wl.y, actors)
    try:
        click.echo(f"  exact gradient sum over N rows: in-process vs {actors} shard actors (median of 5)")
        for size in sorted({min(n, s) for s in (1_000, 4_000, 16_384, n)}):
            ids = torch.randperm(n, generator=torch.Generator().manual_seed(size))[:size].sort().values
            times = {}
            for name, grads in (("in-process", local), ("actors", sharded)):
                grads.grad_sum(wl.w0, grads.rows(ids[:8]))  # warm-up
                samples = []
                for _ in range(5):
                    start = time.perf_counter()
                    grads.grad_sum(wl.w0, grads.rows(ids))  # gather + gradient, as an SGD step does
                    samples.append(time.perf_counter() - start)
                times[name] = sorted(samples)[2]
            click.echo(f"    N = {size:>6}: in-process {1e3 * times['in-process']:8.1f} ms   "
                       f"actors {1e3 * times['actors']:8.1f} ms   ratio {times['in-process'] / times['actors']:.2f}")
    finally:
        sharded.close()


def _row_text(r: dict) -> str:
    return (f"baseline {r['time_baseline']:.2f}s, deltagrad {r['time_deltagrad']:.2f}s, "
            f"speedup {r['speedup']:.2f}x, |wU-w*| {r['dist_U_star']:.2e}, |wI-wU| {r['dist_I_U']:.2e}, "
            f"acc {r['acc_baseline']:.4f} / {r['acc_deltagrad']:.4f}")
