"""`effray unlearn`: train and cache a run, then delete or add samples with DeltaGrad.

    effray unlearn train ...        plain SGD/GD, caching w_t, g_t, lr_t, permutations
    effray unlearn delete RUN ...   DeltaGrad vs the baseline retrain, side by side
    effray unlearn add RUN ...      the same for samples held out at training
    effray unlearn online RUN ...   a stream of requests, each served from the last answer

Every request is checked before anything is written, and writes only into its own
directory (``RUN/requests/<name>`` or ``RUN/online/<name>``): the cached run is opened
read-only and never changes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from raypkg.cli_options import (EffrayGroup, address_option, config_file_option, config_options,
                                 echo_run_directory)
from raypkg.deltagrad import METHODS
from raypkg.deltagrad.config import OnlineSettings, RequestSettings
from raypkg.engine.config import config_fields
from raypkg.errors import UsageError
from raypkg.paths import check_run_name


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


# ----- train ----------------------------------------------------------------------------------

def _train_options(func):
    """``--config FILE``, the DeltaGradConfig flags and ``--address``."""
    from raypkg.deltagrad.config import DeltaGradConfig

    return address_option(config_file_option(config_options(DeltaGradConfig)(func)))


THREADS = click.option("--threads", type=int, default=None,
                       help="torch threads (default: 1 for small steps, else torch's default).")


@unlearn.command("train")
@_train_options
@click.option("--actors", type=int, default=0, show_default=True,
              help="Exact gradients as partial sums over K Ray shard actors (0: in-process).")
@THREADS
def train_cmd(config_file, actors, threads, **flags):
    """Train with plain SGD (or GD) and cache the trajectory DeltaGrad replays.

    \b
    Examples:
      effray unlearn train --dataset digits --model logreg --name dg-digits
      effray unlearn train --dataset digits-aug --model logreg --batch-size 16384 --epochs 20 \\
          --lr 0.1 0.05 --lrlen 10 10 --wd 1e-4 --holdout 0.001
      effray unlearn train --dataset digits --batch-size 0 --epochs 50   # full-batch GD
    """
    from raypkg.deltagrad.config import DeltaGradConfig
    from raypkg.engine.config import resolve_config

    cfg = resolve_config(DeltaGradConfig, config_file, **flags).validate()  # no recipe here to validate it
    summary = train_run(cfg, actors=actors, threads=threads)
    click.echo(f"trained {summary['model']} on {summary['dataset']}: {summary['steps']} steps, "
               f"p = {summary['num_params']}, test_acc {summary['test_acc']:.4f}, "
               f"wall {summary['wall_s']:.1f}s")
    echo_run_directory(summary)


def train_run(cfg, actors: int = 0, threads: int | None = None) -> dict:
    """Train and cache; returns the run's summary. Input is checked before any output."""
    from raypkg.deltagrad.exact import make_gradients
    from raypkg.deltagrad.workload import choose_holdout, load_workload, set_threads, train_trajectory
    from raypkg.engine.loop import pick_device
    from raypkg.tracking import RunDir

    if actors < 0:
        raise UsageError(f"--actors must be >= 0, got {actors}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    device = pick_device(cfg.use_gpu)
    wl = load_workload(cfg.dataset, cfg.model, cfg.data_options(), cfg.seed, cfg.dtype, device)
    choose_holdout(wl.n, cfg.holdout, cfg.seed)  # fails here, not half-way
    set_threads(threads, wl.net, cfg.batch_size or wl.n)
    with RunDir.create(cfg.out, "deltagrad", cfg.to_dict(), cfg.dataset, cfg.model, name=cfg.name,
                       wandb_mode=cfg.wandb, wandb_project=cfg.wandb_project, storage=cfg.storage,
                       keep_checkpoints=cfg.keep_checkpoints) as run:
        grads = make_gradients(wl.net, wl.x, wl.y, actors)
        try:
            with run.phase("train"):
                traj = train_trajectory(cfg, wl, run.path / "trajectory", grads, progress=cfg.progress)
        finally:
            grads.close()
        with run.phase("eval"):
            h = traj.header
            for epoch in range(h.epochs + 1):
                metrics = wl.evaluate(traj.w[epoch * h.steps_per_epoch].to(device))
                run.log_metrics({"epoch": epoch, "lr": h.lrs[min(epoch, h.epochs - 1) * h.steps_per_epoch],
                                 "test_acc": metrics["acc"], "test_loss": metrics["loss"]})
        traj.finish()
        return run.finish(test_acc=metrics["acc"], test_loss=metrics["loss"], steps=h.steps,
                          num_params=h.p, n_train=h.n_members, n_holdout=len(traj.holdout),
                          label_noise=cfg.label_noise, device=str(device), dtype=h.dtype,
                          trajectory_bytes=sum(f.stat().st_size for f in traj.path.iterdir()))


# ----- delete / add ---------------------------------------------------------------------------

def settings_from(cls, opts: dict):
    """Take the flags of ``cls``'s fields out of a command's ``opts`` into a ``cls``
    (an absent flag, None, keeps the field's default)."""
    given = {k: opts.pop(k) for k in config_fields(cls) if k in opts}
    return cls(**{k: v for k, v in given.items() if v is not None})


def _request_options(ids_flag: str, ids_help: str):
    """RUN, the ids file under ``ids_flag``, the request settings and the run options."""
    options = [
        click.argument("run", type=click.Path()),
        click.option(ids_flag, "ids_file", type=click.Path(dir_okay=False), help=ids_help),
        config_options(RequestSettings),
        click.option("--method", type=click.Choice(METHODS), default="both", show_default=True,
                     help="DeltaGrad, the baseline retrain, or both side by side."),
        click.option("--actors", type=int, default=0, show_default=True,
                     help="Exact gradients over K Ray shard actors (0: in-process)."),
        click.option("--gpu/--cpu", "use_gpu", default=None, help="Device (default: GPU if present)."),
        THREADS,
        click.option("--name", help="Name of the request's directory under RUN/requests."),
        click.option("--wandb", type=click.Choice(["offline", "online", "disabled"]), default="offline",
                     show_default=True, help="W&B mode."),
        address_option,
    ]
    return lambda func: functools.reduce(lambda f, opt: opt(f), reversed(options), func)


@unlearn.command("delete")
@_request_options("--ids", "File of training-set ids to delete (.npy, .parquet/.csv column 'id', or text).")
def delete_cmd(run, ids_file, **opts):
    """Delete samples from a cached run: DeltaGrad vs retraining without them.

    \b
    Examples:
      effray unlearn delete runs/dg-digits --ratio 0.01
      effray unlearn delete runs/dg-digits --ids ids.txt --method deltagrad --period 5 --init 20 -m 2
    """
    request_run("delete", run, ids_file, settings_from(RequestSettings, opts), **opts)


@unlearn.command("add")
@_request_options("--from", "File of held-out training-set ids to add (.npy, .parquet/.csv column 'id', or text).")
def add_cmd(run, ids_file, **opts):
    """Add samples held out at training: DeltaGrad vs retraining with them.

    Each new sample joins one random minibatch per epoch; the baseline uses the same.

    \b
    Examples:
      effray unlearn train --dataset digits --holdout 0.02 --name dg-holdout
      effray unlearn add runs/dg-holdout --ratio 0.01
    """
    request_run("add", run, ids_file, settings_from(RequestSettings, opts), **opts)


def _open(run: str, use_gpu, actors: int, threads: int | None):
    from raypkg.deltagrad.exact import make_gradients
    from raypkg.deltagrad.trajectory import Trajectory
    from raypkg.deltagrad.workload import load_workload
    from raypkg.engine.loop import pick_device

    traj = Trajectory.open(run)
    device = pick_device(use_gpu)
    if actors < 0:
        raise UsageError(f"--actors must be >= 0, got {actors}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    return traj, device, lambda: _load(traj, device, actors, threads, load_workload, make_gradients)


def _run_root(traj) -> Path:
    """The run directory holding ``traj`` (requests and streams are written beside it)."""
    return traj.path.parent if traj.path.name == "trajectory" else traj.path


def _load(traj, device, actors, threads, load_workload, make_gradients):
    from raypkg.deltagrad.workload import set_threads

    h = traj.header
    wl = load_workload(h.dataset, h.model, h.data, h.seed, h.dtype, device)
    if wl.n != h.n or wl.net.num_params != h.p:
        raise UsageError(f"the data or model no longer match the cached run ({h.dataset}: {wl.n} vs {h.n} "
                         f"samples, {h.model}: {wl.net.num_params} vs {h.p} parameters)")
    set_threads(threads, wl.net, h.batch_size or h.n_members)
    return wl, make_gradients(wl.net, wl.x, wl.y, actors)


def request_run(kind: str, run: str, ids_file, settings, *, method, actors, use_gpu, threads, name,
                wandb) -> dict:
    """Check the request (``settings``: a RequestSettings), serve it, save and print the
    comparison; returns the summary."""
    import torch

    from raypkg.deltagrad.requests import addition_request, deletion_ids, read_ids, serve
    from raypkg.deltagrad.replay import Request
    from raypkg.tracking import RunDir

    settings.check_request()
    period, init, m, eps = settings.period, settings.init, settings.m, settings.eps
    ratio, seed = settings.ratio, settings.request_seed
    if name is not None:
        check_run_name(name)
    traj, device, load = _open(run, use_gpu, actors, threads)
    plan = traj.plan()
    given = read_ids(ids_file) if ids_file else None
    if kind == "delete":
        request = Request("delete", deletion_ids(plan, traj.header.n, given, ratio, seed))
    else:
        request = addition_request(traj, plan, given, ratio, seed)
    wl, grads = load()
    h = traj.header
    config = {"run": str(run), "kind": kind, "n_ids": len(request.ids), "ratio": ratio, "seed": seed,
              "ids_file": ids_file, "method": method, "period": period, "init": init, "m": m, "eps": eps,
              "actors": actors}
    try:
        with RunDir.create(_run_root(traj) / "requests", f"deltagrad-{kind}", config, h.dataset, h.model,
                           name=name, wandb_mode=wandb) as out:
            outcome = serve(traj, plan, request, grads, method, period=period, init=init, m=m,
                            device=device, eps=eps)
            metrics = outcome.metrics(wl.evaluate)
            table = {"id": request.ids}
            if request.assign is not None:
                table.update({f"batch_epoch{e}": request.assign[e] for e in range(len(request.assign))})
            out.write_table("ids.parquet", table)
            torch.save({"w_deltagrad": outcome.w_deltagrad, "w_baseline": outcome.w_baseline,
                        "ids": request.ids, "assign": request.assign}, out.path / "weights.pt")
            acc = metrics["acc_deltagrad"] if metrics["acc_deltagrad"] is not None else metrics["acc_baseline"]
            summary = out.finish(test_acc=acc, kind=kind, period=period, init=init, m=m, **metrics)
    finally:
        grads.close()
    print_outcome(kind, summary, h.n_members)
    return summary


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


def print_outcome(kind: str, s: dict, n_members: int) -> None:
    click.echo(f"{'deletion' if kind == 'delete' else 'addition'} of {s['n_ids']} samples "
               f"({100 * s['n_ids'] / n_members:.3g}% of {n_members}); T0={s['period']} j0={s['init']} m={s['m']}")
    rows = outcome_rows(s)
    if s.get("explicit_steps") is not None:
        rows.append(("explicit/approx steps", f"{s['explicit_steps']}/{s['approx_steps']}"))
    for key, value in rows:
        click.echo(f"  {key:<22} {value}")
    click.echo(f"saved: {s['run_dir']}")


# ----- online ---------------------------------------------------------------------------------

@unlearn.command("online")
@click.argument("run", type=click.Path())
@click.option("--requests", "num_requests", type=int, default=10, show_default=True, help="Requests in the stream.")
@click.option("--ratio-per-request", type=float, help="Each request's size as a fraction of the training set.")
@click.option("--samples-per-request", type=int, help="Each request's size in samples (default 1).")
@click.option("--kind", type=click.Choice(["delete", "add"]), default="delete", show_default=True)
@click.option("--method", type=click.Choice(["deltagrad", "both"]), default="both", show_default=True,
              help="both: also K sequential exact retrains, for time and distance.")
@config_options(OnlineSettings, skip=("ratio",))  # a stream sizes its requests with the flags above
@click.option("--actors", type=int, default=0, show_default=True, help="Exact gradients over K Ray actors.")
@click.option("--gpu/--cpu", "use_gpu", default=None)
@THREADS
@click.option("--name", help="Name of the stream's directory under RUN/online.")
@click.option("--wandb", type=click.Choice(["offline", "online", "disabled"]), default="offline", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="A progress bar advancing per request (with its seconds and ||wI - wU||).")
@address_option
def online_cmd(run, **opts):
    """Serve a stream of small requests, each from the previous answer's trajectory.

    \b
    Examples:
      effray unlearn online runs/dg-digits --requests 20 --samples-per-request 1
      effray unlearn online runs/dg-digits --requests 50 --drift-tol 0.5 --retrain-every 25
    """
    online_run(run, settings_from(OnlineSettings, opts), **opts)


def online_run(run, settings, *, num_requests, ratio_per_request, samples_per_request, kind, method, actors,
               use_gpu, threads, name, wandb, progress: bool = False) -> dict:
    """Check the stream (``settings``: an OnlineSettings), serve it, save and print the
    totals; returns the summary."""
    from tqdm.auto import tqdm

    from raypkg.deltagrad.online import run_online
    from raypkg.tracking import RunDir

    settings.check_request()
    if name is not None:
        check_run_name(name)
    if num_requests < 1:
        raise UsageError(f"--requests must be >= 1, got {num_requests}")
    traj, device, load = _open(run, use_gpu, actors, threads)
    members = len(traj.plan().members())
    if ratio_per_request is not None and samples_per_request is not None:
        raise UsageError("give at most one of --ratio-per-request and --samples-per-request")
    if ratio_per_request is not None:
        if not 0 < ratio_per_request < 1:
            raise UsageError(f"--ratio-per-request must be in (0, 1), got {ratio_per_request}")
        count = int(round(ratio_per_request * members))
        if count == 0:
            raise UsageError(f"--ratio-per-request {ratio_per_request} of {members} samples selects none")
    else:
        count = 1 if samples_per_request is None else samples_per_request
        if count < 1:
            raise UsageError(f"--samples-per-request must be >= 1, got {count}")
    total = count * num_requests
    if kind == "delete" and total >= members:
        raise UsageError(f"{num_requests} requests of {count} would delete {total} of {members} samples")
    if kind == "add" and total > len(traj.addable()):
        raise UsageError(f"{num_requests} requests of {count} need {total} held-out samples; "
                         f"the run holds out {len(traj.addable())}")
    wl, grads = load()
    h = traj.header
    config = {"run": str(run), "kind": kind, "requests": num_requests, "per_request": count,
              "seed": settings.request_seed, "method": method, "period": settings.period, "init": settings.init,
              "m": settings.m, "eps": settings.eps, "retrain_every": settings.retrain_every,
              "drift_tol": settings.drift_tol, "actors": actors}
    try:
        with RunDir.create(_run_root(traj) / "online", "deltagrad-online", config, h.dataset, h.model, name=name,
                           wandb_mode=wandb) as out:
            work = traj.copy_to(out.path / "trajectory")
            bar = tqdm(total=num_requests, desc=f"online {kind}", unit="request", disable=not progress)

            def on_request(row: dict) -> None:
                out.log_metrics({k: v for k, v in row.items() if k != "ids"})
                shown = {"deltagrad_s": f"{row['time_deltagrad']:.2f}"}
                if "time_baseline" in row:
                    shown.update(baseline_s=f"{row['time_baseline']:.2f}", dist_I_U=f"{row['dist_I_U']:.2e}")
                bar.set_postfix(shown, refresh=False)
                bar.update()

            with bar:
                rows, w, wU = run_online(traj, work, grads, num_requests, kind, count, settings,
                                         seed=settings.request_seed,
                                         with_baseline=method == "both", device=device, on_request=on_request)
            work.finish()
            out.write_table("requests.parquet", {k: [r.get(k) for r in rows] for k in rows[-1]})
            summary = online_summary(rows, w, wU, traj, wl, device)
            result = out.finish(test_acc=summary["acc_deltagrad"], **summary)
    finally:
        grads.close()
    print_online(result, count, kind)
    return result


def online_summary(rows, w, wU, traj, wl, device) -> dict:
    import torch

    w_star = traj.w[traj.header.steps].to(device)
    tb = sum(r["time_baseline"] for r in rows) if all("time_baseline" in r for r in rows) else None
    td = sum(r["time_deltagrad"] for r in rows)
    out = {"requests": len(rows), "time_baseline": tb, "time_deltagrad": td,
           "speedup": tb / td if tb else None, "retrains": sum(bool(r["retrained"]) for r in rows),
           "dist_U_star": float(torch.linalg.vector_norm(wU - w_star)) if wU is not None else None,
           "dist_I_U": float(torch.linalg.vector_norm(w - wU)) if wU is not None else None,
           "dist_I_star": float(torch.linalg.vector_norm(w - w_star)),
           "acc_original": wl.evaluate(w_star)["acc"], "acc_deltagrad": wl.evaluate(w)["acc"],
           "acc_baseline": wl.evaluate(wU)["acc"] if wU is not None else None}
    out["dist_ratio"] = out["dist_I_U"] / out["dist_U_star"] if out["dist_U_star"] else None
    return out


def print_online(s: dict, count: int, kind: str) -> None:
    click.echo(f"online: {s['requests']} requests of {count} ({kind}), {s['retrains']} exact retrains")
    rows = outcome_rows(s, suffix=" (sum)")
    for key, value in rows:
        click.echo(f"  {key:<22} {value}")
    click.echo(f"saved: {s['run_dir']}")
