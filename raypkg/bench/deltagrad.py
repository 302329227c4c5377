"""`effray bench deltagrad`: DeltaGrad vs retraining from scratch, side by side in one run.

The paper's MNIST setting (Wu et al. 2020, section 5) on ``digits-aug``: logistic
regression, batch 16384, 20 epochs, lr 0.1 then 0.05, wd 1e-4, T0 = 5, j0 = 20, m = 2.
Rows: deletion of 0.1% and 1%, addition of 0.1%, full-batch GD, the 784-300-10 MLP and a
stream of online deletions; each times the baseline retrain and DeltaGrad on the same
cached run (``raypkg.timing``'s policy: warmed, then the median of ``--repeat`` interleaved
rounds) and reports ||w^U - w*||,
||w^I - w^U|| and both test accuracies. ``--actors K`` also times exact gradient sums on
K shard actors. With T0 = 5 and j0 = 20 over 80 steps, 32 are exact: the speed-up cannot
pass 2.5. Standardised digits-aug needs lr 0.01 then 0.005 for the paper's regime.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
from pathlib import Path

import click
import pandas as pd
import torch

from raypkg.bench.harness import BenchRunner, bench_options
from raypkg.cli_options import FLOATS, address_option, check_bench_numbers, config_options, list_option
from raypkg.data.registry import load_dataset
from raypkg.engine.loop import pick_device
from raypkg.errors import UsageError
from raypkg.methods.deltagrad.config import BENCH_RUN, DeltaGradConfig, RequestSettings, UnlearnTrainConfig
from raypkg.methods.deltagrad.exact import ExactGradients, make_gradients
from raypkg.methods.deltagrad.online import OnlineSettings, online_summary, run_online
from raypkg.methods.deltagrad.recipe import UNLEARN_TRAIN
from raypkg.methods.deltagrad.replay import Request
from raypkg.methods.deltagrad.requests import addition_request, deletion_ids, measure_request
from raypkg.methods.deltagrad.trajectory import Trajectory
from raypkg.methods.deltagrad.workload import workload_from_splits
from raypkg.paths import check_writable_dir
from raypkg.plots import hbar
from raypkg.timing import measure, timed

# The printed table: column -> (its printed name, format).
PRINTED = {"setting": ("setting", "s"), "T0,j0,m": ("T0,j0,m", "s"), "n_ids": ("n_ids", "d"),
           "time_baseline": ("t_base_s", ".2f"), "time_deltagrad": ("t_dg_s", ".2f"), "speedup": ("speedup", ".2f"),
           "dist_U_star": ("|wU-w*|", ".2e"), "dist_I_U": ("|wI-wU|", ".2e"), "dist_ratio": ("ratio", ".4f"),
           "acc_baseline": ("acc_U", ".4f"), "acc_deltagrad": ("acc_I", ".4f")}


def parse_hypers(text: str) -> list[tuple[int, int, int]]:
    """``--also 'T0,j0,m;T0,j0,m'``: more DeltaGrad settings."""
    out = []
    for item in filter(str.strip, text.split(";")):
        values = item.replace(",", " ").split()
        if len(values) != 3 or not all(v.isdigit() for v in values):
            raise UsageError(f"--also {item!r}: give T0,j0,m as three integers (several: 'T0,j0,m;T0,j0,m')")
        out.append(tuple(map(int, values)))
    return out


def spread(epochs: int, rates: int) -> list[int]:
    """``--lrlen`` spreading ``rates`` learning rates evenly over ``epochs`` (the last takes the
    remainder; none for one rate): the bench's default schedule, 10 and 10 of 20 epochs, at any
    --epochs."""
    if rates < 2:
        return []
    return [epochs // rates] * (rates - 1) + [epochs - epochs // rates * (rates - 1)]


@click.command("deltagrad")
# the training flags this bench varies (defaults: BENCH_RUN), and DeltaGrad's T0, j0 and m (the paper's 5, 20, 2)
@config_options(DeltaGradConfig, only=[*BENCH_RUN, "train_size", "test_size"], defaults=BENCH_RUN, fill_defaults=True)
@config_options(RequestSettings, only=("period", "init", "m"), fill_defaults=True)
@list_option("--ratios", type=FLOATS, default="0.001,0.01", show_default=True, help="Deletion ratios.")
@click.option("--add-ratio", type=float, default=0.001, show_default=True, help="Addition ratio (0: skip).")
@list_option("--also", "also", sep=";", default="", help="More T0,j0,m settings for the first deletion row, "
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
              help="Timed rounds per method, interleaved; the median counts (shared CPUs are noisy).")
@click.option("--out", type=click.Path(file_okay=False), help="Keep the cached runs here (default: a temp dir).")
@bench_options(threads=None)
@address_option
def deltagrad_bench(period, init, m, ratios, add_ratio, also, gd_epochs, gd_init, gd_ratio, mlp, online_requests,
                    online_baseline_every, actors, repeat, threads, out, save, wandb, **run_flags):
    """DeltaGrad vs the baseline retrain: deletion, addition, GD, MLP, online.

    Training flags default to the paper's MNIST setting on digits-aug: digits-aug, pixels
    in [0, 1] (--no-normalize), batch 16384, 20 epochs, lr 0.1 0.05 x 10 10, wd 1e-4.

    \b
    Examples:
      effray bench deltagrad                                   # the paper's MNIST setting on digits-aug
      effray bench deltagrad --lr 0.01 0.005 --also '4,4,2'    # a learning rate stable on digits-aug
      effray bench deltagrad --train-size 6000 --batch-size 1024 --online-requests 10 --no-mlp --gd-epochs 0
    """
    if click.get_current_context().get_parameter_source("lrlen") == click.core.ParameterSource.DEFAULT:
        run_flags["lrlen"] = spread(run_flags["epochs"], len(run_flags["lr"]))  # the default schedule at --epochs
    run = DeltaGradConfig(**run_flags).resolved().validate()
    RequestSettings(period=period, init=init, m=m).check_request()
    extra = parse_hypers(also)
    check_bench_numbers(repeat=repeat, online_baseline_every=online_baseline_every, gd_epochs=gd_epochs,
                        gd_init=gd_init, online_requests=online_requests, actors=actors)
    for flag, value in (("--ratios", min(ratios, default=0)), ("--gd-ratio", gd_ratio)):
        if not 0 < value < 1:
            raise UsageError(f"{flag} must be in (0, 1), got {value:g}")
    if not 0 <= add_ratio < 1:
        raise UsageError(f"--add-ratio must be in [0, 1), got {add_ratio:g}")
    if out:
        check_writable_dir(out, "--out")
    runner = BenchRunner("deltagrad", save, threads, wandb)
    device = pick_device(None)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="effray-bench-deltagrad-"))
    if not out:  # the cached runs go when the command ends, however it ends
        click.get_current_context().call_on_close(lambda: shutil.rmtree(root, ignore_errors=True))
    splits = load_dataset(run.dataset, flat=True, seed=run.seed, train_size=run.train_size, test_size=run.test_size,
                          normalize=run.normalize)
    bench = DeltaGradRows(run, splits, root, (period, init, m), repeat, device)
    runner.header(f"on {run.dataset}", splits, features=splits.input_shape[0], batch=run.batch_size or "full",
                  epochs=run.epochs, lr=f"{run.lr} x {run.lrlen}", wd=run.weight_decay, T0_j0_m=bench.hyper,
                  device=device)
    traj = bench.deletions(ratios, extra)
    if add_ratio > 0:
        bench.addition(add_ratio)
    gd = bench.full_batch(gd_epochs, gd_init, gd_ratio) if gd_epochs > 0 else None
    if mlp:
        bench.mlp(ratios[0])
    if online_requests > 0:
        bench.online(traj, online_requests, online_baseline_every)
    if actors > 0:  # last (Ray's processes stay up once started)
        bench.on_actors(actors, gd)

    table = pd.DataFrame(bench.rows)
    click.echo("")
    runner.finish(table, [name for name, _ in PRINTED.values()], {name: spec for name, spec in PRINTED.values()},
                  printed=table[list(PRINTED)].rename(columns={k: name for k, (name, _) in PRINTED.items()}),
                  title="DeltaGrad vs retraining: speed-up",
                  plot=lambda f, ax: hbar(f, ax, "setting", ["speedup"], "speed-up (baseline s / DeltaGrad s)"))


class DeltaGradRows:
    """The bench's rows on one loaded dataset: cached runs trained as `effray unlearn train`
    makes them, each request timed by ``measure_request`` (the median of ``repeat`` rounds),
    printed as it comes."""

    def __init__(self, run: DeltaGradConfig, splits, root: Path, hyper: tuple[int, int, int], repeat: int, device):
        self.run, self.splits, self.root, self.hyper, self.repeat, self.device = run, splits, root, hyper, repeat, device
        self.n = len(splits.train)
        self.workload = functools.cache(lambda model: workload_from_splits(splits, model, run.seed, "float64", device))
        self.rows: list[dict] = []

    def train(self, name: str, model: str, **changes) -> Trajectory:
        """A cached SGD (or GD) run of ``model`` with ``changes`` to the bench's settings, on
        the bench's loaded data; its trajectory."""
        fields = {**dataclasses.asdict(self.run), "model": model, "progress": False, "wandb": "disabled",
                  "out": str(self.root), "name": name, **changes}
        cfg = UnlearnTrainConfig(**fields, threads=torch.get_num_threads()).resolved().validate()
        summary, seconds = timed(UNLEARN_TRAIN.run, cfg, data=self.workload(model))
        click.echo(f"  trained {name}: {summary['steps']} steps, p = {summary['num_params']}, test acc "
                   f"{summary['test_acc']:.4f} ({seconds:.1f}s)")
        return Trajectory.open(Path(summary["run_dir"]) / "trajectory")

    def add(self, setting: str, traj, request, model: str, grads=None, hyper=None, row=None) -> None:
        """A row: the request timed by ``measure_request`` (or the given ``row``), printed."""
        hyper = hyper or self.hyper
        if row is None:
            wl = self.workload(model)
            row = measure_request(traj, request, grads or ExactGradients(wl.net, wl.x, wl.y), wl.evaluate, hyper,
                                  self.repeat, self.device)
        self.rows.append({"setting": setting, "T0,j0,m": ",".join(map(str, hyper)), **row})
        r = self.rows[-1]
        click.echo(f"  {setting}: baseline {r['time_baseline']:.2f}s, deltagrad {r['time_deltagrad']:.2f}s, "
                   f"speedup {r['speedup']:.2f}x, |wU-w*| {r['dist_U_star']:.2e}, |wI-wU| {r['dist_I_U']:.2e}, "
                   f"acc {r['acc_baseline']:.4f} / {r['acc_deltagrad']:.4f}")

    def deletions(self, ratios: list[float], extra: list[tuple[int, int, int]]) -> Trajectory:
        """Logistic regression by SGD, each deletion ratio (the first also at the ``extra``
        settings); its trajectory, which the online row reuses."""
        traj = self.train("logreg-sgd", "logreg")
        for i, ratio in enumerate(ratios):
            request = Request("delete", deletion_ids(traj.plan(), self.n, ratio=ratio, seed=self.run.seed + 1))
            for hyper in [self.hyper] + (extra if i == 0 else []):
                self.add(f"logreg delete {100 * ratio:g}%", traj, request, "logreg", hyper=hyper)
        return traj

    def addition(self, ratio: float) -> None:
        """Held-out samples added back to a run trained without them."""
        traj = self.train("logreg-sgd-holdout", "logreg", holdout=ratio)
        request = addition_request(traj, traj.plan(), ids=traj.addable(), seed=self.run.seed + 2)
        self.add(f"logreg add {100 * ratio:g}%", traj, request, "logreg")

    def full_batch(self, epochs: int, init: int, ratio: float) -> tuple:
        """Full-batch GD over ``epochs`` iterations (the lr schedule spread over them); its row's
        setting, trajectory, request and T0,j0,m, which the actors' row reuses."""
        lr = self.run.lr
        traj = self.train("logreg-gd", "logreg", batch_size=0, epochs=epochs, lrlen=spread(epochs, len(lr)))
        request = Request("delete", deletion_ids(traj.plan(), self.n, ratio=ratio, seed=self.run.seed + 3))
        setting, hyper = f"logreg GD delete {100 * ratio:g}%", (self.hyper[0], init, self.hyper[2])
        self.add(setting, traj, request, "logreg", hyper=hyper)
        return setting, traj, request, hyper

    def mlp(self, ratio: float) -> None:
        """The 784-300-10 MLP (non-convex), one deletion ratio."""
        traj = self.train("mlp-sgd", "mlp")
        request = Request("delete", deletion_ids(traj.plan(), self.n, ratio=ratio, seed=self.run.seed + 1))
        self.add(f"mlp delete {100 * ratio:g}%", traj, request, "mlp")

    def online(self, traj: Trajectory, requests: int, baseline_every: int) -> None:
        """Single-sample deletions one after another on ``traj``; the sequential baseline timed
        every ``baseline_every``-th request and scaled to all."""
        wl = self.workload("logreg")
        period, init, m = self.hyper
        stream, w, w_u = run_online(traj, traj.copy_to(self.root / "online"), ExactGradients(wl.net, wl.x, wl.y),
                                    requests, "delete", 1, OnlineSettings(period, init, m, request_seed=self.run.seed + 4),
                                    baseline_every=baseline_every, device=self.device)
        totals = online_summary(stream, w, w_u, traj, wl, self.device)  # the untimed baseline retrains scaled
        timed_retrains = sum("time_baseline" in r for r in stream)
        note = "" if timed_retrains == len(stream) else f" (baseline: {timed_retrains} retrains timed, scaled)"
        self.add(f"logreg online {requests} x 1 delete{note}", traj, None, "logreg",
                 row={"n_ids": requests, **{k: v for k, v in totals.items() if k in PRINTED}})

    def on_actors(self, actors: int, gd) -> None:
        """Exact gradient sums on ``actors`` shard actors against in-process, and the GD row
        (``gd``: ``full_batch``'s, or None) again on them."""
        wl = self.workload("logreg")
        actor_rows(wl, actors, self.n)
        if gd is None:
            return
        setting, traj, request, hyper = gd
        sharded = make_gradients(wl.net, wl.x, wl.y, actors)
        try:
            self.add(f"{setting}, {actors} actors", traj, request, "logreg", grads=sharded, hyper=hyper)
        finally:
            sharded.close()


