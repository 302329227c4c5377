"""Exact gradients as partial sums over Ray shard actors agree with the in-process path."""

from __future__ import annotations

import torch

from raypkg.data.base import IndexedDataset
from raypkg.distributed.shard_pool import sum_in_process
from raypkg.methods.deltagrad.config import RequestSettings
from raypkg.methods.deltagrad.exact import ExactGradients, ShardedGradients, shard_grad_sum
from raypkg.methods.deltagrad.replay import Request, baseline, deltagrad
from raypkg.methods.deltagrad.trajectory import Trajectory
from raypkg.methods.deltagrad.workload import DeltaGradConfig, load_workload, train_trajectory


def test_actor_gradients_equal_in_process(ray_session, tmp_path):
    wl = load_workload("digits", "logreg", {"seed": 0}, 0, "float64", torch.device("cpu"))
    local = ExactGradients(wl.net, wl.x, wl.y)
    sharded = ShardedGradients(wl.net, wl.x, wl.y, num_actors=2)
    try:
        ids = torch.randperm(wl.n, generator=torch.Generator().manual_seed(0))[:300].sort().values
        w = wl.w0 + 0.01
        rows = sharded.rows(ids)
        from_actors = sharded.grad_sum(w, rows)
        dataset = IndexedDataset(wl.x, wl.y, 10, torch.arange(wl.n))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in each 1-CPU actor: same BLAS blocking, same sums
        try:
            in_process = sum_in_process(shard_grad_sum, dataset, wl.net, w, ids, num_shards=2)
        finally:
            torch.set_num_threads(threads)
        assert torch.equal(from_actors, in_process)
        torch.testing.assert_close(from_actors, local.grad_sum(w, local.rows(ids)), rtol=1e-12, atol=1e-12)

        # a whole DeltaGrad request in GD mode agrees too
        cfg = DeltaGradConfig(dataset="digits", model="logreg", epochs=12, batch_size=0, lr=[0.05]).validate()
        train_trajectory(cfg, wl, tmp_path / "gd", local).finish()
        traj = Trajectory.open(tmp_path / "gd")
        request = Request("delete", ids[:7])
        w_local, _ = deltagrad(traj, traj.plan(), request, local, RequestSettings(period=3, init=4, m=2))
        w_actor, _ = deltagrad(traj, traj.plan(), request, sharded, RequestSettings(period=3, init=4, m=2))
        w_u, _ = baseline(traj, traj.plan(), request, sharded)
        torch.testing.assert_close(w_actor, w_local, rtol=1e-11, atol=1e-11)
        assert float(torch.linalg.vector_norm(w_actor - w_u)) < 0.1 * float(torch.linalg.vector_norm(w_u - traj.w[-1]))
    finally:
        sharded.close()
