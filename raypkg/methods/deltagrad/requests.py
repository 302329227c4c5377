"""Turning user input into a checked deletion/addition request, and serving it.

Every check happens before anything is written: ids out of range, duplicates, an
empty set, deleting every sample, adding samples the run already trained on. Each
problem is one UsageError line naming the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from raypkg.errors import UsageError
from raypkg.methods.deltagrad.config import RequestSettings
from raypkg.methods.deltagrad.replay import Request, baseline, deltagrad
from raypkg.methods.deltagrad.trajectory import ReplayBatches, Trajectory
from raypkg.timing import measure


def read_ids(path: str | Path) -> torch.Tensor:
    """Integer ids from .npy, .parquet/.csv (column ``id``: a table's other column, or a CSV
    without a header, is refused rather than guessed), or text (integers separated by
    whitespace or commas)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ids file {str(path)!r} does not exist")
    try:
        if path.suffix == ".npy":
            import numpy as np

            values = np.load(path, allow_pickle=False).reshape(-1).tolist()
        elif path.suffix in (".parquet", ".csv"):
            import pandas as pd

            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
            if "id" not in frame.columns:
                raise UsageError(f"ids file {str(path)!r} needs a column named 'id' "
                                 f"(columns: {', '.join(map(str, frame.columns))[:200]})")
            values = frame["id"].tolist()
        else:
            values = path.read_text().replace(",", " ").split()
        ids = [int(v) for v in values]
        if any(float(v) != int(float(v)) for v in values):
            raise ValueError
    except UsageError:
        raise
    except (ValueError, TypeError, OSError):
        raise UsageError(f"ids file {str(path)!r} must hold integer sample ids") from None
    return torch.tensor(ids, dtype=torch.long)


def check_ids(ids: torch.Tensor, n: int, what: str) -> torch.Tensor:
    """Non-empty, in [0, n), no duplicates; returns them sorted."""
    if len(ids) == 0:
        raise UsageError(f"no ids given: the {what} set is empty")
    bad = ids[(ids < 0) | (ids >= n)]
    if len(bad):
        raise UsageError(f"id {int(bad[0])} is out of range; ids are training-set positions 0..{n - 1}")
    ordered = ids.sort().values
    dup = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(dup):
        raise UsageError(f"id {int(dup[0])} appears more than once in the {what} set")
    return ordered


def deletion_ids(plan: ReplayBatches, n: int, ids: torch.Tensor | None = None, ratio: float | None = None,
                 seed: int = 0) -> torch.Tensor:
    """Checked ids to delete: given, or a random ``ratio`` of the current training set."""
    members = plan.members()
    if (ids is None) == (ratio is None):
        raise UsageError("give exactly one of --ids FILE or --ratio R")
    if ratio is not None:
        if not 0 < ratio < 1:
            raise UsageError(f"--ratio must be in (0, 1), got {ratio}")
        count = int(round(ratio * len(members)))
        if count == 0:
            raise UsageError(f"--ratio {ratio} of {len(members)} training samples selects none; use a larger ratio")
        g = torch.Generator().manual_seed(seed)
        ids = members[torch.randperm(len(members), generator=g)[:count]]
    ids = check_ids(ids, n, "deletion")
    outside = ids[~plan.is_member(ids)]
    if len(outside):
        raise UsageError(f"id {int(outside[0])} is not in this run's training set "
                         "(held out, or deleted by an earlier request)")
    if len(ids) >= len(members):
        raise UsageError(f"cannot delete all {len(members)} training samples")
    return ids


def addition_request(traj: Trajectory, plan: ReplayBatches, ids: torch.Tensor | None = None,
                     ratio: float | None = None, seed: int = 0) -> Request:
    """Checked ids to add (from the run's holdout pool) and their batch per epoch."""
    pool = traj.addable()
    n = traj.header.n
    if (ids is None) == (ratio is None):
        raise UsageError("give exactly one of --from FILE or --ratio R")
    if len(pool) == 0 and ratio is not None:
        raise UsageError("this run holds no samples out, so there is nothing to add; train it with "
                         "`effray unlearn train --holdout FRACTION`")
    g = torch.Generator().manual_seed(seed)
    if ratio is not None:
        if not 0 < ratio < 1:
            raise UsageError(f"--ratio must be in (0, 1), got {ratio}")
        count = int(round(ratio * len(plan.members())))
        if count == 0:
            raise UsageError(f"--ratio {ratio} of {len(plan.members())} training samples selects none; "
                             "use a larger ratio")
        if count > len(pool):
            raise UsageError(f"--ratio {ratio} asks for {count} new samples but only {len(pool)} are held out")
        ids = pool[torch.randperm(len(pool), generator=g)[:count]]
    ids = check_ids(ids, n, "addition")
    in_pool = torch.zeros(n, dtype=torch.bool)
    in_pool[pool] = True
    outside = ids[~in_pool[ids]]
    if len(outside):
        raise UsageError(f"id {int(outside[0])} is already in this run's training set; "
                         "add takes held-out samples (`effray unlearn train --holdout FRACTION`)")
    assign = None if plan.full_batch else plan.random_assignment(len(ids), g)
    return Request("add", ids, assign)


