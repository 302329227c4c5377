"""What a DeltaGrad run trains on: its config, data and model, and the training itself.

``DeltaGradConfig`` is the one config of `effray unlearn train` (YAML file and flags,
saved as the run's config.yaml). ``load_workload`` loads the (flattened) data in the
run's dtype on its device and describes the model as a ``FlatNet``;
``train_trajectory`` runs plain SGD (or GD) from the seeded initialisation and caches
the trajectory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raypkg.deltagrad.flatnet import FlatNet, flatten_params
from raypkg.deltagrad.replay import replay
from raypkg.deltagrad.trajectory import (DTYPES, Trajectory, TrajectoryHeader, lr_per_epoch,
                                         steps_per_epoch)
from raypkg.engine.config import check_data_dir, check_field_types, check_lr_lists, check_output
from raypkg.errors import UsageError, choose


@dataclass
class DeltaGradConfig:
    dataset: str = "digits"
    model: str = "logreg"
    epochs: int = 20
    batch_size: int = 256  # 0: full-batch gradient descent
    lr: list[float] = field(default_factory=lambda: [0.1])
    lrlen: list[int] = field(default_factory=list)
    weight_decay: float = 1e-4
    momentum: float = 0.0  # anything else is refused: it breaks exact replay
    augment: bool = False  # refused when true, for the same reason
    holdout: float = 0.0  # fraction of the training split left out: the pool for additions
    seed: int = 0
    dtype: str = "float64"
    use_gpu: bool | None = None
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    normalize: bool = True  # False: pixels in [0, 1] (the paper's MNIST: ToTensor, no Normalize)
    out: str = "runs"
    name: str | None = None
    wandb: str = "offline"
    wandb_project: str = "effray"
    progress: bool = True

    def validate(self) -> "DeltaGradConfig":
        import raypkg.data.sources  # noqa: F401
        import raypkg.models.zoo  # noqa: F401
        from raypkg.data.registry import DATASETS
        from raypkg.models.registry import MODELS

        check_field_types(self)
        choose("dataset", self.dataset, DATASETS)
        choose("model", self.model, MODELS)
        choose("dtype", self.dtype, DTYPES)
        choose("wandb mode", self.wandb, ("offline", "online", "disabled"))
        if self.epochs <= 0:
            raise UsageError(f"epochs must be a positive integer, got {self.epochs}")
        if self.batch_size < 0:
            raise UsageError(f"batch-size must be >= 0 (0 = full-batch GD), got {self.batch_size}")
        if self.momentum != 0:
            raise UsageError(f"--momentum {self.momentum}: DeltaGrad replays plain SGD, and momentum "
                             "breaks exact replay; use --momentum 0")
        if self.augment:
            raise UsageError("--augment: random augmentation breaks exact replay; DeltaGrad needs it off")
        check_lr_lists(self.lr, self.lrlen)
        if self.weight_decay < 0:
            raise UsageError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.holdout < 1:
            raise UsageError(f"--holdout must be in [0, 1), got {self.holdout}")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        check_data_dir(self.data_dir)
        check_output(self.out, self.name)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_options(self) -> dict:
        return {"seed": self.seed, "train_size": self.train_size, "test_size": self.test_size,
                "data_dir": self.data_dir, "normalize": self.normalize}


@dataclass
class Workload:
    net: FlatNet
    model: nn.Module  # the registry model, for load_into / export
    w0: torch.Tensor  # its seeded initialisation, flattened
    x: torch.Tensor
    y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    device: torch.device
    dtype: torch.dtype

    @property
    def n(self) -> int:
        return len(self.y)

    def evaluate(self, w: torch.Tensor) -> dict[str, float]:
        return self.net.evaluate(w, self.test_x, self.test_y)


def load_workload(dataset: str, model: str, data: dict, seed: int, dtype: str,
                  device: torch.device) -> Workload:
    """Flattened data in ``dtype`` on ``device``; the model built after seeding (its w_0)."""
    from raypkg.data.registry import load_dataset

    return workload_from_splits(load_dataset(dataset, flat=True, **data), model, seed, dtype, device)


def workload_from_splits(splits, model: str, seed: int, dtype: str, device: torch.device) -> Workload:
    """``load_workload`` for data already loaded (flat), e.g. shared by several models."""
    from raypkg.engine.loop import seed_everything
    from raypkg.models.registry import build_model

    seed_everything(seed)
    module = build_model(model, splits.input_shape, splits.num_classes)
    net = FlatNet.from_model(module, model)
    dt = DTYPES[dtype]
    return Workload(net, module, flatten_params(module, dt).to(device),
                    splits.train.x.to(device=device, dtype=dt), splits.train.y.to(device),
                    splits.test.x.to(device=device, dtype=dt), splits.test.y.to(device), device, dt)


SMALL_STEP_MACS = 5e7  # below this, one thread: a step is many tiny ops, and extra
# threads only add synchronisation (on a shared CPU, tens of times slower; see the bench notes)


def set_threads(threads: int | None, net: FlatNet, batch_rows: int) -> int:
    """Use ``threads`` if given; else one thread when an exact step is small
    (batch_rows x weights < SMALL_STEP_MACS), torch's default otherwise. Returns the count."""
    if threads is None and batch_rows * sum(i * o for i, o in net.sizes) < SMALL_STEP_MACS:
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def epoch_orders(members: torch.Tensor, epochs: int, batch_size: int, seed: int) -> torch.Tensor:
    """Each epoch's order of the members (the engine's seeded permutations); one row for GD."""
    from raypkg.engine.loop import epoch_permutation

    if batch_size == 0:
        return members.unsqueeze(0)
    return torch.stack([members[epoch_permutation(len(members), seed, e)] for e in range(epochs)])


