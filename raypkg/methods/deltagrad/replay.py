"""Training, exact replay (the baseline retrain) and DeltaGrad, on a flat parameter vector.

All three share one update, plain SGD with explicit L2 (spec, "Deletion, iteration t"):

    w_{t+1} = w_t - eta_t * (g + beta * w_t),   g = mean gradient over the step's batch,

so with T0 = 1 (every step explicit) DeltaGrad performs exactly the baseline's
arithmetic on exactly the same rows and the two agree bit for bit.

DeltaGrad (Wu et al. 2020, Algorithm 1/3), iteration t, R = the request's samples:
- explicit (t < j0 or (t - j0) mod T0 == 0, or fewer than m curvature pairs): the exact
  gradient on the new batch, and a pair s = w^I_t - w_t, y = grad F_{B_t}(w^I_t) - g_t + beta s;
- approximate: g_hat = g_t + beta w_t + B (w^I_t - w_t) (compact L-BFGS, lbfgs.py), then
  deletion d = [b g_hat - (sum_{R_t} grad l_i(w^I_t) + r_t beta w^I_t)] / (b - r_t)
  (addition: + and b + a_t), and w^I_{t+1} = w^I_t - eta_t d. Only the r_t rows of the
  request are forward/backward-propagated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from raypkg.methods.deltagrad.lbfgs import CurvaturePairs
from raypkg.methods.deltagrad.trajectory import ReplayBatches, Trajectory

if TYPE_CHECKING:
    from raypkg.methods.deltagrad.config import RequestSettings


@dataclass
class Request:
    """A deletion (ids are current members) or an addition (ids from the holdout pool,
    ``assign[e, j]`` = the step of epoch e that new sample j joins; None in GD mode)."""

    kind: str  # "delete" | "add"
    ids: torch.Tensor
    assign: torch.Tensor | None = None

    @property
    def deleting(self) -> bool:
        return self.kind == "delete"


@dataclass
class DeltaGradInfo:
    explicit_steps: int = 0
    approx_steps: int = 0
    skipped_steps: int = 0
    pairs_skipped: int = 0
    max_rel_grad_err: float = 0.0  # ||exact - estimate|| / ||exact|| at explicit steps t >= j0
    drifted: bool = False  # stopped early: max_rel_grad_err passed the tolerance
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def sgd_step(w: torch.Tensor, g: torch.Tensor, lr: float, wd: float) -> torch.Tensor:
    """w - lr (g + wd w): the one update every path uses (so paths agree bit for bit)."""
    return torch.add(w, torch.add(g, w, alpha=wd), alpha=-lr)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def replay(plan: ReplayBatches, lrs: list[float], w0: torch.Tensor, wd: float, grads,
           record: Trajectory | None = None, progress: bool = False, desc: str = "retrain") -> torch.Tensor:
    """Run SGD/GD over ``plan`` from ``w0``: training when ``record`` is given (w_t, g_t
    written to it), the baseline retrain otherwise. Empty batches are skipped.
    ``progress``: a bar over the steps, labelled ``desc``."""
    from tqdm.auto import tqdm

    w = w0.clone()
    last_ids, rows = None, None
    for t in tqdm(range(plan.T), desc=desc, unit="step", disable=not progress, leave=False):
        ids = plan.batch(t)
        if record is not None:
            record.w[t].copy_(w)
        if len(ids) == 0:
            if record is not None:
                record.g[t].zero_()
            continue
        if ids is not last_ids:  # GD: the same rows every step, gathered once
            rows, last_ids = grads.rows(ids), ids
        g = grads.grad_sum(w, rows) / len(ids)
        if record is not None:
            record.g[t].copy_(g)
        w = sgd_step(w, g, lrs[t], wd)
    if record is not None:
        record.w[plan.T].copy_(w)
    return w


def deltagrad(traj: Trajectory, plan: ReplayBatches, request: Request, grads, settings: "RequestSettings", *,
              record: Trajectory | None = None, drift_tol: float | None = None,
              device: torch.device | None = None) -> tuple[torch.Tensor, DeltaGradInfo]:
    """w^I after ``request`` on the run cached in ``traj`` (whose batches are ``plan``), with
    ``settings``' explicit-step period T0, burn-in j0, L-BFGS history m and safeguard eps.

    ``record`` (may be ``traj`` itself, opened writable) receives the new trajectory:
    w^I_t and the gradient each step used before weight decay (exact at explicit steps,
    estimated at approximate ones), for the next online request. With ``drift_tol``,
    the pass stops early (``info.drifted``) when an explicit step's exact gradient and
    the quasi-Newton estimate differ by more than that relative amount.
    """
    start = time.perf_counter()  # the request's set-up counts, as the baseline's does
    h = traj.header
    wd, lrs = h.weight_decay, h.lrs
    device = device or torch.device("cpu")
    info = DeltaGradInfo()
    deleting = request.deleting
    deltas = plan.request_steps(request.ids, None if deleting else request.assign)
    sizes = plan.sizes.tolist()
    dmask = None
    if deleting:
        dmask = torch.zeros(plan.n, dtype=torch.bool)
        dmask[request.ids] = True
    period, init = settings.period, settings.init
    pairs = CurvaturePairs(settings.m, settings.eps)
    memo: dict = {}  # GD mode: every step has the same rows

    def exact_rows(t: int, delta: torch.Tensor):
        key = ("x", id(delta)) if plan.full_batch else None
        if key in memo:
            return memo[key]
        batch = plan.batch(t)
        if deleting:
            main = batch[~dmask[batch]] if len(delta) else batch
        else:
            main = torch.cat([batch, delta]).sort().values if len(delta) else batch
        out = (grads.rows(main), grads.rows(delta) if len(delta) else None)
        if key is not None:
            memo[key] = out
        return out

    def delta_rows(delta: torch.Tensor):
        key = ("d", id(delta)) if plan.full_batch else None
        if key in memo:
            return memo[key]
        out = grads.rows(delta)
        if key is not None:
            memo[key] = out
        return out

    w = traj.w[0].to(device, copy=True)
    for t in range(plan.T):
        b, delta = sizes[t], deltas[t]
        r = len(delta)
        nb = b - r if deleting else b + r
        if nb == 0:  # the batch became empty: the baseline skips it too
            info.skipped_steps += 1
            if record is not None:
                record.w[t].copy_(w)
                record.g[t].zero_()
            continue
        wt = traj.w[t].to(device, non_blocking=True)
        gt = traj.g[t].to(device, non_blocking=True)
        lr = lrs[t]
        explicit = t < init or (t - init) % period == 0 or pairs.operator is None or b == 0
        if explicit:
            info.explicit_steps += 1
            main_rows, d_rows = exact_rows(t, delta)
            s_main = grads.grad_sum(w, main_rows)
            s_delta = grads.grad_sum(w, d_rows) if r else None
            g_new = s_main / nb
            if b > 0:
                if r == 0:
                    g_old = s_main / b
                else:
                    g_old = (s_main + s_delta) / b if deleting else (s_main - s_delta) / b
                s = w - wt
                if t >= init and pairs.operator is not None:
                    estimate = gt + wd * wt + pairs.operator.matvec(s)
                    exact = g_old + wd * w
                    rel = float(torch.linalg.vector_norm(exact - estimate) /
                                torch.linalg.vector_norm(exact).clamp_min(1e-300))
                    info.max_rel_grad_err = max(info.max_rel_grad_err, rel)
                    if drift_tol is not None and rel > drift_tol:
                        info.drifted = True
                        break
                pairs.add(s, g_old - gt + wd * s)
            w_next = sgd_step(w, g_new, lr, wd)
        else:
            info.approx_steps += 1
            g_hat = gt + wd * wt + pairs.operator.matvec(w - wt)
            if r:
                change = grads.grad_sum(w, delta_rows(delta)) + (r * wd) * w
                d = (b * g_hat - change) / nb if deleting else (b * g_hat + change) / nb
            else:
                d = g_hat
            g_new = d - wd * w if record is not None else None
            w_next = w - lr * d
        if record is not None:  # after the last use of wt, gt (record may be traj itself)
            record.w[t].copy_(w)
            record.g[t].copy_(g_new)
        w = w_next
    if record is not None and not info.drifted:
        record.w[plan.T].copy_(w)
    sync(device)
    info.pairs_skipped = pairs.skipped
    info.seconds = time.perf_counter() - start
    return w, info


def baseline(traj: Trajectory, plan: ReplayBatches, request: Request, grads,
             device: torch.device | None = None, record: Trajectory | None = None) -> tuple[torch.Tensor, float]:
    """w^U: the cached run replayed from w_0 with the request applied; and its seconds."""
    device = device or torch.device("cpu")
    start = time.perf_counter()
    after = plan.with_deleted(request.ids) if request.deleting else plan.with_added(request.ids, request.assign)
    w = replay(after, traj.header.lrs, traj.w[0].to(device, copy=True), traj.header.weight_decay,
               grads, record=record)
    sync(device)
    return w, time.perf_counter() - start
