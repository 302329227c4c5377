"""The Ray Train placements of ``raypkg.engine.trainer``: TorchTrainer workers running ``fit``.

DDP (``fit_on_ray_train``): every worker runs the same ``fit`` as the in-process path on
its DistributedSampler-style share of each epoch (gloo on CPU, nccl + bf16 autocast on
GPU). After each epoch rank 0 saves the full training state (model, optimizer, callback
and plan states, epoch, history) as a checkpoint; when a worker dies, Ray Train restarts
the group (``FailureConfig``) and every worker resumes from that state.

Ensemble (``ensemble_on_ray_train``): worker w trains shards w, w + W, ... of an
ensemble, each its own model with ``train_shard`` (``raypkg.engine.ensemble``; no DDP,
no gradient sync); after each round every worker checkpoints the shards it finished, so
a restart redoes only the rest.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from raypkg.checksums import verify_sidecar, write_sidecar
from raypkg.data.augment import CropFlip
from raypkg.data.base import DataSplits
from raypkg.distributed.placement import record_nodes, resources
from raypkg.distributed.ray_internals import (
    file_rendezvous_config,
    quiet_train_worker_logs,
    skip_train_sigint_handler,
)
from raypkg.engine.callbacks import Callback, TrainContext
from raypkg.engine.config import TrainConfig
from raypkg.engine.ensemble import CallbackFactory, EnsembleResult, train_shard
from raypkg.engine.execution import decide_threads, to_memory_format
from raypkg.engine.loop import Ranks, fit, seed_everything, training_state
from raypkg.engine.placement import check_decided, place, refuse_shared_ddp
from raypkg.engine.plans import BatchPlan
from raypkg.errors import RunFailed, UsageError
from raypkg.models.registry import build_model
from raypkg.plugins import import_on_worker

STATE_FILE = "state.pt"
ENSEMBLE_FILE = "ensemble.pt"  # an ensemble checkpoint's restart count, beside its shard-K.pt files
# Test hook: "EPOCH:MARKER" makes the last worker die once at the start of EPOCH (0-based;
# an ensemble's round); the marker file records that it already happened.
FAULT_ENV = "EFFRAY_INJECT_WORKER_FAILURE"
# ray.train.report blocks until the controller polls the workers, every
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default): 2 s per reported epoch. Poll faster
# unless the user chose a value (the variable travels from the driver to the workers).
HEALTH_CHECK_INTERVAL_S = "0.2"


@dataclass
class RayTrainOutcome:
    model_state: dict
    history: list[dict]
    callback_states: list[dict]
    restarts: int
    nodes: list[str]  # the Ray node id of each rank of the last worker group
    precision: str = "fp32"  # what the ranks ran (``auto`` decided before they started)
    memory_format: str = "contiguous"


def say(line: str) -> None:
    """One progress line from a worker. Not ``print``: Ray Train patches it to log the line
    and also print it when stdout is redirected, as it is in a Ray worker (two lines)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def save_state(state: dict, directory: str | Path, name: str = STATE_FILE) -> None:
    """A checkpoint file and its checksum beside it."""
    torch.save(state, Path(directory) / name)
    write_sidecar(Path(directory) / name)


def load_state(directory: str | Path, name: str = STATE_FILE) -> dict:
    """A checkpoint file, refused with one line when its checksum does not match."""
    verify_sidecar(Path(directory) / name, "the Ray Train checkpoint")
    return torch.load(Path(directory) / name, map_location="cpu", weights_only=True)


class InjectFailure(Callback):
    """Test hook (FAULT_ENV): the last worker exits at the start of an epoch, once.

    It waits first: the controller registers an epoch's checkpoint only once a poll has
    collected every rank's report, and rank 0 reports after writing the checkpoint. A worker
    that exits at once can be seen dead in the same poll that misses rank 0's report; the
    run then restarts from scratch (seen in CI). Ten poll intervals let both reports in."""

    WAIT_S = 10 * float(HEALTH_CHECK_INTERVAL_S)

    def __init__(self, fault: str):
        fail_epoch, self.marker = fault.split(":", 1)
        self.fail_epoch = int(fail_epoch)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self.maybe_fail(ctx.epoch, ctx.rank, ctx.world_size)

    def maybe_fail(self, epoch: int, rank: int, world_size: int) -> None:
        if epoch == self.fail_epoch and rank == world_size - 1 and not Path(self.marker).exists():
            time.sleep(self.WAIT_S)
            Path(self.marker).write_text(f"worker {rank} killed at epoch {epoch}\n")
            os._exit(1)