def choose_holdout(n: int, fraction: float, seed: int) -> torch.Tensor:
    count = int(round(fraction * n))
    if fraction > 0 and count == 0:
        raise UsageError(f"--holdout {fraction} of {n} samples holds out nothing; use a larger fraction")
    if count >= n:
        raise UsageError(f"--holdout {fraction} leaves no samples to train on")
    g = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    return torch.randperm(n, generator=g)[:count].sort().values


def train_trajectory(cfg: DeltaGradConfig, wl: Workload, path: Path, grads,
                     exclude: torch.Tensor | None = None, progress: bool = False) -> Trajectory:
    """Train with plain SGD (GD for batch size 0) and cache the trajectory at ``path``.

    ``exclude``: samples dropped from their batches (the same minibatch sequence
    otherwise): "training from scratch without them", which the baseline must equal.
    """
    holdout = choose_holdout(wl.n, cfg.holdout, cfg.seed)
    keep = torch.ones(wl.n, dtype=torch.bool)
    keep[holdout] = False
    members = torch.nonzero(keep).squeeze(1)
    perms = epoch_orders(members, cfg.epochs, cfg.batch_size, cfg.seed)
    k = steps_per_epoch(len(members), cfg.batch_size)
    per_epoch = lr_per_epoch(cfg.lr, cfg.lrlen, cfg.epochs)
    header = TrajectoryHeader(
        dataset=cfg.dataset, model=cfg.model, data=cfg.data_options(), n=wl.n, p=wl.net.num_params,
        layer_sizes=[list(s) for s in wl.net.sizes], dtype=cfg.dtype, batch_size=cfg.batch_size,
        epochs=cfg.epochs, steps_per_epoch=k, weight_decay=cfg.weight_decay, lr=list(cfg.lr),
        lrlen=list(cfg.lrlen), lrs=[lr for lr in per_epoch for _ in range(k)], seed=cfg.seed,
        n_members=len(members))
    traj = Trajectory.create(path, header, perms, holdout)
    if exclude is not None and len(exclude):
        traj.membership["removed"] = torch.as_tensor(exclude, dtype=torch.long).sort().values
        traj.save_membership()
    replay(traj.plan(), header.lrs, wl.w0, cfg.weight_decay, grads, record=traj, progress=progress)
    return traj
