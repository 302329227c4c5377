"""Where a run trains, and its execution decided there, once.

``place(cfg)`` says where the training steps run: in this process (``workers: 0``) on this
machine's device, or on ``workers`` Ray Train workers, on GPUs when ``use_gpu`` says so
(``--gpu``) or, left unset, when the Ray cluster has GPUs (``cluster_gpus``; the run joins
or starts its Ray to ask). ``decide_execution(cfg, data, placement)`` then replaces
``auto`` precision, memory format (and compile) by what trains there: measured on this
machine's CPU or GPU when the steps run on that kind of device; for GPU workers seen from a
driver without a GPU, fp32 and contiguous, unprobed (the driver cannot time the workers'
GPU, and bf16 is not faster on every GPU: docs/operations.md, "GPUs"). ``Recipe.run``
calls both before any output exists, so config.yaml records the decided values and every
phase (and every rank) runs the same.

GPU shares: DDP ranks need a whole GPU each (NCCL refuses two ranks on one device:
"Duplicate GPU detected"), so ``ddp_workers`` is at most the cluster's whole GPUs; the
ranks of an ensemble (LiPT's shard models: no gradient sync), shard actors and Tune trials
may share GPUs, each asking for ``gpu_share(count, gpus)`` of one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from raypkg.distributed.placement import gpu_share
from raypkg.engine.execution import CompileChoice, Execution, note_trained_at, resolve_for_data
from raypkg.errors import UsageError


def cluster_gpus() -> float:
    """The GPUs of the Ray cluster this run joins (joining or starting it first)."""
    import ray

    from raypkg.distributed.cluster import connect_ray

    connect_ray()
    return float(ray.cluster_resources().get("GPU", 0))


@dataclass(frozen=True)
class Placement:
    """Where the training steps run: ``workers`` Ray Train workers (0: this process) on
    ``device`` ("cpu" or "cuda"); ``gpus``: the Ray cluster's GPUs (asked only for workers)."""

    workers: int = 0
    device: str = "cpu"
    gpus: float = 0.0

    @property
    def on_ray_train(self) -> bool:
        return self.workers > 0

    @property
    def on_gpu_workers(self) -> bool:
        return self.on_ray_train and self.device == "cuda"

    @property
    def ddp_workers(self) -> int:
        """The DDP ranks that can run: one per whole GPU on GPU workers (NCCL), else ``workers``."""
        return min(self.workers, math.floor(self.gpus + 1e-9)) if self.on_gpu_workers else self.workers

    @property
    def ensemble_gpu_share(self) -> float:
        """The GPU share of each ensemble worker (0 on CPU workers)."""
        return gpu_share(self.workers, self.gpus) if self.on_gpu_workers else 0.0

    def ddp_refusal(self) -> str | None:
        """The one line that refuses DDP ranks sharing a GPU, or None when each has its own."""
        if self.ddp_workers >= self.workers or self.ddp_workers < 1:
            return None  # (no GPU at all: check_placement says the cluster lacks GPUs)
        return (f"--workers {self.workers} on GPUs: DDP ranks need a GPU each (NCCL refuses two ranks on one "
                f"device: 'Duplicate GPU detected'), and the Ray cluster has {self.gpus:g}; use --workers "
                f"{self.ddp_workers}, or --cpu")

    def describe(self) -> str:
        if not self.on_ray_train:
            return f"in this process on {self.device}"
        return f"{self.workers} Ray Train worker(s) on {'GPUs' if self.device == 'cuda' else 'CPUs'}"


def place(cfg) -> Placement:
    """``cfg``'s placement: in this process on ``pick_device(use_gpu)``; on Ray Train
    workers (``workers`` > 0) on GPUs when ``use_gpu``, or, unset, when the cluster has any
    (this asks Ray: it joins or starts it)."""
    from raypkg.engine.loop import pick_device

    workers = getattr(cfg, "workers", 0) or 0
    use_gpu = getattr(cfg, "use_gpu", None)
    if not workers:
        return Placement(0, pick_device(use_gpu).type)
    gpus = cluster_gpus() if use_gpu is not False else 0.0
    on_gpus = bool(use_gpu) if use_gpu is not None else gpus > 0
    return Placement(workers, "cuda" if on_gpus else "cpu", gpus)


def driver_device(cfg, placement: Placement) -> torch.device:
    """The device of this process's own phases (warm-ups, selection, evaluation): where the
    steps train when in this process; beside Ray Train workers, this machine's GPU unless
    ``--cpu`` (``--gpu`` asks for the workers' GPUs, not for one here)."""
    if not placement.on_ray_train:
        return torch.device(placement.device)
    refused = getattr(cfg, "use_gpu", None) is False
    return torch.device("cuda" if not refused and torch.cuda.is_available() else "cpu")


UNPROBED = ("GPU workers seen from a driver without a GPU: auto kept unprobed (the driver cannot time their "
            "GPU; bf16 is not faster on every GPU)")


def decide_execution(cfg, data, placement: Placement, **injected) -> tuple[Any, Execution]:
    """``cfg`` with ``auto`` precision, memory format and compile decided for ``placement``,
    and that ``Execution`` (``injected``: ``resolve_execution``'s flags, cache, measurer). The
    one decider: ``Recipe.run`` calls it once, and the ranks run what it chose."""
    if not hasattr(cfg, "precision"):
        return cfg, Execution(reason="not a training config")
    if placement.device == "cuda" and not torch.cuda.is_available():
        kept = {"precision": "fp32", "memory_format": "contiguous", "compile": "off"}
        auto = {k: v for k, v in kept.items() if getattr(cfg, k, None) == "auto"}
        decided = note_trained_at(dataclasses.replace(cfg, **auto))
        kept_auto = {"precision", "memory_format"} & set(auto)
        compiled = CompileChoice(decided.compile, "set", UNPROBED if "compile" in auto else "as set")
        return decided, Execution(decided.precision, decided.memory_format, "set",
                                  reason=UNPROBED if kept_auto else "as set", compile=compiled)
    return resolve_for_data(cfg, data, torch.device(placement.device), **injected)


def check_decided(cfg, device: str = "cpu") -> None:
    """Refuse to start Ray Train on an undecided execution (``decide_execution`` first);
    ``compile`` auto only on GPUs (``fit`` keeps it off on a CPU, untimed)."""
    settings = ("precision", "memory_format", "compile") if device == "cuda" else ("precision", "memory_format")
    undecided = [k for k in settings if getattr(cfg, k, None) == "auto"]
    if undecided:
        raise ValueError(f"Ray Train runs a decided execution: {', '.join(undecided)} still auto; decide it once "
                         "where the placement is known (raypkg.engine.placement.decide_execution), or set it")


def refuse_shared_ddp(placement: Placement) -> None:
    refusal = placement.ddp_refusal()
    if refusal:
        raise UsageError(refusal)
