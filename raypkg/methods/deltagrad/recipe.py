"""DeltaGrad's recipes (Wu, Dobriban, Davidson, ICML 2020): how `effray unlearn` runs,
and the run `effray tune deltagrad` sweeps.

- ``unlearn-train`` (`effray unlearn train`): load the data and model, then one stage:
  plain SGD (or GD) caching the trajectory in RUN/trajectory, and each epoch's test metrics.
- ``unlearn-request`` (`effray unlearn delete` / `add`): load opens the cached run, checks
  the request against it and loads its data; one stage serves it with DeltaGrad and/or
  the baseline retrain, in RUN/requests/<name>.
- ``unlearn-online`` (`effray unlearn online`): the same load for a stream; one stage
  serves it on a copy of the trajectory, in RUN/online/<name>.
- ``deltagrad`` (`effray tune deltagrad`): one (T0, j0, m) on one request, scored.

Everything a request is checked against (the cached run, its ids, its data and model)
is loaded before the run directory opens, so bad input writes nothing; the cached run is
opened read-only and never changes.

Its benches live in ``raypkg.bench``: `effray bench deltagrad` (``bench/deltagrad.py``) and
the frontier's panel (``bench/deltagrad_panel.py``).
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raypkg.methods.deltagrad.config import DeltaGradTuneConfig, OnlineConfig, RequestConfig, UnlearnTrainConfig
from raypkg.recipe import Recipe, Run
from raypkg.recipe_registry import register

# ----- what a stage reads and where it writes ------------------------------------------------------


@dataclass
class CachedRun:
    """A cached run opened and checked before any output (a request recipe's ``load``): its
    trajectory and batch plan, its data and model, and what is asked of it."""

    traj: Any  # raypkg.methods.deltagrad.trajectory.Trajectory, read-only
    plan: Any  # unlearn-request: its ReplayBatches, which the request was checked against
    workload: Any  # raypkg.methods.deltagrad.workload.Workload
    request: Any = None  # unlearn-request: the checked raypkg.methods.deltagrad.replay.Request
    per_request: int = 0  # unlearn-online: samples in each of the stream's requests


@contextmanager
def run_folder(run: Run):
    """The run directory, where a run keeps its trajectory; a temporary one for a sink that
    keeps nothing (``MemorySink``: ``raypkg.run(..., save=False)``)."""
    path = getattr(run.sink, "path", None)
    if path is not None:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="effray-deltagrad-") as tmp:
        yield Path(tmp)


@contextmanager
def exact_gradients(cfg, wl, batch_rows: int):
    """Exact gradient sums over ``wl``'s training set, in-process or over ``cfg.actors``
    shard actors (they end with the block), with torch's threads set for steps of
    ``batch_rows`` samples."""
    from raypkg.methods.deltagrad.exact import make_gradients
    from raypkg.methods.deltagrad.workload import set_threads

    set_threads(cfg.threads, wl.net, batch_rows)
    grads = make_gradients(wl.net, wl.x, wl.y, cfg.actors)
    try:
        yield grads
    finally:
        grads.close()


# ----- unlearn-train ----------------------------------------------------------------------------


def load_training(cfg: UnlearnTrainConfig):
    """The flattened data (every recipe's ``load_data``: a tiny split gets its note) in the
    run's dtype on its device, and the seeded model as a FlatNet."""
    from raypkg.engine.loop import pick_device
    from raypkg.methods.deltagrad.workload import workload_from_splits
    from raypkg.recipe import load_data

    return workload_from_splits(load_data(cfg), cfg.model, cfg.seed, cfg.dtype, pick_device(cfg.use_gpu))


STANDARDISED = "DeltaGrad's paper, and effray's default, keep pixels in [0, 1] (--no-normalize)"


def check_holdout(cfg: UnlearnTrainConfig, wl) -> str | None:
    """The holdout leaves samples to train on and holds out at least one when asked; a note
    when the inputs are standardised."""
    from raypkg.methods.deltagrad.workload import choose_holdout

    choose_holdout(wl.n, cfg.holdout, cfg.seed)
    if cfg.normalize:
        return f"inputs standardised with the training split's statistics (--normalize); {STANDARDISED}"
    return None


def cached_inputs_note(cfg, cached: "CachedRun") -> str | None:
    """A request's or stream's note when its cached run's inputs are standardised."""
    if cached.traj.header.data.get("normalize"):
        return f"the cached run's inputs are standardised (it was trained with --normalize); {STANDARDISED}"
    return None


def train_and_cache(run: Run) -> None:
    """Plain SGD (GD) from the seeded w_0, caching w_t, g_t, lr_t and the batch order in
    RUN/trajectory (what Algorithm 1 of Wu et al. 2020 replays); then each epoch's test
    metrics, and the final w*'s as the run's."""
    import sys

    from raypkg.methods.deltagrad.workload import epoch_metrics, instability_warning, train_trajectory

    cfg, wl = run.cfg, run.data
    with run_folder(run) as folder:
        with exact_gradients(cfg, wl, cfg.batch_size or wl.n) as grads, run.sink.phase("train"):
            traj = train_trajectory(cfg, wl, folder / "trajectory", grads, progress=cfg.progress)
        with run.sink.phase("eval"):
            h, per_epoch = traj.header, epoch_metrics(traj, wl, run.device)
            for epoch, metrics in enumerate(per_epoch):
                run.sink.log_metrics({"epoch": epoch, "lr": h.lrs[min(epoch, h.epochs - 1) * h.steps_per_epoch],
                                      "test_acc": metrics["acc"], "test_loss": metrics["loss"]})
        if warning := instability_warning(per_epoch):
            print(warning, file=sys.stderr, flush=True)
        traj.finish()
        run.note(test_acc=metrics["acc"], test_loss=metrics["loss"], steps=h.steps, num_params=h.p,
                 n_train=h.n_members, n_holdout=len(traj.holdout), device=str(run.device), dtype=h.dtype,
                 trajectory_bytes=sum(f.stat().st_size for f in traj.path.iterdir()))


UNLEARN_TRAIN = register(Recipe("unlearn-train", UnlearnTrainConfig, [train_and_cache], label=lambda cfg: "deltagrad",
                                load=load_training, check=check_holdout,
                                metrics=("epoch", "lr", "test_acc", "test_loss")))


# ----- unlearn-request and unlearn-online ---------------------------------------------------------


def open_request(cfg: RequestConfig) -> CachedRun:
    """The cached run (verified, read-only), the request checked against it, then its data and model."""
    from raypkg.engine.loop import pick_device
    from raypkg.methods.deltagrad.requests import checked_request
    from raypkg.methods.deltagrad.trajectory import Trajectory
    from raypkg.methods.deltagrad.workload import cached_workload

    traj = Trajectory.open(cfg.run)
    plan = traj.plan()
    request = checked_request(traj, plan, cfg.kind, cfg.ids_file, cfg.ratio, cfg.request_seed)
    return CachedRun(traj, plan, cached_workload(traj, pick_device(cfg.use_gpu)), request=request)


def compare_request(run: Run) -> None:
    """Serve the request with DeltaGrad and/or the baseline retrain (Wu et al. 2020,
    Algorithm 1, against retraining from scratch); save the ids (ids.parquet), both answers
    (weights.pt) and the comparison."""
    from raypkg.methods.deltagrad.requests import serve

    cfg, cached = run.cfg, run.data
    traj, request, wl = cached.traj, cached.request, cached.workload
    h = traj.header
    with exact_gradients(cfg, wl, h.batch_size or h.n_members) as grads, run.sink.phase("request"):
        outcome = serve(traj, cached.plan, request, grads, cfg.method, cfg, device=run.device)
    with run.sink.phase("eval"):
        metrics = outcome.metrics(wl.evaluate)
    table = {"id": request.ids}
    if request.assign is not None:
        table.update({f"batch_epoch{e}": request.assign[e] for e in range(len(request.assign))})
    run.sink.write_table("ids.parquet", table)
    run.sink.save_state("weights.pt", {"w_deltagrad": outcome.w_deltagrad, "w_baseline": outcome.w_baseline,
                                       "ids": request.ids, "assign": request.assign})
    acc = metrics["acc_deltagrad"] if metrics["acc_deltagrad"] is not None else metrics["acc_baseline"]
    run.note(test_acc=acc, kind=cfg.kind, period=cfg.period, init=cfg.init, m=cfg.m, n_train=h.n_members, **metrics)


def open_stream(cfg: OnlineConfig) -> CachedRun:
    """The cached run (verified, read-only), the size of each request checked against it,
    then its data and model."""
    from raypkg.engine.loop import pick_device
    from raypkg.methods.deltagrad.online import request_size
    from raypkg.methods.deltagrad.trajectory import Trajectory
    from raypkg.methods.deltagrad.workload import cached_workload

    traj = Trajectory.open(cfg.run)
    count = request_size(traj, cfg.kind, cfg.requests, cfg.ratio_per_request, cfg.samples_per_request)
    return CachedRun(traj, None, cached_workload(traj, pick_device(cfg.use_gpu)), per_request=count)


def serve_stream(run: Run) -> None:
    """Serve the stream on a copy of the trajectory (RUN/online/<name>/trajectory), each
    request from the previous answer (``raypkg.methods.deltagrad.online``): a metrics row per
    request, requests.parquet, and the totals."""
    from tqdm.auto import tqdm

    from raypkg.methods.deltagrad.online import online_summary, run_online

    cfg, cached = run.cfg, run.data
    traj, wl = cached.traj, cached.workload
    h = traj.header
    with run_folder(run) as folder:
        with exact_gradients(cfg, wl, h.batch_size or h.n_members) as grads, run.sink.phase("request"):
            work = traj.copy_to(folder / "trajectory")
            bar = tqdm(total=cfg.requests, desc=f"online {cfg.kind}", unit="request", disable=not cfg.progress)

            def on_request(row: dict) -> None:
                run.sink.log_metrics({k: v for k, v in row.items() if k != "ids"})
                shown = {"deltagrad_s": f"{row['time_deltagrad']:.2f}"}
                if "time_baseline" in row:
                    shown.update(baseline_s=f"{row['time_baseline']:.2f}", dist_I_U=f"{row['dist_I_U']:.2e}")
                bar.set_postfix(shown, refresh=False)
                bar.update()

            with bar:
                rows, w, wU = run_online(traj, work, grads, cfg.requests, cfg.kind, cached.per_request, cfg,
                                         baseline_every=int(cfg.method == "both"), device=run.device,
                                         on_request=on_request)
            work.finish()
    run.sink.write_table("requests.parquet", {k: [r.get(k) for r in rows] for k in rows[-1]})
    with run.sink.phase("eval"):
        summary = online_summary(rows, w, wU, traj, wl, run.device)
    run.note(test_acc=summary["acc_deltagrad"], kind=cfg.kind, per_request=cached.per_request, **summary)


UNLEARN_REQUEST = register(Recipe("unlearn-request", RequestConfig, [compare_request],
                                  label=lambda cfg: f"deltagrad-{cfg.kind}", load=open_request,
                                  check=cached_inputs_note, metrics=()))
# A stream's metrics row: raypkg.methods.deltagrad.online.run_online's, less the ids.
UNLEARN_ONLINE = register(Recipe("unlearn-online", OnlineConfig, [serve_stream], label=lambda cfg: "deltagrad-online",
                                 load=open_stream, check=cached_inputs_note,
                                 metrics=("request", "kind", "n_ids", "time_deltagrad", "retrained", "max_rel_grad_err",
                                          "time_baseline", "dist_I_U", "dist_U_star")))


# ----- deltagrad: `effray tune deltagrad` -----------------------------------------------------------

# What its row holds: raypkg.methods.deltagrad.requests.Outcome.metrics plus score and work_speedup.
METRICS = ("score", "work_speedup", "n_ids", "time_baseline", "time_deltagrad", "speedup", "dist_U_star", "dist_I_U",
           "dist_I_star", "dist_ratio", "acc_original", "acc_baseline", "acc_deltagrad", "explicit_steps",
           "approx_steps", "skipped_steps", "pairs_skipped", "max_rel_grad_err")


def serve_request(run: Run) -> None:
    """Train (or open) the cached run, serve the request with the baseline and DeltaGrad, log the row.

    The run trains a small cached run itself (digits by default, in a temporary directory)
    unless ``run`` names an existing one (an absolute path: Tune trials do not run in the
    caller's directory). Its row: time, distances and ``score``, the speed-up when
    ||w^I - w^U|| <= max_ratio ||w^U - w*||, else 0 (a fast wrong answer is worth nothing)."""
    import torch

    from raypkg.methods.deltagrad.exact import ExactGradients
    from raypkg.methods.deltagrad.replay import Request
    from raypkg.methods.deltagrad.requests import addition_request, deletion_ids, measure_request
    from raypkg.methods.deltagrad.trajectory import Trajectory
    from raypkg.methods.deltagrad.workload import cached_workload, load_workload, train_trajectory

    cfg = run.cfg
    device = torch.device("cpu")  # exact replay in float64 on the CPU
    with tempfile.TemporaryDirectory(prefix="effray-deltagrad-") as tmp:
        if cfg.run:
            traj = Trajectory.open(cfg.run)
            wl = cached_workload(traj, device)
        else:
            train_cfg = cfg.training_config()
            wl = load_workload(cfg.dataset, cfg.model, train_cfg.data_options(), cfg.seed, cfg.dtype, device)
            with run.sink.phase("train"):
                train_trajectory(train_cfg, wl, Path(tmp) / "run", ExactGradients(wl.net, wl.x, wl.y)).finish(False)
            traj = Trajectory.open(Path(tmp) / "run")
        plan = traj.plan()
        if cfg.kind == "delete":
            request = Request("delete", deletion_ids(plan, traj.header.n, ratio=cfg.ratio, seed=cfg.request_seed))
        else:
            request = addition_request(traj, plan, ids=traj.addable(), seed=cfg.request_seed)
        with run.sink.phase("request"):
            metrics = measure_request(traj, request, ExactGradients(wl.net, wl.x, wl.y), wl.evaluate,
                              (cfg.period, cfg.init, cfg.m), cfg.repeat, device)
    ok = metrics["dist_ratio"] is not None and metrics["dist_ratio"] <= cfg.max_ratio
    run.sink.log_metrics({**{k: v for k, v in metrics.items() if v is not None},
                          "score": metrics["speedup"] if ok else 0.0,
                          "work_speedup": (metrics["explicit_steps"] + metrics["approx_steps"]) / metrics["explicit_steps"]})


DELTAGRAD = register(Recipe("deltagrad", DeltaGradTuneConfig, [serve_request], load=lambda cfg: None,
                            metrics=METRICS))