def rank_nodes() -> list[str]:
    """The Ray node id of every rank of the worker group, in rank order (a collective:
    every rank calls it)."""
    import ray
    import torch.distributed as dist

    node = ray.get_runtime_context().get_node_id()
    if not dist.is_initialized():
        return [node]
    nodes = [None] * dist.get_world_size()
    dist.all_gather_object(nodes, node)
    return nodes


class ReportEachEpoch(Callback):
    """Ray Train's end of every epoch: rank 0 saves the training state as a checkpoint and
    prints a progress line; every rank calls ``ray.train.report`` (a barrier)."""

    def __init__(self, restarts: int, nodes: list[str]):
        self.restarts, self.nodes = restarts, nodes

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        import ray.train

        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if ctx.is_main:
                state = {"training": training_state(ctx), "restarts": self.restarts, "nodes": self.nodes}
                save_state(state, tmp)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
                shown = "  ".join(f"{k} {row[k]:.4f}" for k in ("train_loss", "test_acc") if k in row)
                seconds = row["epoch_s"]
                took = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
                say(f"[ray train] epoch {row['epoch']}/{ctx.cfg.epochs}  {shown}  ({took})")
            ray.train.report({k: v for k, v in row.items() if isinstance(v, (int, float))}, checkpoint=checkpoint)


