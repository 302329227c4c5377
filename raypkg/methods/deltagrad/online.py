"""Online DeltaGrad: a stream of small requests, each served from the previous answer.

Spec, "Online variant": after serving request k, the cached trajectory is replaced by
the one DeltaGrad just followed (w^I_t, and the gradient each step used: exact at
explicit steps, estimated at approximate ones), so request k+1 starts from it. The
original run is never touched: the stream works on a copy (``<online dir>/trajectory``).

Errors accumulate, so a rule retrains exactly (the baseline replay, recorded as the new
trajectory) when
- ``retrain_every`` requests have been served since the last exact retrain, or
- an explicit step's exact gradient differs from the quasi-Newton estimate
  g_t + beta w_t + B (w^I_t - w_t) by more than ``drift_tol`` (relative): the pass stops
  there and the request is answered by the exact retrain instead.

With ``baseline_every`` (1: every request) requests are also answered the slow way, K sequential
retrains of the original run without (with) everything requested so far, to measure
time and distance side by side.
"""

from __future__ import annotations

import time

import torch

from raypkg.errors import UsageError
from raypkg.methods.deltagrad.config import OnlineSettings
from raypkg.methods.deltagrad.replay import Request, deltagrad, replay, sync
from raypkg.methods.deltagrad.trajectory import Trajectory


def request_size(source: Trajectory, kind: str, requests: int, ratio: float | None, samples: int | None) -> int:
    """Samples in each of the stream's ``requests`` requests: ``ratio`` of the training set,
    else ``samples`` (default 1); refused when that is none, or more than the run can give."""
    members = len(source.plan().members())
    count = int(round(ratio * members)) if ratio is not None else samples or 1
    if count == 0:
        raise UsageError(f"--ratio-per-request {ratio} of {members} samples selects none")
    total = count * requests
    if kind == "delete" and total >= members:
        raise UsageError(f"{requests} requests of {count} would delete {total} of {members} samples")
    if kind == "add" and total > len(source.addable()):
        raise UsageError(f"{requests} requests of {count} need {total} held-out samples; "
                         f"the run holds out {len(source.addable())}")
    return count


def next_request(work: Trajectory, plan, kind: str, count: int, generator: torch.Generator) -> Request:
    """``count`` random current members (deletion) or held-out samples (addition)."""
    if kind == "delete":
        members = plan.members()
        ids = members[torch.randperm(len(members), generator=generator)[:count]].sort().values
        return Request("delete", ids)
    pool = work.addable()
    ids = pool[torch.randperm(len(pool), generator=generator)[:count]].sort().values
    assign = None if plan.full_batch else plan.random_assignment(len(ids), generator)
    return Request("add", ids, assign)


def absorb(work: Trajectory, request: Request) -> None:
    """Record the request in the working trajectory's membership (its plan changes)."""
    m = work.membership
    if request.deleting:
        m["removed"] = torch.cat([m["removed"], request.ids]).sort().values
    else:
        m["added"] = torch.cat([m["added"], request.ids])
        assign = request.assign if request.assign is not None else \
            torch.zeros(work.header.epochs, len(request.ids), dtype=torch.long)
        m["assign"] = torch.cat([m["assign"], assign], dim=1)
    work.save_membership()
    work.header.requests_applied += 1
    work.write_header()


