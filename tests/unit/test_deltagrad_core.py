"""DeltaGrad building blocks: closed-form gradients, compact L-BFGS, batch plans, refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raypkg.errors import UsageError
from raypkg.methods.deltagrad.flatnet import FlatNet, flatten_params, load_into
from raypkg.methods.deltagrad.lbfgs import CompactLBFGS, CurvaturePairs
from raypkg.methods.deltagrad.trajectory import ReplayBatches
from raypkg.models.registry import build_model


def _data(n=96, d=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("name", ["logreg", "mlp", "lenet300-100"])
def test_closed_form_gradient_equals_autograd(name):
    x, y = _data()
    torch.manual_seed(1)
    model = build_model(name, (64,), 10).double()
    net = FlatNet.from_model(model, name)
    w = flatten_params(model) + 0.05 * torch.randn(net.num_params, dtype=torch.float64)
    # autograd at the same w, through the registry module (functional_call: no state touched)
    params, off = {}, 0
    for key, p in model.named_parameters():
        params[key] = w[off:off + p.numel()].view_as(p).clone().requires_grad_(True)
        off += p.numel()
    loss = F.cross_entropy(torch.func.functional_call(model, params, (x,)), y, reduction="sum")
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))])
    assert off == net.num_params
    torch.testing.assert_close(net.grad_sum(w, x, y), expected, rtol=1e-12, atol=1e-12)
    # and the flat layout round-trips through the module
    assert torch.equal(flatten_params(load_into(model, w)), w)


def test_training_run_equals_torch_sgd():
    """The cached trajectory is what torch.optim.SGD (no momentum, weight_decay) does."""
    from raypkg.methods.deltagrad.exact import ExactGradients
    from raypkg.methods.deltagrad.replay import replay

    x, y = _data(n=200)
    torch.manual_seed(3)
    model = build_model("mlp", (64,), 10).double()
    net = FlatNet.from_model(model)
    w0 = flatten_params(model)
    perms = torch.stack([torch.randperm(200, generator=torch.Generator().manual_seed(e)) for e in range(3)])
    plan = ReplayBatches.from_perms(perms, 200, 3, 64)
    lrs = [0.1] * 8 + [0.05] * 4
    w = replay(plan, lrs, w0, 1e-3, ExactGradients(net, x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0, weight_decay=1e-3)
    for t in range(plan.T):
        ids = plan.batch(t)
        for group in opt.param_groups:
            group["lr"] = lrs[t]
        opt.zero_grad()
        F.cross_entropy(model(x[ids]), y[ids]).backward()
        opt.step()
    torch.testing.assert_close(w, flatten_params(model), rtol=1e-11, atol=1e-11)


def _dense_bfgs(S, Y, sigma):
    """B_0 = sigma I, then one BFGS update per pair, oldest first."""
    B = sigma * torch.eye(S.shape[0], dtype=S.dtype)
    for i in range(S.shape[1]):
        s, y = S[:, i], Y[:, i]
        Bs = B @ s
        B = B - torch.outer(Bs, Bs) / (s @ Bs) + torch.outer(y, y) / (y @ s)
    return B


@pytest.mark.parametrize("m", [1, 2, 4])
def test_compact_lbfgs_equals_dense_bfgs(m):
    g = torch.Generator().manual_seed(m)
    p = 30
    Q = torch.randn(p, p, generator=g, dtype=torch.float64)
    H = Q @ Q.t() / p + 0.1 * torch.eye(p, dtype=torch.float64)
    S = torch.randn(p, m, generator=g, dtype=torch.float64)
    Y = H @ S
    op = CompactLBFGS(S, Y)
    sigma = float(Y[:, -1] @ S[:, -1] / (S[:, -1] @ S[:, -1]))
    assert op.sigma == pytest.approx(sigma)
    v = torch.randn(p, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), _dense_bfgs(S, Y, sigma) @ v, rtol=1e-10, atol=1e-10)
    # the secant equation for the newest pair holds
    torch.testing.assert_close(op.matvec(S[:, -1]), Y[:, -1], rtol=1e-10, atol=1e-10)


def test_curvature_pairs_skip_bad_pairs_and_wait_for_m():
    pairs = CurvaturePairs(m=2)
    s = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert not pairs.add(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))  # s = 0
    assert not pairs.add(s, -s)  # negative curvature
    assert pairs.add(s, 2 * s)
    assert pairs.operator is None  # one pair < m: callers take explicit steps
    assert pairs.add(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 3.0, 0.0],
                                                                                       dtype=torch.float64))
    assert pairs.operator is not None and pairs.skipped == 2
    v = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(pairs.operator.matvec(v), torch.tensor([2.0, 3.0, 0.0], dtype=torch.float64))


def test_batch_plan_deletions_additions_and_empty_batches():
    perms = torch.stack([torch.arange(10), torch.arange(10).flip(0)])  # 2 epochs, batch 4 -> 3 steps
    plan = ReplayBatches.from_perms(perms, 12, 2, 4)
    assert plan.T == 6 and plan.sizes.tolist() == [4, 4, 2, 4, 4, 2]
    assert plan.batch(3).tolist() == [6, 7, 8, 9]
    gone = plan.with_deleted(torch.tensor([8, 9]))  # step 2 (ids 8, 9) becomes empty
    assert gone.sizes.tolist() == [4, 4, 0, 2, 4, 2] and len(gone.batch(2)) == 0
    steps = plan.request_steps(torch.tensor([9, 0]))
    assert [s.tolist() for s in steps] == [[0], [], [9], [9], [], [0]]
    assign = torch.tensor([[2, 0], [1, 1]])  # ids 10, 11 join these steps of each epoch
    added = plan.with_added(torch.tensor([10, 11]), assign)
    assert added.batch(2).tolist() == [8, 9, 10] and added.batch(4).tolist() == [2, 3, 4, 5, 10, 11]
    assert [s.tolist() for s in plan.request_steps(torch.tensor([10, 11]), assign)] == \
        [[11], [], [10], [], [10, 11], []]
    gd = ReplayBatches.from_perms(torch.arange(10).unsqueeze(0), 12, 3, 0)
    assert gd.T == 3 and gd.batch(0) is gd.batch(2) and gd.sizes.tolist() == [10, 10, 10]


class _WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(4, 2)


class _WithBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.ReLU())
        self.head = nn.Linear(4, 2)


def test_models_that_break_exact_replay_are_refused():
    with pytest.raises(UsageError, match="Dropout"):
        FlatNet.from_model(_WithDropout())
    with pytest.raises(UsageError, match="BatchNorm1d"):
        FlatNet.from_model(_WithBatchNorm())
    with pytest.raises(UsageError, match="fully connected"):
        FlatNet.from_model(build_model("lenet5", (1, 28, 28), 10), "lenet5")
