"""The shared training loop: weighted loss, schedules, determinism, accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from raypkg.config import resolve_config
from raypkg.data import load_dataset
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import (
    CLOCK_COLUMNS,
    epoch_permutation,
    evaluate,
    fit,
    lr_at,
    seed_everything,
    weighted_cross_entropy,
)
from raypkg.engine.plans import ShuffledBatches
from raypkg.errors import UsageError
from raypkg.models import build_model
from raypkg.selection.weighting import normalised_weights


def test_weighted_loss_with_unit_weights_equals_unweighted():
    logits, y = torch.randn(7, 4), torch.randint(0, 4, (7,))
    plain = weighted_cross_entropy(logits, y)
    assert torch.equal(weighted_cross_entropy(logits, y, torch.ones(7)), plain)
    assert torch.allclose(plain, torch.nn.functional.cross_entropy(logits, y))


def test_weighted_loss_is_mean_of_weighted_per_sample_losses():
    logits, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    w = torch.tensor([0.0, 2.0, 1.0, 0.0, 3.0])
    per = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(weighted_cross_entropy(logits, y, w), (w * per).sum() / 5.0)
    # integer weights normalised to mean 1 = repeating samples
    rep = torch.tensor([1, 1, 2, 4, 4, 4])
    assert torch.allclose(weighted_cross_entropy(logits, y, normalised_weights(w)), per[rep].mean())


def test_piecewise_schedule_matches_deltagrad_readme():
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", lr=[0.1, 0.05], lrlen=[10, 10], epochs=20).resolved().validate()
    assert cfg.schedule == "piecewise"
    assert [lr_at(cfg, e) for e in (0, 9.99, 10, 19.5)] == [0.1, 0.1, 0.05, 0.05]


def test_multistep_cosine_and_warmup():
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", lr=[1.0], schedule="multistep", milestones=[2, 4], gamma=0.5).validate()
    assert [lr_at(cfg, e) for e in (0, 2, 3.9, 4)] == [1.0, 0.5, 0.5, 0.25]
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", lr=[1.0], schedule="cosine", epochs=10).validate()
    assert lr_at(cfg, 0) == 1.0 and math.isclose(lr_at(cfg, 5), 0.5) and lr_at(cfg, 10) < 1e-12
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", lr=[0.2], schedule="linear", epochs=4).validate()
    assert [lr_at(cfg, e) for e in (0, 1, 3, 4, 5)] == [0.2, 0.2 * 0.75, 0.2 * 0.25, 0.0, 0.0]
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", lr=[1.0], schedule="constant", lr_warmup_epochs=2).validate()
    assert math.isclose(lr_at(cfg, 1.0), 0.5, rel_tol=1e-6) and lr_at(cfg, 2) == 1.0


def test_distributed_permutation_shards_cover_the_epoch():
    full = epoch_permutation(10, seed=3, epoch=1)
    shards = [epoch_permutation(10, 3, 1, rank=r, world_size=3) for r in range(3)]
    padded = torch.cat([full, full[:2]])  # DistributedSampler pads to a multiple of 3
    for r, shard in enumerate(shards):
        assert torch.equal(shard, padded[r::3])
    assert set(torch.cat(shards).tolist()) == set(range(10))
    assert not torch.equal(full, epoch_permutation(10, seed=3, epoch=2))


def _train_digits(seed: int, epochs: int = 3, weights=None):
    data = load_dataset("digits", seed=seed)
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=epochs, seed=seed, progress=False).validate()
    seed_everything(seed)
    model = build_model("mlp", data.input_shape, data.num_classes)
    plan = None if weights is None else ShuffledBatches(len(data.train), cfg.batch_size, cfg.seed, weights)
    rows = fit(model, data.train, data.test, cfg, plan=plan)
    return model, rows, data


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.9, True, 5e-4), (0.9, False, 0.0), (0.0, False, 1e-3)])
def test_sgd_stepping_only_the_active_positions_equals_torch_sgd(momentum, nesterov, weight_decay):
    """A weight and gradient that are 0 off ``active``: stepping the gathered values gives
    torch's dense step exactly, momentum buffer included, and the same state_dict keys."""
    from raypkg.sparsity.optim import PositionsSGD
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(30, 20, generator=g) < 0.1
    start = torch.randn(30, 20, generator=g) * mask
    grads = [torch.randn(30, 20, generator=g) * mask for _ in range(4)]
    settings = dict(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    dense_w, active_w = start.clone().requires_grad_(), start.clone().requires_grad_()
    dense_opt, active_opt = torch.optim.SGD([dense_w], **settings), PositionsSGD([active_w], **settings)
    active_opt.active = {active_w: mask.flatten().nonzero().flatten()}
    for grad in grads:
        dense_w.grad, active_w.grad = grad.clone(), grad.clone()
        dense_opt.step()
        active_opt.step()
        assert torch.equal(active_w, dense_w) and torch.equal(active_w.grad, grad)
    if momentum:
        assert torch.equal(active_opt.state[active_w]["momentum_buffer"], dense_opt.state[dense_w]["momentum_buffer"])
    assert active_opt.state_dict().keys() == dense_opt.state_dict().keys()


def test_positions_sgd_like_an_sgd_continues_it_exactly():
    """The sparse backend's stand-in for the engine's SGD (``PositionsSGD.like``) has its
    groups, settings and momentum buffers: its next steps equal the original's."""
    import copy

    from raypkg.sparsity.optim import PositionsSGD
    settings = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(8, 5, generator=g) for _ in range(4)]
    w = torch.randn(8, 5, generator=g).requires_grad_()
    opt = torch.optim.SGD([w], **settings)
    for grad in grads[:2]:
        w.grad = grad.clone()
        opt.step()
    twin_w = w.detach().clone().requires_grad_()
    engine_sgd = torch.optim.SGD([twin_w], **settings)
    engine_sgd.load_state_dict(copy.deepcopy(opt.state_dict()))
    twin = PositionsSGD.like(engine_sgd)
    assert twin.param_groups[0]["params"] == [twin_w] and twin.state[twin_w]["momentum_buffer"] is not None
    for grad in grads[2:]:
        w.grad, twin_w.grad = grad.clone(), grad.clone()
        opt.step()
        twin.step()
        assert torch.equal(twin_w, w)


