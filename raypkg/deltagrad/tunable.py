"""`effray tune deltagrad`: one trial = one (T0, j0, m) on one request (tune_spaces/deltagrad.yaml).

The trial trains a small cached run itself (digits by default, in a temporary
directory of its own process) unless ``run`` names an existing one (an absolute path:
trials do not run in the caller's directory), serves one deletion or addition with
both methods and reports time, distances and ``score``: the speed-up when
||w^I - w^U|| <= max_ratio ||w^U - w*||, else 0 (a fast wrong answer is worth nothing).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from raypkg.deltagrad.config import DeltaGradConfig
from raypkg.engine.config import setting
from raypkg.tuning import register_tunable


@dataclass
class DeltaGradTuneConfig(DeltaGradConfig):
    """The training run (DeltaGradConfig, or an existing cached ``run``) plus the request a
    trial serves and the DeltaGrad hyperparameters it measures."""

    lr: list[float] = setting(factory=lambda: [0.05, 0.02])
    lrlen: list[int] = setting(factory=lambda: [10, 10])
    wandb: str = setting("disabled")
    progress: bool = setting(False)
    run: str | None = setting(None, "An existing cached run (absolute path) instead of training one.")
    kind: str = setting("delete", "delete | add.", choices=("delete", "add"))
    ratio: float = setting(0.01, "Fraction of the samples deleted or added.")
    request_seed: int = setting(1, "Seed of the request's samples.")
    period: int = setting(5, "T0.")
    init: int = setting(20, "j0.")
    m: int = setting(2, "L-BFGS history.")
    eps: float = setting(1e-8, "Curvature safeguard.")
    max_ratio: float = setting(0.05, "Largest ||wI - wU|| / ||wU - w*|| that still scores.")
    repeat: int = setting(3, "Best of N timings.")

    def training_config(self) -> DeltaGradConfig:
        """The run a trial trains when no ``run`` is given (holding out the addition pool)."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(DeltaGradConfig)}
        return DeltaGradConfig(**{**base, "holdout": self.ratio if self.kind == "add" else 0.0}).validate()


# What a trial reports: raypkg.deltagrad.requests.Outcome.metrics plus score and work_speedup.
METRICS = ("score", "work_speedup", "n_ids", "time_baseline", "time_deltagrad", "speedup", "dist_U_star", "dist_I_U",
           "dist_I_star", "dist_ratio", "acc_original", "acc_baseline", "acc_deltagrad", "explicit_steps",
           "approx_steps", "skipped_steps", "pairs_skipped", "max_rel_grad_err")


@register_tunable("deltagrad", DeltaGradTuneConfig, METRICS)
def tune_deltagrad(config: dict, report) -> None:
    from raypkg.deltagrad.exact import ExactGradients
    from raypkg.deltagrad.replay import Request
    from raypkg.deltagrad.requests import addition_request, check_hyper, deletion_ids, measure
    from raypkg.deltagrad.trajectory import Trajectory
    from raypkg.deltagrad.workload import load_workload, train_trajectory

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
            train_cfg = cfg.training_config()
            wl = load_workload(cfg.dataset, cfg.model, train_cfg.data_options(), cfg.seed, cfg.dtype, device)
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
