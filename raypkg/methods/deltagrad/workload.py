"""What a DeltaGrad run trains on: its data and model, and the training itself.

``DeltaGradConfig`` (``raypkg.methods.deltagrad.config``) is the one config of `effray unlearn
train`, its tune trials and its bench. ``load_workload`` loads the (flattened) data in the
run's dtype on its device and describes the model as a ``FlatNet`` (``cached_workload``:
those of a cached run); ``train_trajectory`` runs plain SGD (or GD) from the seeded
initialisation and caches the trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from raypkg.engine.loop import piecewise_lr
from raypkg.errors import UsageError
from raypkg.methods.deltagrad.config import DeltaGradConfig
from raypkg.methods.deltagrad.flatnet import FlatNet, flatten_params
from raypkg.methods.deltagrad.replay import replay
from raypkg.methods.deltagrad.trajectory import DTYPES, Trajectory, TrajectoryHeader, steps_per_epoch


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

    return workload_from_splits(load_dataset(dataset, **{**data, "flat": True}), model, seed, dtype, device)


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


def cached_workload(traj: Trajectory, device: torch.device) -> Workload:
    """The data and model ``traj`` was trained on, refused when they no longer match it."""
    h = traj.header
    wl = load_workload(h.dataset, h.model, h.data, h.seed, h.dtype, device)
    if wl.n != h.n or wl.net.num_params != h.p:
        raise UsageError(f"the data or model no longer match the cached run ({h.dataset}: {wl.n} vs {h.n} "
                         f"samples, {h.model}: {wl.net.num_params} vs {h.p} parameters)")
    return wl


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
    per_epoch = [piecewise_lr(cfg.lr, cfg.lrlen, epoch) for epoch in range(cfg.epochs)]
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
    replay(traj.plan(), header.lrs, wl.w0, cfg.weight_decay, grads, record=traj, progress=progress,
           desc="train")
    return traj


def epoch_metrics(traj: Trajectory, wl: Workload, device) -> list[dict]:
    """``wl``'s test metrics of the cached run's w_0 and of its weights after each epoch."""
    k = traj.header.steps_per_epoch
    return [wl.evaluate(traj.w[epoch * k].to(device)) for epoch in range(traj.header.epochs + 1)]


def instability_warning(metrics: list[dict]) -> str | None:
    """A warning when the test loss of ``epoch_metrics`` rises by over 1% in an epoch: DeltaGrad's
    quasi-Newton steps cannot follow a run that SGD's learning rate makes unstable."""
    rises = [e for e in range(1, len(metrics)) if metrics[e]["loss"] > 1.01 * metrics[e - 1]["loss"]]
    if not rises:
        return None
    return (f"warning: the test loss rises at epoch(s) {rises[:5]}: SGD is unstable at this learning rate, and "
            f"DeltaGrad's quasi-Newton steps cannot follow an unstable run (on standardised digits-aug, lr 0.01 "
            f"behaves like the paper's 0.1 on [0, 1] MNIST pixels)")