def run_online(source: Trajectory, work: Trajectory, grads, requests: int, kind: str, count: int,
               settings: OnlineSettings, *, baseline_every: int = 0, device: torch.device | None = None,
               on_request=None) -> tuple[list[dict], torch.Tensor, torch.Tensor | None]:
    """Serve ``requests`` requests of ``count`` samples on ``work`` (a writable copy of
    ``source``), drawn with ``settings.request_seed``; returns one row per request, the
    final parameters, and the last baseline answer. ``baseline_every`` B > 0 runs (and
    times) the sequential baseline for every B-th request and the last one (B > 1 in
    benchmarks: K full retrains take long); the others get no baseline columns."""
    device = device or torch.device("cpu")
    h = source.header
    w_star = source.w[h.steps].to(device, copy=True)
    exact_plan = source.plan()  # the original run's plan, for the sequential baselines
    generator = torch.Generator().manual_seed(settings.request_seed)
    since_exact = 0
    rows: list[dict] = []
    w, wU = w_star, None
    for k in range(requests):
        request = next_request(work, work.plan(), kind, count, generator)
        start = time.perf_counter()
        plan = work.plan()
        retrained, info = False, None
        if settings.retrain_every and since_exact + 1 >= settings.retrain_every:
            retrained = True
        else:
            w, info = deltagrad(work, plan, request, grads, settings, record=work, drift_tol=settings.drift_tol,
                                device=device)
            retrained = info.drifted
        if retrained:  # the exact answer, recorded as the new trajectory
            after = plan.with_deleted(request.ids) if request.deleting else plan.with_added(request.ids, request.assign)
            w = replay(after, h.lrs, work.w[0].to(device, copy=True), h.weight_decay, grads, record=work)
            since_exact = 0
        else:
            since_exact += 1
        absorb(work, request)
        sync(device)
        row = {"request": k + 1, "kind": kind, "n_ids": len(request.ids), "ids": request.ids.tolist(),
               "time_deltagrad": time.perf_counter() - start, "retrained": retrained,
               "max_rel_grad_err": info.max_rel_grad_err if info else None}
        if baseline_every:
            exact_plan = exact_plan.with_deleted(request.ids) if request.deleting else \
                exact_plan.with_added(request.ids, request.assign)
            if (k + 1) % baseline_every == 0 or k == requests - 1:
                wU, tb = _timed_replay(source, exact_plan, grads, device)
                row.update(time_baseline=tb, dist_I_U=float(torch.linalg.vector_norm(w - wU)),
                           dist_U_star=float(torch.linalg.vector_norm(wU - w_star)))
        rows.append(row)
        if on_request is not None:
            on_request(row)
    return rows, w, wU


def _timed_replay(source: Trajectory, plan, grads, device):
    start = time.perf_counter()
    w = replay(plan, source.header.lrs, source.w[0].to(device, copy=True), source.header.weight_decay, grads)
    sync(device)
    return w, time.perf_counter() - start


def online_summary(rows: list[dict], w: torch.Tensor, wU: torch.Tensor | None, source: Trajectory, wl,
                   device: torch.device) -> dict:
    """The stream's totals: seconds (summed; with ``baseline_every`` > 1 the timed baseline
    retrains' seconds scaled to all the requests), exact retrains, distances and accuracies
    of the final answer ``w`` (and of the last baseline ``wU``) against the original w*."""
    w_star = source.w[source.header.steps].to(device)
    baselines = [r["time_baseline"] for r in rows if "time_baseline" in r]
    tb = sum(baselines) * (len(rows) / len(baselines)) if baselines else None
    td = sum(r["time_deltagrad"] for r in rows)
    out = {"requests": len(rows), "time_baseline": tb, "time_deltagrad": td,
           "speedup": tb / td if tb else None, "retrains": sum(bool(r["retrained"]) for r in rows),
           "dist_U_star": float(torch.linalg.vector_norm(wU - w_star)) if wU is not None else None,
           "dist_I_U": float(torch.linalg.vector_norm(w - wU)) if wU is not None else None,
           "dist_I_star": float(torch.linalg.vector_norm(w - w_star)),
           "acc_original": wl.evaluate(w_star)["acc"], "acc_deltagrad": wl.evaluate(w)["acc"],
           "acc_baseline": wl.evaluate(wU)["acc"] if wU is not None else None}
    out["dist_ratio"] = out["dist_I_U"] / out["dist_U_star"] if out["dist_U_star"] else None
    return out
