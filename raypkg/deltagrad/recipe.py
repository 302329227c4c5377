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
"""

from __future__ import annotations

import dataclasses
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from raypkg.deltagrad import METHODS
from raypkg.deltagrad.config import DeltaGradConfig, DeltaGradTuneConfig, OnlineSettings, RequestSettings
from raypkg.engine.config import check_field_types, setting
from raypkg.errors import UsageError, choose
from raypkg.paths import check_run_name
from raypkg.recipe import Recipe, Run, register

# ----- configs ----------------------------------------------------------------------------------


@dataclass
class ExactGradientSettings:
    """How exact gradient sums are computed (``raypkg.deltagrad.exact``): in-process, or as
    partial sums over Ray shard actors; and torch's threads."""

    actors: int = setting(0, "Exact gradients as partial sums over K Ray shard actors (0: in-process).")
    threads: int | None = setting(None, "torch threads (default: 1 for small steps, else torch's default).")

    def check_gradients(self) -> None:
        if self.actors < 0:
            raise UsageError(f"--actors must be >= 0, got {self.actors}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")


@dataclass
class UnlearnTrainConfig(ExactGradientSettings, DeltaGradConfig):
    """`effray unlearn train`: the training run (DeltaGradConfig) and its exact gradients."""

    def validate(self) -> "UnlearnTrainConfig":
        super().validate()
        self.check_gradients()
        return self


@dataclass
class CachedRunConfig(ExactGradientSettings):
    """A run served from a cached DeltaGrad run ``run`` (its directory or trajectory/).
    ``resolved()`` fills in what that run was trained on (dataset, model, label noise) and
    ``out``, where this run's directory goes: the cached run's ``FOLDER``."""

    FOLDER: ClassVar[str] = "requests"

    run: str | None = setting(None, "The cached run (`effray unlearn train`'s run directory).", cli=False)
    use_gpu: bool | None = setting(None, "Device (default: GPU if present).", flag="--gpu/--cpu")
    name: str | None = setting(None, "Name of the request's directory under RUN/requests.")
    wandb: str = setting("offline", "W&B mode.", choices=("offline", "online", "disabled"))
    # filled in by resolved(): what the cached run was trained on, and where this run's directory goes
    dataset: str | None = setting(None, cli=False)
    model: str | None = setting(None, cli=False)
    label_noise: float = setting(0.0, cli=False)
    out: str | None = setting(None, cli=False)
    # the rest of what the run directory (raypkg.recipe.run_directory) reads
    wandb_project: str = setting("effray", cli=False)
    storage: str | None = setting(None, cli=False)
    keep_checkpoints: bool = setting(False, cli=False)

    def resolved(self) -> "CachedRunConfig":
        """A copy with the cached run's dataset, model and label noise, and ``out``, filled in
        (from its header, unverified: ``load`` verifies the run before anything uses it)."""
        check_field_types(self)
        if self.run is None:
            return dataclasses.replace(self)
        return dataclasses.replace(self, **trained_on(self.run),
                                   out=self.out or str(run_root(self.run) / self.FOLDER))

    def validate(self) -> "CachedRunConfig":
        from raypkg.deltagrad.trajectory import check_is_run

        if not self.run:
            raise UsageError("give the cached run: the run directory of `effray unlearn train`")
        check_is_run(self.run)  # before its folder is probed for this run's directory
        self.check_gradients()
        choose("wandb mode", self.wandb, ("offline", "online", "disabled"))
        check_run_name(self.name)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_root(run: str | Path) -> Path:
    """The run directory holding ``run``'s trajectory (requests and streams are written beside it)."""
    from raypkg.deltagrad.trajectory import trajectory_dir

    path = trajectory_dir(run)
    return path.parent if path.name == "trajectory" else path


