"""Full training on Ray Train: TorchTrainer, DDP (gloo on CPU, nccl + AMP on GPU),
a checkpoint every epoch, and restarts from the last one when a worker dies.

Every worker runs the same ``train_epoch`` as the in-process path on its
DistributedSampler-style share of each epoch (``epoch_permutation`` with its rank).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from raypkg.checksums import verify_sidecar, write_sidecar
from raypkg.data.augment import CropFlip
from raypkg.data.base import DataSplits
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import evaluate, make_optimizer, seed_everything, train_epoch
from raypkg.models.registry import build_model

STATE_FILE = "state.pt"
# Test hook: "EPOCH:MARKER" makes the last worker die once at the start of EPOCH
# (the marker file records that it already happened).
FAULT_ENV = "EFFRAY_INJECT_WORKER_FAILURE"
# ray.train.report blocks until the controller polls the workers, every
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default): 2 s per reported epoch. Poll faster
# unless the user chose a value (the variable travels from the driver to the workers).
HEALTH_CHECK_INTERVAL_S = "0.2"


def _quiet_ray_train_logs() -> None:
    """Ray Train logs every report and checkpoint at INFO level from the workers: lines
    per epoch and rank. Keep warnings only (these modules name their loggers oddly)."""
    import logging

    from ray.train.v2._internal.execution import context, storage

    for module in (context, storage):
        for name in (module.__file__, module.__name__):
            logging.getLogger(name).setLevel(logging.WARNING)


def _maybe_fail(fault: str | None, epoch: int, rank: int, world_size: int) -> None:
    if not fault:
        return
    fail_epoch, marker = fault.split(":", 1)
    if epoch == int(fail_epoch) and rank == world_size - 1 and not Path(marker).exists():
        Path(marker).write_text(f"worker {rank} killed at epoch {epoch}\n")
        os._exit(1)


def worker_loop(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch

    _quiet_ray_train_logs()
    cfg = TrainConfig(**config["cfg"])
    data: DataSplits = ray.get(config["data_ref"])
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, config["threads"]))

    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    optimizer = make_optimizer(model, cfg)
    start_epoch, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            verify_sidecar(Path(d) / STATE_FILE, "the Ray Train checkpoint")
            state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
    ddp_model = ray.train.torch.prepare_model(model)
    augment = config["augment"]
    weights = ray.get(config["weights_ref"]) if config["weights_ref"] is not None else None

    for epoch in range(start_epoch, cfg.epochs):
        _maybe_fail(config.get("fault"), epoch, rank, world_size)
        t0 = time.perf_counter()
        row = {"epoch": epoch + 1, **train_epoch(ddp_model, optimizer, data.train, cfg, epoch, device=device,
                                                  weights=weights, augment=augment, rank=rank,
                                                  world_size=world_size)}
        row["epoch_s"] = time.perf_counter() - t0
        row["lr"] = optimizer.param_groups[0]["lr"]
        row.update({f"test_{k}": v for k, v in evaluate(model, data.test, device).items()})
        history.append(row)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "epoch": epoch + 1, "history": history}, Path(tmp) / STATE_FILE)
                write_sidecar(Path(tmp) / STATE_FILE)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(row, checkpoint=ckpt)


def fit_on_ray_train(cfg: TrainConfig, data: DataSplits, storage: Path, augment: CropFlip | None,
                     weights: torch.Tensor | None = None, threads: int | None = None
                     ) -> tuple[dict, list[dict]]:
    """Run ``cfg.workers`` Ray Train workers; return the final state_dict and per-epoch rows.

    ``weights`` (aligned with ``data.train``) make each worker's loss the weighted mean
    over its batch, as in-process (coreset training). ``threads``: torch threads per
    worker (default: its CPU share)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from raypkg.cluster import check_placement

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    use_gpu = cfg.use_gpu if cfg.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    cpus = ray.cluster_resources().get("CPU", 1)
    cpus_per_worker = 1 if use_gpu else max(min(cpus / cfg.workers, 4), 0.5)
    check_placement(cfg.workers, cpus_per_worker, 1 if use_gpu else 0)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"cfg": cfg.to_dict(), "data_ref": ray.put(data), "augment": augment,
                           "weights_ref": None if weights is None else ray.put(weights.cpu()),
                           "threads": threads or int(cpus_per_worker), "fault": os.environ.get(FAULT_ENV)},
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(name="ray_train", storage_path=str(storage.resolve()),
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        verify_sidecar(Path(d) / STATE_FILE, "the Ray Train checkpoint")
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
    return state["model"], state["history"]
