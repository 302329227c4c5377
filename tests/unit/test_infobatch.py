"""InfoBatch (Qin et al., ICLR 2024): the rescaled pruning keeps an epoch's expected
gradient, the plan anneals to the full data, r = 0 is plain training, and a run reports
the steps it saved."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import raypkg
from raypkg.engine.plans import epoch_permutation
from raypkg.methods.infobatch.plan import InfoBatchPlan, epoch_weights


def per_example_gradients(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row i: the gradient of example i's cross-entropy at the linear model ``w``."""
    rows = []
    for xi, yi in zip(x, y):
        wi = w.clone().requires_grad_()
        F.cross_entropy((xi @ wi)[None], yi[None]).backward()
        rows.append(wi.grad.flatten())
    return torch.stack(rows)


@pytest.mark.parametrize("prune_ratio", [0.3, 0.5, 0.8])
def test_an_epochs_expected_gradient_equals_the_full_datas_exactly(prune_ratio):
    """E over every keep/prune outcome of the well-learned examples, each with its exact
    probability, of sum_i w_i g_i equals sum_i g_i (eq. 4), on a fixed model."""
    g = torch.Generator().manual_seed(0)
    x, y, w = torch.randn(7, 4, generator=g), torch.randint(0, 3, (7,), generator=g), torch.randn(4, 3, generator=g)
    grads = per_example_gradients(w, x, y).double()
    scores = F.cross_entropy(x @ w, y, reduction="none")
    well_learned = (scores < scores.mean()).nonzero().flatten()
    assert 0 < len(well_learned) < 7
    expected = torch.zeros_like(grads[0])
    for outcome in itertools.product([True, False], repeat=len(well_learned)):
        kept_draw = torch.ones(7, dtype=torch.bool)
        kept_draw[well_learned] = torch.tensor(outcome)
        kept = int(sum(outcome))
        probability = (1 - prune_ratio) ** kept * prune_ratio ** (len(outcome) - kept)
        expected += probability * (epoch_weights(scores, kept_draw, prune_ratio).double()[:, None] * grads).sum(0)
    # exact up to the float32 rounding of the weight 1/(1-r)
    torch.testing.assert_close(expected, grads.sum(0), rtol=1e-7, atol=1e-9)


def test_the_plan_prunes_only_well_learned_examples_then_anneals_to_all_the_data():
    n, batch = 200, 16
    plan = InfoBatchPlan(n, batch, seed=3, prune_ratio=0.5, pruning_epochs=2)
    plan.scores = torch.linspace(0, 1, n)  # the first half is below the mean
    for epoch in (0, 1):
        positions, weights = plan.epoch_plan(epoch)
        kept = set(positions.tolist())
        assert set(range(n // 2, n)) <= kept  # every example at or above the mean stays
        assert 0 < n - len(kept) < n // 2
        assert torch.equal(weights, torch.where(positions < n // 2, 2.0, 1.0))
        assert plan.steps(epoch, 0, 1) == math.ceil(len(positions) / batch)
    positions, weights = plan.epoch_plan(2)  # annealing: the engine's own shuffle, unweighted
    assert weights is None and torch.equal(positions, epoch_permutation(n, 3, 2))


def test_prune_ratio_0_trains_exactly_like_full_training():
    common = dict(save=False, dataset="digits", model="mlp", epochs=3, progress=False)
    plain = raypkg.run("train", **common)
    infobatch = raypkg.run("infobatch", prune_ratio=0.0, **common)
    assert plain.metrics["train_loss"].tolist() == infobatch.metrics["train_loss"].tolist()
    assert infobatch.summary["steps_saved"] == 0 and infobatch.summary["test_acc"] == plain.summary["test_acc"]


def test_a_run_saves_steps_and_trains_on_everything_in_its_last_epochs():
    result = raypkg.run("infobatch", save=False, dataset="digits", model="mlp", epochs=8, delta=0.75, progress=False)
    s, n, batch = result.summary, result.summary["train_size"], 64
    kept = s["kept_per_epoch"]
    assert kept[0] == n and kept[-2:] == [n, n]  # equal scores at the start; epochs 7 and 8 anneal
    assert all(k < n for k in kept[1:6])
    assert s["steps"] == sum(k // batch for k in kept) and s["full_steps"] == 8 * (n // batch)  # ragged batches dropped
    assert 0 < s["steps_saved"] < 0.5 and result.metrics["infobatch_kept"].tolist() == kept


@pytest.mark.slow
def test_on_two_ray_train_workers_the_plan_prunes_with_the_scores_gathered_over_ranks(ray_session):
    """The callback's scores are the loop's plan's on every rank (one object through Ray
    Train), all-reduced each epoch: pruning happens, and each rank takes its half of the
    epoch's kept examples. With RigL stacked on it (`--with sparse`), every rank ends with
    the same masks."""
    result = raypkg.run("infobatch+sparse", save=False, dataset="digits", model="mlp", epochs=3, delta=0.34,
                        workers=2, density=0.2, update_frequency=4, progress=False)
    s, n, batch = result.summary, result.summary["train_size"], 64
    digests = s["sparse"]["rank_mask_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] == s["sparse"]["mask_digest"]
    kept = s["kept_per_epoch"]
    assert kept[0] == n and kept[1] < n and kept[2] == n  # epoch 2 pruned, epoch 3 anneals
    assert s["steps"] == sum(math.ceil(k / 2) // batch for k in kept)  # rank 0's steps, ragged batches dropped
    assert s["full_steps"] == 3 * (math.ceil(n / 2) // batch)


def test_rigl_under_infobatch_follows_the_steps_actually_taken():
    """Stacked on InfoBatch, whose epochs shrink as its scores change, RigL's horizon (the
    cosine death rate's end and the last-update guard) is the number of steps the run took,
    not the full-data count the plan gives before any score exists; no mask update comes at
    the last step; on a fixed plan the horizon is the one it always was."""
    from raypkg.data import load_dataset
    from raypkg.engine.config import TrainConfig
    from raypkg.engine.loop import fit, seed_everything
    from raypkg.methods.infobatch.plan import InfoBatch
    from raypkg.methods.sparse.dst import SparseTraining
    from raypkg.models.registry import build_model

    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(memory_format="contiguous", epochs=6, batch_size=64, progress=False, precision="fp32").validate()
    for pruned in (True, False):
        seed_everything(0)
        model = build_model("mlp", data.input_shape, data.num_classes)
        infobatch = InfoBatch(len(data.train), cfg.batch_size, cfg.seed, 0.5 if pruned else 0.0, pruning_epochs=5)
        dst = SparseTraining(0.2, "ERK", seed=0, growth="gradient", update_frequency=5)
        fit(model, data.train, None, cfg, plan=infobatch.plan, callbacks=[infobatch, dst])
        full = cfg.epochs * (len(data.train) // cfg.batch_size)
        assert dst.total_steps == infobatch.steps  # before: the plan's count at fit start, full-data epochs
        assert (infobatch.steps < full) is pruned
        assert dst.updates and all(u["step"] < infobatch.steps for u in dst.updates)
