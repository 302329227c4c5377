"""`effray tune deltagrad`: one trial = one (T0, j0, m) on one request (tune_spaces/deltagrad.yaml).

The trial trains a small cached run itself (digits by default, in a temporary
directory of its own process) unless ``run`` names an existing one (an absolute path:
trials do not run in the caller's directory), serves one deletion or addition with
both methods and reports time, distances and ``score``: the speed-up when
||w^I - w^U|| <= max_ratio ||w^U - w*||, else 0 (a fast wrong answer is worth nothing).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from raypkg.tuning import register_tunable


@dataclass
class DeltaGradTuneConfig:
    run: str | None = None
    dataset: str = "digits"
    model: str = "logreg"
    epochs: int = 20
    batch_size: int = 256
    lr: list[float] = field(default_factory=lambda: [0.05, 0.02])
    lrlen: list[int] = field(default_factory=lambda: [10, 10])
    weight_decay: float = 1e-4
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    kind: str = "delete"
    ratio: float = 0.01
    request_seed: int = 1
    period: int = 5
    init: int = 20
    m: int = 2
    eps: float = 1e-8
    max_ratio: float = 0.05
    repeat: int = 3
    progress: bool = False
    wandb: str = "disabled"


@register_tunable("deltagrad", DeltaGradTuneConfig)
def tune_deltagrad(config: dict, report) -> None:
    from raypkg.deltagrad.exact import ExactGradients
    from raypkg.deltagrad.replay import Request
    from raypkg.deltagrad.requests import addition_request, check_hyper, deletion_ids, measure
    from raypkg.deltagrad.trajectory import Trajectory
    from raypkg.deltagrad.workload import DeltaGradConfig, load_workload, train_trajectory

    cfg = DeltaGradTuneConfig(**config)
    check_hyper(cfg.period, cfg.init, cfg.m)
    torch.set_num_threads(1)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="effray-tune-deltagrad-") as tmp:
        if cfg.run:
            traj = Trajectory.open(cfg.run)
            h = traj.header
            wl = load_workload(h.dataset, h.model, h.data, h.seed, h.dtype, device)
        else:
            train_cfg = DeltaGradConfig(
                dataset=cfg.dataset, model=cfg.model, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                lrlen=cfg.lrlen, weight_decay=cfg.weight_decay, seed=cfg.seed, train_size=cfg.train_size,
                test_size=cfg.test_size, holdout=cfg.ratio if cfg.kind == "add" else 0.0).validate()
            wl = load_workload(cfg.dataset, cfg.model, train_cfg.data_options(), cfg.seed, "float64", device)
            train_trajectory(train_cfg, wl, Path(tmp) / "run", ExactGradients(wl.net, wl.x, wl.y)).finish(False)
            traj = Trajectory.open(Path(tmp) / "run")
        plan = traj.plan()
        if cfg.kind == "delete":
            request = Request("delete", deletion_ids(plan, traj.header.n, ratio=cfg.ratio, seed=cfg.request_seed))
        else:
            request = addition_request(traj, plan, ids=traj.addable(), seed=cfg.request_seed)
        metrics = measure(traj, request, ExactGradients(wl.net, wl.x, wl.y), wl.evaluate,
                          (cfg.period, cfg.init, cfg.m), cfg.repeat, device)
    ok = metrics["dist_ratio"] is not None and metrics["dist_ratio"] <= cfg.max_ratio
    report({**{k: v for k, v in metrics.items() if v is not None},
            "score": metrics["speedup"] if ok else 0.0,
            "work_speedup": (metrics["explicit_steps"] + metrics["approx_steps"]) / metrics["explicit_steps"]})
