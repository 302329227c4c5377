"""DeltaGrad's recipe, the one `effray tune deltagrad` sweeps: one (T0, j0, m) on one request.

The run trains a small cached run itself (digits by default, in a temporary directory)
unless ``run`` names an existing one (an absolute path: Tune trials do not run in the
caller's directory), serves one deletion or addition with both methods and logs one row:
time, distances and ``score``, the speed-up when ||w^I - w^U|| <= max_ratio ||w^U - w*||,
else 0 (a fast wrong answer is worth nothing). `effray unlearn` serves requests on a
cached run from the command line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from raypkg.deltagrad.config import DeltaGradTuneConfig
from raypkg.recipe import Recipe, Run, register

# What its row holds: raypkg.deltagrad.requests.Outcome.metrics plus score and work_speedup.
METRICS = ("score", "work_speedup", "n_ids", "time_baseline", "time_deltagrad", "speedup", "dist_U_star", "dist_I_U",
           "dist_I_star", "dist_ratio", "acc_original", "acc_baseline", "acc_deltagrad", "explicit_steps",
           "approx_steps", "skipped_steps", "pairs_skipped", "max_rel_grad_err")


def serve_request(run: Run) -> None:
    """Train (or open) the cached run, serve the request with the baseline and DeltaGrad, log the row."""
    import torch

    from raypkg.deltagrad.exact import ExactGradients
    from raypkg.deltagrad.replay import Request
    from raypkg.deltagrad.requests import addition_request, deletion_ids, measure
    from raypkg.deltagrad.trajectory import Trajectory
    from raypkg.deltagrad.workload import load_workload, train_trajectory

    cfg = run.cfg
    device = torch.device("cpu")  # exact replay in float64 on the CPU
    with tempfile.TemporaryDirectory(prefix="effray-deltagrad-") as tmp:
        if cfg.run:
            traj = Trajectory.open(cfg.run)
            h = traj.header
            wl = load_workload(h.dataset, h.model, h.data, h.seed, h.dtype, device)
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