def checked_request(traj: Trajectory, plan: ReplayBatches, kind: str, ids_file: str | None,
                    ratio: float | None, seed: int) -> Request:
    """The deletion or addition asked for: the ids in ``ids_file`` or a random ``ratio``, checked."""
    ids = read_ids(ids_file) if ids_file else None
    if kind == "delete":
        return Request("delete", deletion_ids(plan, traj.header.n, ids, ratio, seed))
    return addition_request(traj, plan, ids, ratio, seed)


def warm_up(grads, plan: ReplayBatches, w: torch.Tensor) -> None:
    """One small gradient and one L-BFGS factorisation before anything is timed, so that
    neither method pays the first call's one-off costs (kernel and LAPACK set-up)."""
    from raypkg.methods.deltagrad.lbfgs import CompactLBFGS

    grads.grad_sum(w, grads.rows(plan.members()[:8]))
    s = torch.randn(len(w), 2, dtype=w.dtype, device=w.device)
    CompactLBFGS(s, s + 0.1 * s.flip(1)).matvec(w)


@dataclass
class Outcome:
    """One served request: both answers, their times, distances and accuracies."""

    n_ids: int
    w_star: torch.Tensor
    w_baseline: torch.Tensor | None
    w_deltagrad: torch.Tensor | None
    time_baseline: float | None
    time_deltagrad: float | None
    info: object | None

    def metrics(self, evaluate) -> dict:
        def dist(a, b):
            return None if a is None or b is None else float(torch.linalg.vector_norm(a - b))

        out = {"n_ids": self.n_ids, "time_baseline": self.time_baseline, "time_deltagrad": self.time_deltagrad,
               "speedup": (self.time_baseline / self.time_deltagrad
                           if self.time_baseline and self.time_deltagrad else None),
               "dist_U_star": dist(self.w_baseline, self.w_star),
               "dist_I_U": dist(self.w_deltagrad, self.w_baseline),
               "dist_I_star": dist(self.w_deltagrad, self.w_star),
               "acc_original": evaluate(self.w_star)["acc"],
               "acc_baseline": evaluate(self.w_baseline)["acc"] if self.w_baseline is not None else None,
               "acc_deltagrad": evaluate(self.w_deltagrad)["acc"] if self.w_deltagrad is not None else None}
        out["dist_ratio"] = (out["dist_I_U"] / out["dist_U_star"]
                             if out["dist_I_U"] is not None and out["dist_U_star"] else None)
        if self.info is not None:
            info = self.info
            out.update(explicit_steps=info.explicit_steps, approx_steps=info.approx_steps,
                       skipped_steps=info.skipped_steps, pairs_skipped=info.pairs_skipped,
                       max_rel_grad_err=info.max_rel_grad_err)
        return out


def serve(traj: Trajectory, plan: ReplayBatches, request: Request, grads, method: str, settings: RequestSettings,
          *, device: torch.device) -> Outcome:
    """Run the baseline retrain and/or DeltaGrad (with ``settings``) for ``request`` (nothing is written)."""
    w_star = traj.w[traj.header.steps].to(device, copy=True)
    warm_up(grads, plan, w_star)
    wU = tb = wI = info = None
    if method in ("baseline", "both"):
        wU, tb = baseline(traj, plan, request, grads, device=device)
    if method in ("deltagrad", "both"):
        wI, info = deltagrad(traj, plan, request, grads, settings, device=device)
    return Outcome(len(request.ids), w_star, wU, wI, tb, info.seconds if info else None, info)


def measure_request(traj: Trajectory, request: Request, grads, evaluate, hyper: tuple[int, int, int],
                    repeat: int, device: torch.device) -> dict:
    """Both methods on one request, timed by ``raypkg.timing.measure`` (``warm_up`` first,
    then ``repeat`` interleaved rounds; the median seconds of each); distances and
    accuracies as in ``Outcome.metrics``."""
    plan = traj.plan()
    period, init, m = hyper
    settings = RequestSettings(period=period, init=init, m=m)
    w_star = traj.w[traj.header.steps].to(device, copy=True)
    results, timings = measure(
        {"baseline": lambda: baseline(traj, plan, request, grads, device=device)[0],
         "deltagrad": lambda: deltagrad(traj, plan, request, grads, settings, device=device)},
        repeat, warm=dict.fromkeys(("baseline", "deltagrad"), lambda: warm_up(grads, plan, w_star)))
    w_i, info = results["deltagrad"]
    return Outcome(len(request.ids), w_star, results["baseline"], w_i, timings["baseline"].seconds,
                   timings["deltagrad"].seconds, info).metrics(evaluate)