def trained_on(run: str | Path) -> dict:
    """The dataset, model and label noise in ``run``'s trajectory header (none when it has no
    readable header: opening the run then refuses it in one line)."""
    import json

    from raypkg.deltagrad.trajectory import HEADER, trajectory_dir

    try:
        header = json.loads((trajectory_dir(run) / HEADER).read_text())
        data = header.get("data") or {}
        return {"dataset": header["dataset"], "model": header["model"],
                "label_noise": data.get("label_noise", 0.0)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


@dataclass
class RequestConfig(CachedRunConfig, RequestSettings):
    """`effray unlearn delete` / `add`: one request (``kind``), its ids (``ids_file`` or a
    random ``ratio``), DeltaGrad's settings (RequestSettings) and which ``method`` serves it."""

    kind: str = setting("delete", "Delete training samples or add held-out ones.", choices=("delete", "add"),
                        cli=False)
    ids_file: str | None = setting(None, "File of training-set ids.", cli=False)
    method: str = setting("both", "DeltaGrad, the baseline retrain, or both side by side.", choices=METHODS)

    def validate(self) -> "RequestConfig":
        self.check_request()
        super().validate()
        choose("request kind", self.kind, ("delete", "add"))
        choose("method", self.method, METHODS)
        return self


@dataclass
class OnlineConfig(CachedRunConfig, OnlineSettings):
    """`effray unlearn online`: a stream of ``requests`` requests of one ``kind``, each
    ``ratio_per_request`` of the training set or ``samples_per_request`` samples."""

    FOLDER: ClassVar[str] = "online"

    name: str | None = setting(None, "Name of the stream's directory under RUN/online.")
    requests: int = setting(10, "Requests in the stream.")
    ratio_per_request: float | None = setting(None, "Each request's size as a fraction of the training set.")
    samples_per_request: int | None = setting(None, "Each request's size in samples (default 1).")
    kind: str = setting("delete", "Each request deletes training samples or adds held-out ones.",
                        choices=("delete", "add"))
    method: str = setting("both", "both: also K sequential exact retrains, for time and distance.",
                          choices=("deltagrad", "both"))
    progress: bool = setting(True, "A progress bar advancing per request (with its seconds and ||wI - wU||).")

    def validate(self) -> "OnlineConfig":
        self.check_request()
        super().validate()
        choose("request kind", self.kind, ("delete", "add"))
        choose("method", self.method, ("deltagrad", "both"))
        if self.requests < 1:
            raise UsageError(f"--requests must be >= 1, got {self.requests}")
        if self.ratio_per_request is not None and self.samples_per_request is not None:
            raise UsageError("give at most one of --ratio-per-request and --samples-per-request")
        if self.ratio_per_request is not None and not 0 < self.ratio_per_request < 1:
            raise UsageError(f"--ratio-per-request must be in (0, 1), got {self.ratio_per_request}")
        if self.samples_per_request is not None and self.samples_per_request < 1:
            raise UsageError(f"--samples-per-request must be >= 1, got {self.samples_per_request}")
        return self


# ----- what a stage reads and where it writes ------------------------------------------------------


@dataclass
class CachedRun:
    """A cached run opened and checked before any output (a request recipe's ``load``): its
    trajectory and batch plan, its data and model, and what is asked of it."""

    traj: Any  # raypkg.deltagrad.trajectory.Trajectory, read-only
    plan: Any  # unlearn-request: its ReplayBatches, which the request was checked against
    workload: Any  # raypkg.deltagrad.workload.Workload
    request: Any = None  # unlearn-request: the checked raypkg.deltagrad.replay.Request
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
    from raypkg.deltagrad.exact import make_gradients
    from raypkg.deltagrad.workload import set_threads

    set_threads(cfg.threads, wl.net, batch_rows)
    grads = make_gradients(wl.net, wl.x, wl.y, cfg.actors)
    try:
        yield grads
    finally:
        grads.close()


# ----- unlearn-train ----------------------------------------------------------------------------


def load_training(cfg: UnlearnTrainConfig):
    """The flattened data in the run's dtype on its device, and the seeded model as a FlatNet."""
    from raypkg.deltagrad.workload import load_workload
    from raypkg.engine.loop import pick_device

    return load_workload(cfg.dataset, cfg.model, cfg.data_options(), cfg.seed, cfg.dtype, pick_device(cfg.use_gpu))


def check_holdout(cfg: UnlearnTrainConfig, wl) -> None:
    """The holdout leaves samples to train on and holds out at least one when asked."""
    from raypkg.deltagrad.workload import choose_holdout

    choose_holdout(wl.n, cfg.holdout, cfg.seed)


def train_and_cache(run: Run) -> None:
    """Plain SGD (GD) from the seeded w_0, caching w_t, g_t, lr_t and the batch order in
    RUN/trajectory (what Algorithm 1 of Wu et al. 2020 replays); then each epoch's test
    metrics, and the final w*'s as the run's."""
    from raypkg.deltagrad.workload import train_trajectory

    cfg, wl = run.cfg, run.data
    with run_folder(run) as folder:
        with exact_gradients(cfg, wl, cfg.batch_size or wl.n) as grads, run.sink.phase("train"):
            traj = train_trajectory(cfg, wl, folder / "trajectory", grads, progress=cfg.progress)
        with run.sink.phase("eval"):
            h = traj.header
            for epoch in range(h.epochs + 1):
                metrics = wl.evaluate(traj.w[epoch * h.steps_per_epoch].to(run.device))
                run.sink.log_metrics({"epoch": epoch, "lr": h.lrs[min(epoch, h.epochs - 1) * h.steps_per_epoch],
                                      "test_acc": metrics["acc"], "test_loss": metrics["loss"]})
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
    from raypkg.deltagrad.requests import checked_request
    from raypkg.deltagrad.trajectory import Trajectory
    from raypkg.deltagrad.workload import cached_workload
    from raypkg.engine.loop import pick_device

    traj = Trajectory.open(cfg.run)
    plan = traj.plan()
    request = checked_request(traj, plan, cfg.kind, cfg.ids_file, cfg.ratio, cfg.request_seed)
    return CachedRun(traj, plan, cached_workload(traj, pick_device(cfg.use_gpu)), request=request)


def compare_request(run: Run) -> None:
    """Serve the request with DeltaGrad and/or the baseline retrain (Wu et al. 2020,
    Algorithm 1, against retraining from scratch); save the ids (ids.parquet), both answers
    (weights.pt) and the comparison."""
    from raypkg.deltagrad.requests import serve

    cfg, cached = run.cfg, run.data
    traj, request, wl = cached.traj, cached.request, cached.workload
    h = traj.header
    with exact_gradients(cfg, wl, h.batch_size or h.n_members) as grads, run.sink.phase("request"):
        outcome = serve(traj, cached.plan, request, grads, cfg.method, period=cfg.period, init=cfg.init, m=cfg.m,
                        device=run.device, eps=cfg.eps)
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
    from raypkg.deltagrad.online import request_size
    from raypkg.deltagrad.trajectory import Trajectory
    from raypkg.deltagrad.workload import cached_workload
    from raypkg.engine.loop import pick_device

    traj = Trajectory.open(cfg.run)
    count = request_size(traj, cfg.kind, cfg.requests, cfg.ratio_per_request, cfg.samples_per_request)
    return CachedRun(traj, None, cached_workload(traj, pick_device(cfg.use_gpu)), per_request=count)


def serve_stream(run: Run) -> None:
    """Serve the stream on a copy of the trajectory (RUN/online/<name>/trajectory), each
    request from the previous answer (``raypkg.deltagrad.online``): a metrics row per
    request, requests.parquet, and the totals."""
    from tqdm.auto import tqdm

    from raypkg.deltagrad.online import online_summary, run_online

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
                                         seed=cfg.request_seed, with_baseline=cfg.method == "both",
                                         device=run.device, on_request=on_request)
            work.finish()
    run.sink.write_table("requests.parquet", {k: [r.get(k) for r in rows] for k in rows[-1]})
    with run.sink.phase("eval"):
        summary = online_summary(rows, w, wU, traj, wl, run.device)
    run.note(test_acc=summary["acc_deltagrad"], kind=cfg.kind, per_request=cached.per_request, **summary)