def actor_rows(wl, actors: int, n: int) -> None:
    """`bench deltagrad --actors K`: one exact gradient sum over N rows (the gather and the
    gradient, as an SGD step does) in-process and on K shard actors, timed by
    ``raypkg.timing.measure`` (warmed on 8 rows, the median of 5 rounds), a line per N."""
    local = ExactGradients(wl.net, wl.x, wl.y)
    sharded = make_gradients(wl.net, wl.x, wl.y, actors)
    where = {"in-process": local, "actors": sharded}
    try:
        click.echo(f"  exact gradient sum over N rows: in-process vs {actors} shard actors (median of 5)")
        for size in sorted({min(n, s) for s in (1_000, 4_000, 16_384, n)}):
            ids = torch.randperm(n, generator=torch.Generator().manual_seed(size))[:size].sort().values
            _, times = measure({k: functools.partial(grad_sum, g, wl.w0, ids) for k, g in where.items()}, 5,
                               warm={k: functools.partial(grad_sum, g, wl.w0, ids[:8]) for k, g in where.items()})
            local_s, actors_s = times["in-process"].seconds, times["actors"].seconds
            click.echo(f"    N = {size:>6}: in-process {1e3 * local_s:8.1f} ms   actors {1e3 * actors_s:8.1f} ms   "
                       f"ratio {local_s / actors_s:.2f}")
    finally:
        sharded.close()


def grad_sum(grads, w, ids):
    """The gradient sum over rows ``ids`` at ``w``, gathered first (as an SGD step does)."""
    return grads.grad_sum(w, grads.rows(ids))