def test_same_seed_same_metrics_and_weights():
    m1, rows1, _ = _train_digits(0)
    m2, rows2, _ = _train_digits(0)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in rows]  # noqa: E731
    assert strip(rows1) == strip(rows2)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    _, rows3, _ = _train_digits(1)
    assert strip(rows3) != strip(rows1)


def test_unit_weights_train_exactly_like_no_weights():
    m1, _, data = _train_digits(0, epochs=2)
    m2, _, _ = _train_digits(0, epochs=2, weights=torch.ones(len(data.train)))
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_mlp_on_digits_reaches_095():
    model, rows, data = _train_digits(0, epochs=30)
    assert evaluate(model, data.test)["acc"] >= 0.95
    assert rows[-1]["test_acc"] == evaluate(model, data.test)["acc"]


@pytest.mark.parametrize("flags, message", [
    ({"dataset": "nope"}, "unknown dataset 'nope'"),
    ({"model": "nope"}, "unknown model 'nope'"),
    ({"schedule": "nope"}, "unknown schedule 'nope'"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": -3}, "batch-size must be a positive integer"),
    ({"lr": [0.1, 0.05]}, "need --lrlen"),
    ({"lr": [0.1, 0.05], "lrlen": [10]}, "one positive epoch count per --lr"),
    ({"dataset": "mnist", "data_dir": "/does/not/exist"}, "does not exist"),
    ({"data_dir": "/tmp"}, "--data-dir is a setting of --dataset"),  # digits reads no directory
])
def test_bad_config_values_raise_one_line(flags, message):
    with pytest.raises(UsageError, match=message) as err:
        resolve_config(TrainConfig, None, **flags).validate()
    assert "\n" not in str(err.value)


def test_config_file_unknown_key_and_override(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("epochs: 7\nmodel: logreg\n")
    cfg = resolve_config(TrainConfig, str(good), epochs=3)
    assert (cfg.epochs, cfg.model) == (3, "logreg")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 7\n")
    with pytest.raises(UsageError, match="unknown key.*epochz"):
        resolve_config(TrainConfig, str(bad))
    with pytest.raises(UsageError, match="cannot read config file"):
        resolve_config(TrainConfig, str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1,\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        resolve_config(TrainConfig, str(broken))


def test_ray_train_scratch_storage_is_removed_and_a_given_one_kept(tmp_path):
    from raypkg.engine.ray_train import run_storage

    with run_storage(None) as scratch:
        assert scratch.is_dir() and scratch.name.startswith("effray-ray-train-")
        (scratch / "checkpoint").write_text("x")
    assert not scratch.exists()  # LiPT's shard pre-training on Ray Train left these behind
    with run_storage(tmp_path / "ray") as given:
        given.mkdir()
    assert given == tmp_path / "ray" and given.is_dir()


def test_a_key_given_twice_in_a_json_config_file_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"epochs": 2, "epochs": 3}')
    with pytest.raises(UsageError, match="key epochs is given twice"):
        resolve_config(TrainConfig, str(path))
    path.write_text('{"epochs": 2, "lr": [0.2]}')
    assert resolve_config(TrainConfig, str(path)).lr == [0.2]


def _cut(plan, n_positions: int, epoch: int = 0, world_size: int = 1) -> list[int]:
    """The batch sizes ``plan`` yields on rank 0 in ``epoch``, which must be its step count."""
    from types import SimpleNamespace

    ctx = SimpleNamespace(epoch=epoch, rank=0, world_size=world_size,
                          train=SimpleNamespace(x=torch.zeros(n_positions, 1), y=torch.zeros(n_positions), streamed=False))
    sizes = [len(b.positions) for b in plan.batches(ctx)]
    assert len(sizes) == plan.steps(epoch, 0, world_size)
    return sizes


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_plan_cuts_its_batches_one_way_and_drop_last_drops_only_a_ragged_last_one(drop_last):
    from raypkg.engine.plans import ShuffledBatches
    from raypkg.methods.crest.plan import RandomSubsetPlan
    from raypkg.methods.infobatch.plan import InfoBatchPlan
    from raypkg.selection.adaptive import SubsetPlan
    from raypkg.selection.methods.rs2 import RS2Plan

    n = 100  # batch 16: six full batches and a ragged one of 4
    plans = [ShuffledBatches(n, 16, seed=0), InfoBatchPlan(n, 16, seed=0, prune_ratio=0.0, pruning_epochs=1),
             RS2Plan([(torch.arange(n), n)], 16, seed=0), RandomSubsetPlan(n, 1.0, 16, seed=0),
             SubsetPlan(n, torch.arange(n), torch.ones(n), "loss", None, 16, seed=0)]
    for plan in plans:
        plan.drop_last = drop_last
        assert _cut(plan, n) == [16] * 6 + ([] if drop_last else [4]), type(plan).__name__
        assert _cut(plan, n, world_size=2) == [16] * 3 + ([] if drop_last else [2])  # 50 a rank
    small = ShuffledBatches(10, 16, seed=0)  # one batch, smaller than --batch-size: kept
    small.drop_last = drop_last
    assert _cut(small, 10) == [10]


def test_drop_last_trains_exactly_as_before_when_no_batch_is_ragged():
    """1,347 digits at batch 449: three full batches an epoch, nothing to drop."""
    data = load_dataset("digits", seed=0)
    histories = []
    for drop_last in (False, True):
        cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=2, batch_size=449, seed=0,
                          drop_last=drop_last, progress=False).validate()
        seed_everything(0)
        model = build_model("mlp", data.input_shape, data.num_classes)
        histories.append([{k: v for k, v in r.items() if k not in CLOCK_COLUMNS}
                          for r in fit(model, data.train, data.test, cfg)])
    assert len(data.train) == 3 * 449 and histories[0] == histories[1]