UNLEARN_REQUEST = register(Recipe("unlearn-request", RequestConfig, [compare_request],
                                  label=lambda cfg: f"deltagrad-{cfg.kind}", load=open_request, metrics=()))
# A stream's metrics row: raypkg.deltagrad.online.run_online's, less the ids.
UNLEARN_ONLINE = register(Recipe("unlearn-online", OnlineConfig, [serve_stream], label=lambda cfg: "deltagrad-online",
                                 load=open_stream,
                                 metrics=("request", "kind", "n_ids", "time_deltagrad", "retrained", "max_rel_grad_err",
                                          "time_baseline", "dist_I_U", "dist_U_star")))


# ----- deltagrad: `effray tune deltagrad` -----------------------------------------------------------

# What its row holds: raypkg.deltagrad.requests.Outcome.metrics plus score and work_speedup.
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

    from raypkg.deltagrad.exact import ExactGradients
    from raypkg.deltagrad.replay import Request
    from raypkg.deltagrad.requests import addition_request, deletion_ids, measure
    from raypkg.deltagrad.trajectory import Trajectory
    from raypkg.deltagrad.workload import cached_workload, load_workload, train_trajectory

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
            metrics = measure(traj, request, ExactGradients(wl.net, wl.x, wl.y), wl.evaluate,
                              (cfg.period, cfg.init, cfg.m), cfg.repeat, device)
    ok = metrics["dist_ratio"] is not None and metrics["dist_ratio"] <= cfg.max_ratio
    run.sink.log_metrics({**{k: v for k, v in metrics.items() if v is not None},
                          "score": metrics["speedup"] if ok else 0.0,
                          "work_speedup": (metrics["explicit_steps"] + metrics["approx_steps"]) / metrics["explicit_steps"]})


DELTAGRAD = register(Recipe("deltagrad", DeltaGradTuneConfig, [serve_request], load=lambda cfg: None,
                            metrics=METRICS))