def ddp_worker(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch

    quiet_train_worker_logs()
    import_on_worker(config["plugins"])  # before the job, which pickles a plug-in's classes by its module
    job = ray.get(config["job_ref"])
    cfg: TrainConfig = job["cfg"]  # the caller's config, of its own class (CoresetConfig, ...)
    data: DataSplits = job["data"]
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(config["threads"])

    resume, restarts = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            saved = load_state(d)
        resume, restarts = saved["training"], saved["restarts"] + 1
    seed_everything(cfg.seed)
    model = to_memory_format(build_model(cfg.model, data.input_shape, data.num_classes), cfg.memory_format)
    module = ray.train.torch.prepare_model(model)  # moves to the device; DDP when world_size > 1
    callbacks = [*job["callbacks"], *([InjectFailure(config["fault"])] if config["fault"] else []),
                 ReportEachEpoch(restarts, rank_nodes())]
    fit(model, data.train.to(device), data.test.to(device) if rank == 0 else None, cfg, augment=job["augment"],
        callbacks=callbacks, plan=job["plan"], resume=resume, ranks=Ranks(module, rank, world_size))


def ensemble_worker(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch

    quiet_train_worker_logs()
    import_on_worker(config["plugins"])
    job = ray.get(config["job_ref"])
    cfg: TrainConfig = job["cfg"]  # the caller's config, of its own class (CoresetConfig, ...)
    shards: list[torch.Tensor] = job["shards"]
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(config["threads"])

    fault = InjectFailure(config["fault"]) if config["fault"] else None
    nodes = rank_nodes()

    done: dict[int, dict] = {}  # shard -> {"model": state_dict, "history": rows}
    restarts = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            for path in Path(d).glob("shard-*.pt"):
                done[int(path.stem.split("-")[1])] = load_state(d, path.name)
            restarts = load_state(d, ENSEMBLE_FILE)["restarts"] + 1
    for round_ in range(math.ceil(len(shards) / world_size)):
        if fault:
            fault.maybe_fail(round_, rank, world_size)
        k = round_ * world_size + rank
        if k < len(shards) and k not in done:
            state, history = train_shard(cfg, job["data"], shards[k], k, device=device, augment=job["augment"],
                                         callbacks_for=job["callbacks_for"])
            done[k] = {"model": state, "history": history}
            say(f"[ray train] shard {k + 1}/{len(shards)} done on worker {rank}")
        with tempfile.TemporaryDirectory() as tmp:
            for shard, entry in done.items():  # files of all ranks land in one checkpoint directory
                save_state(entry, tmp, f"shard-{shard}.pt")
            if rank == 0:
                save_state({"restarts": restarts, "nodes": nodes}, tmp, ENSEMBLE_FILE)
            ray.train.report({"round": round_ + 1},
                             checkpoint=ray.train.Checkpoint.from_directory(tmp) if done else None)


@contextlib.contextmanager
def run_storage(storage: str | Path | None):
    """Where Ray Train keeps the run's checkpoints: ``storage`` (a run directory's, or a
    URI of --storage; kept), or a temporary directory removed once the caller has read the
    final checkpoint."""
    if storage is not None:
        yield storage
        return
    scratch = Path(tempfile.mkdtemp(prefix="effray-ray-train-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(worker, cfg: TrainConfig, job: dict, storage: str | Path, name: str, threads: int | None = None,
         ensemble: bool = False):
    """Build and fit a TorchTrainer of ``cfg.workers`` workers running ``worker(job)``,
    checkpointing to ``storage`` (a path or a URI); ``threads``: torch threads per worker
    (default: ``cfg.threads``, as decided by ``decide_threads``). ``cfg``'s execution is
    decided already (``raypkg.engine.placement.decide_execution``). On GPUs, a DDP rank takes
    a whole GPU (NCCL: refused where ranks would share one); an ``ensemble``'s ranks, which
    sync no gradients, share them (``gpu_share``) in a gloo process group. Returns Ray
    Train's result and the config the ranks ran."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    from raypkg.distributed.cluster import connect_ray, joining_env, stop_ray_on_interrupt
    from raypkg.distributed.node_storage import check_shared_storage, check_storage_on_nodes
    from raypkg.distributed.placement import MIN_CPUS_PER_WORKER, check_placement, ray_strategy
    from raypkg.storage import ray_train_storage

    connect_ray()
    check_shared_storage(getattr(cfg, "storage", None), "Ray Train checkpoints")
    check_storage_on_nodes(storage if getattr(cfg, "storage", None) else None)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    placement = place(cfg)
    check_decided(cfg, placement.device)
    use_gpu = placement.device == "cuda"
    if not ensemble:
        refuse_shared_ddp(placement)
    gpus_per_worker = (placement.ensemble_gpu_share if ensemble else 1.0) if use_gpu else 0.0
    cpus = ray.cluster_resources().get("CPU", 1)
    # Streamed data is read by Ray Data tasks beside the workers: leave them a core.
    data_cpus = 1 if job["data"].train.streamed and not use_gpu else 0
    cpus_per_worker = cfg.cpus_per_worker or (
        1 if use_gpu else max(min((cpus - data_cpus) / cfg.workers, 4), MIN_CPUS_PER_WORKER))
    check_placement(cfg.workers, cpus_per_worker, gpus_per_worker, cfg.placement)
    # The threads the driver decided for this run (config.yaml records them), as in process:
    # one worker sums in the order the in-process run does (raypkg.engine.execution.decide_threads).
    threads = threads or decide_threads(cfg).threads
    # ranks sharing a GPU cannot form an NCCL group: the ensemble's only collective (its
    # ranks' node ids) goes through gloo
    backend = "gloo" if ensemble else None
    # A private local Ray (joining_env names its loopback switch) is this machine only: the
    # process group meets through a file, so no worker listens beyond loopback (torch's
    # rendezvous store would listen on every interface).
    trainer = TorchTrainer(
        worker,
        torch_config=file_rendezvous_config(backend) if joining_env() else TorchConfig(backend=backend),
        train_loop_config={"job_ref": ray.put({**job, "cfg": cfg}), "threads": threads,
                           "fault": os.environ.get(FAULT_ENV), "plugins": plugin_methods(cfg)},
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu,
                                     resources_per_worker=resources(cpus_per_worker, gpus_per_worker),
                                     placement_strategy=ray_strategy(cfg.placement)),
        # A fresh name per call: Ray Train resumes a run of the same name in the same storage,
        # so a second call with one storage would return the first call's result.
        run_config=RunConfig(name=f"{name}-{uuid.uuid4().hex[:8]}", **ray_train_storage(storage),
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             logging_config=LoggingConfig(log_level="WARNING")),  # not the worker group's start
    )
    skip_train_sigint_handler(trainer)  # Ctrl-C raises KeyboardInterrupt here
    try:
        with stop_ray_on_interrupt():
            return trainer.fit(), cfg
    except TrainingFailedError as e:
        refused = worker_refusal(e)
        if refused is not None:  # a plug-in a worker cannot import (import_on_worker, build_model): its one line
            raise RunFailed(str(refused)) from None
        raise RunFailed(f"Ray Train stopped after --max-failures {cfg.max_failures} restart(s): "
                        f"{failure_summary(e)}") from None


def plugin_methods(cfg) -> list[tuple[str, str, str]]:
    """``(kind, name, MODULE:CLASS)`` of each plug-in method ``cfg`` trains with (its own, its
    stack's: a name that is an import path or an entry point, ``plugins.plugin_target``), for
    the workers to import before they read their job (``import_on_worker``). The engine reads
    no method registry: it sits below it."""
    from raypkg.plugins import plugin_target

    names = [getattr(type(cfg), "METHOD", None), *getattr(cfg, "stack", ())]
    return [("method", name, target.replace(" ", "")) for name in dict.fromkeys(names) if isinstance(name, str)
            and (target := plugin_target("method", name)) is not None]


def worker_refusal(error: Exception) -> UsageError | None:
    """The one-line ``UsageError`` a worker of a failed Ray Train run raised (a plug-in it
    cannot import), as Ray Train returns it (the worker's exception, or wrapped with its
    traceback); None when no worker raised one."""
    failures = list((getattr(error, "worker_failures", None) or {}).values()) or [error.__cause__]
    for failure in failures:
        for exc in (failure, getattr(failure, "_base_exc", None), getattr(failure, "__cause__", None)):
            if isinstance(exc, UsageError):
                return exc
    return None


def failure_summary(error: Exception, width: int = 160) -> str:
    """One line from Ray Train's multi-line failure: each failed rank's first line and the
    reason it died (e.g. "worker 1: A worker health check failed. (The actor died
    unexpectedly before finishing this task.)")."""
    def first_line(exc: BaseException) -> str:
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return text if len(text) <= width else text[:width - 3] + "..."

    failures = getattr(error, "worker_failures", None) or {}
    if not failures:
        return first_line(getattr(error, "controller_failure", error))
    parts = []
    for rank, exc in sorted(failures.items()):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        died = next((line for line in lines[1:] if "died" in line), None)  # below Ray's worker info
        cause = exc.__cause__ or exc.__context__
        detail = died or (first_line(cause) if cause is not None else None)
        parts.append(f"worker {rank}: {first_line(exc)}" + (f" ({detail[:width]})" if detail else ""))
    return "; ".join(parts)


def fit_on_ray_train(cfg: TrainConfig, data: DataSplits, *, storage: str | Path | None = None,
                     callbacks: Sequence[Callback] = (), plan: BatchPlan | None = None,
                     augment: CropFlip | None = None, threads: int | None = None) -> RayTrainOutcome:
    """``fit`` on ``cfg.workers`` DDP workers; the final state as rank 0 checkpointed it."""
    job = {"data": data, "callbacks": list(callbacks), "plan": plan, "augment": augment}
    with run_storage(storage) as where:
        result, cfg = _run(ddp_worker, cfg, job, where, "ray_train", threads)
        with result.checkpoint.as_directory() as d:
            saved = load_state(d)
    state = saved["training"]
    record_nodes("train", saved["nodes"])
    return RayTrainOutcome(state["model"], state["history"], state["callbacks"][:len(callbacks)], saved["restarts"],
                           saved["nodes"], cfg.precision, cfg.memory_format)


def ensemble_on_ray_train(cfg: TrainConfig, data: DataSplits, shards: list[torch.Tensor], *,
                          storage: str | Path | None = None, augment: CropFlip | None = None,
                          callbacks_for: CallbackFactory | None = None) -> EnsembleResult:
    """The ensemble placement on ``cfg.workers`` workers: every shard's state_dict and
    history, and how often the worker group restarted."""
    job = {"data": data, "shards": [s.cpu() for s in shards], "augment": augment, "callbacks_for": callbacks_for}
    with run_storage(storage) as where:
        result, _ = _run(ensemble_worker, cfg, job, where, "ray_train_ensemble", ensemble=True)
        with result.checkpoint.as_directory() as d:
            entries = [load_state(d, f"shard-{k}.pt") for k in range(len(shards))]
            group = load_state(d, ENSEMBLE_FILE)
    record_nodes("ensemble", group["nodes"])
    return EnsembleResult([e["model"] for e in entries], [e["history"] for e in entries], group["restarts"])
