"""The selection library's math: embeddings, facility location, NNLS/OMP, Glister, budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import autograd_last_layer_grads, tiny_problem, train_on_subset

from raypkg.errors import UsageError
from raypkg.selection import Keep, Scoring, select
from raypkg.selection.budget import class_budgets, largest_remainder, subset_size
from raypkg.selection.embeddings import (
    DenseEmbedding,
    EmbeddingKind,
    FactoredEmbedding,
    factored_norms,
    logit_gradients,
    logits_and_features,
    projection_matrix,
)
from raypkg.selection.facility_location import (
    embedding_facility_location,
    greedy_batched,
    greedy_dense,
    greedy_stream,
    objective,
    pad_blocks,
    similarity_from_distances,
)
from raypkg.selection.methods.glister import glister_greedy
from raypkg.selection.methods.gradmatch import omp_select
from raypkg.selection.nnls import nnls_ridge

METHODS = ("uniform", "rs2", "grand", "glister", "gradmatch", "craig")


# ---------------------------------------------------------------------------- embeddings

def test_closed_form_embedding_equals_autograd_per_example_gradients():
    model, data = tiny_problem()
    z, h = logits_and_features(model, data.x)
    g = logit_gradients(z, data.y)
    emb = FactoredEmbedding(g, h)
    exact = autograd_last_layer_grads(model, data)
    assert exact.dtype == torch.float64 and emb.materialize().shape == exact.shape
    torch.testing.assert_close(emb.materialize(), exact, rtol=1e-10, atol=1e-12)
    # norms, kernels and dot products without materialising e
    torch.testing.assert_close(factored_norms(g, h), exact.norm(dim=1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(emb.kernel(emb), exact @ exact.T, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(emb.dot(emb.sum_vector()), exact @ exact.sum(0), rtol=1e-10, atol=1e-12)
    w = torch.rand(len(data), dtype=torch.float64)
    torch.testing.assert_close(emb.dot(emb.sum_vector(w)), exact @ (w @ exact), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(emb.distances(chunk=7), torch.cdist(exact, exact), rtol=1e-6, atol=1e-6)
    # variants: g alone is the bias gradient; proj is e @ P
    torch.testing.assert_close(EmbeddingKind("bias").embed(g, h).materialize(), exact[:, :3])
    p = projection_matrix(3, h.shape[1], 16, seed=0).double()
    proj = EmbeddingKind("proj", 16, 0).embed(g, h).materialize()
    torch.testing.assert_close(proj, exact @ p, rtol=1e-10, atol=1e-12)
    kind = EmbeddingKind("proj", 16, 0)
    torch.testing.assert_close(kind.mean_vector(g, h), exact.mean(0) @ p, rtol=1e-10, atol=1e-12)


def test_logit_shift_is_the_exact_last_layer_step():
    """z(theta - sum_j e_j) - z(theta) for the head equals EmbeddingKind.logit_shift."""
    model, data = tiny_problem(n=30)
    z, h = logits_and_features(model, data.x)
    g = logit_gradients(z, data.y)
    step = autograd_last_layer_grads(model, data)[:4].sum(0)
    c, d = 3, h.shape[1]
    new_z = h @ (model.head.weight - step[c:].view(c, d)).T + (model.head.bias - step[:c])
    torch.testing.assert_close(z + EmbeddingKind("full").logit_shift(h, g[:4], h[:4]), new_z.detach())


# ------------------------------------------------------------------------------- budgets

def test_budgets_are_exact_and_split_by_class_share():
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert largest_remainder(7, [5, 3, 2]) == [4, 2, 1]  # 3.5, 2.1, 1.4 -> floor 3,2,1 + 1 to the .5
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    assert class_budgets(y, 3, 11) == [6, 3, 2]  # 5.5, 3.3, 2.2
    assert subset_size(100, fraction=0.105) == 11 and subset_size(100, budget=3) == 3
    assert subset_size(7, fraction=1.0) == 7


@pytest.mark.parametrize("bad", [dict(fraction=0.0), dict(fraction=1.5), dict(fraction=-0.1),
                                 dict(budget=0), dict(budget=10_000), dict(fraction=0.1, budget=3), {}])
def test_bad_sizes_are_usage_errors(bad):
    model, data = tiny_problem(n=30)
    with pytest.raises(UsageError):
        select("uniform", model, data, Keep(**bad))


def test_unknown_method_option_and_class_budget_are_usage_errors():
    model, data = tiny_problem(n=30)
    with pytest.raises(UsageError, match="unknown selection method 'nope'"):
        select("nope", model, data, Keep(fraction=0.5))
    with pytest.raises(UsageError, match="unknown option"):
        select("glister", model, data, Keep(fraction=0.5), options={"lamda": 1})
    with pytest.raises(UsageError, match="larger than class"):
        select("craig", model, data, Keep(class_budget=11))  # 10 examples per class
    with pytest.raises(UsageError, match="uses one model"):
        select("craig", [model, model], data, Keep(fraction=0.5))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fraction,balance", [(0.1, True), (0.37, True), (0.25, False)])
def test_every_method_returns_exactly_the_budget(method, fraction, balance):
    model, data = tiny_problem(n=150, classes=3)
    res = select(method, model, data, Keep(fraction=fraction, balance=balance), seed=1, scoring=Scoring(lr=0.05))
    k = subset_size(len(data), fraction)
    assert len(res) == k and len(torch.unique(res.indices)) == k
    assert bool((res.weights > 0).all())
    assert set(res.indices.tolist()) <= set(data.index.tolist())
    torch.testing.assert_close(data.index[res.positions], res.indices)
    if balance:
        got = torch.bincount(data.y[res.positions], minlength=3).tolist()
        assert got == class_budgets(data.y, 3, k)
    again = select(method, model, data, Keep(fraction=fraction, balance=balance), seed=1, scoring=Scoring(lr=0.05))
    assert again.indices.tolist() == res.indices.tolist()  # same seed, same indices


def test_uniform_depends_on_the_seed_only():
    model, data = tiny_problem(n=90)
    a = select("uniform", None, data, Keep(fraction=0.3), seed=0).indices.tolist()
    assert a == select("uniform", model, data, Keep(fraction=0.3), seed=0).indices.tolist()
    assert a != select("uniform", None, data, Keep(fraction=0.3), seed=1).indices.tolist()


# --------------------------------------------------------------------------------- RS2
@pytest.mark.parametrize("balance", [True, False])
def test_rs2_rounds_use_every_example_once_before_any_repeats(balance):
    """Without replacement across rounds: the floor(n_c / k_c) rounds of one shuffle are
    disjoint, each exactly the budget (per class when balanced); the next shuffle differs."""
    from raypkg.selection.methods.rs2 import blocks_of, rs2_round
    _, data = tiny_problem(n=150, classes=3)
    k = 30
    budgets = class_budgets(data.y, 3, k) if balance else None
    blocks = blocks_of(data.y, budgets, k)
    rounds = [rs2_round(blocks, 4, r) for r in range(5)]  # 150 / 30: one shuffle serves 5 rounds
    assert all(len(r) == k for r in rounds)
    assert len(torch.unique(torch.cat(rounds))) == 150
    if balance:
        assert all(torch.bincount(data.y[r], minlength=3).tolist() == budgets for r in rounds)
    assert rs2_round(blocks, 4, 5).tolist() != rounds[0].tolist()  # a new shuffle
    first = select("rs2", None, data, Keep(fraction=0.2, balance=balance), seed=4)
    assert first.positions.tolist() == rounds[0].tolist()


def test_rs2_trains_each_epoch_on_that_epochs_round():
    from raypkg.data.base import DataSplits
    from raypkg.engine.callbacks import Callback
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.methods.rs2 import blocks_of, rs2_round

    _, data = tiny_problem(n=150, classes=3, dtype=torch.float32)
    splits = DataSplits("tiny", data, data)

    class Seen(Callback):
        def __init__(self):
            self.epochs = []

        def on_epoch_start(self, ctx):
            self.epochs.append([])

        def on_after_backward(self, ctx):
            self.epochs[-1] += ctx.batch.positions.tolist()

    cfg = CoresetConfig(selection="rs2", fraction=0.2, epochs=3, batch_size=8, seed=2, model="logreg", progress=False,
                        precision="fp32", memory_format="contiguous", drop_last=False)  # every example of a round
    result = select("rs2", None, data, Keep(fraction=0.2), seed=2)
    seen = Seen()
    train_on_subset(cfg, splits, result, callbacks=[seen])
    blocks = blocks_of(data.y, class_budgets(data.y, 3, 30), 30)
    assert [sorted(e) for e in seen.epochs] == [sorted(rs2_round(blocks, 2, r).tolist()) for r in range(3)]
    assert sorted(seen.epochs[0]) == sorted(result.positions.tolist())


# --------------------------------------------------------------------------------- GraNd

def test_grand_equals_sorting_autograd_norms_averaged_over_repeats():
    model, data = tiny_problem(n=90)
    other, _ = tiny_problem(n=90, seed=5)
    res = select("grand", [model, other], data, Keep(fraction=0.2, balance=True))
    norms = (autograd_last_layer_grads(model, data).norm(dim=1)
             + autograd_last_layer_grads(other, data).norm(dim=1)) / 2
    expected = []
    for c, k in enumerate(class_budgets(data.y, 3, 18)):
        members = torch.nonzero(data.y == c).squeeze(1)
        expected += members[torch.argsort(norms[members], descending=True)[:k]].tolist()
    assert res.positions.tolist() == expected
    torch.testing.assert_close(res.all_scores, norms, rtol=1e-9, atol=1e-12)
    unbalanced = select("grand", [model, other], data, Keep(budget=9, balance=False))
    assert unbalanced.positions.tolist() == torch.argsort(norms, descending=True)[:9].tolist()


# ---------------------------------------------------------------------- facility location

def brute_force_greedy(sim: np.ndarray, k: int, rtol: float = 1e-9) -> list[int]:
    """Reference greedy: recompute F(S + j) for every j; ties (within rtol) to the lowest j."""
    picks: list[int] = []
    for _ in range(k):
        base = sim[:, picks].max(1).clip(min=0).sum() if picks else 0.0
        gains = np.array([-np.inf if j in picks else sim[:, picks + [j]].max(1).clip(min=0).sum() - base
                          for j in range(sim.shape[1])])
        top = gains.max()
        picks.append(int(np.flatnonzero(gains >= top - rtol * abs(top))[0]))
    return picks


@pytest.mark.parametrize("seed", range(6))
def test_facility_location_greedy_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    sizes = [rng.integers(3, 13) for _ in range(4)]
    sims, budgets = [], []
    for i, n in enumerate(sizes):
        if seed % 2:  # small integers: many exact ties, so the tie-break is tested too
            s = rng.integers(0, 4, size=(n, n)).astype(np.float64)
        else:
            pts = rng.normal(size=(n, 3))
            s = similarity_from_distances(torch.cdist(torch.tensor(pts), torch.tensor(pts))).numpy()
        sims.append(torch.tensor(s))
        budgets.append(int(rng.integers(1, n + 1)))
    batch, valid = pad_blocks(sims)
    batched = greedy_batched(batch, budgets, valid)
    for s, k, res in zip(sims, budgets, batched):
        expected = brute_force_greedy(s.numpy(), k)
        assert res.picks.tolist() == expected
        assert greedy_dense(s, k).picks.tolist() == expected
        objective_curve = [objective(s, expected[:t + 1]) for t in range(k)]
        assert np.all(np.diff([0.0] + objective_curve) >= 0)  # never decreases
        np.testing.assert_allclose(res.objective.numpy(), objective_curve, rtol=1e-12)
        sizes = brute_force_cluster_sizes(s.numpy(), expected)  # not the library's cluster_weights
        assert sum(sizes) == len(s) and min(sizes) >= 1
        assert res.weights.tolist() == sizes and greedy_dense(s, k).weights.tolist() == sizes


def test_streaming_greedy_covers_all_candidates_like_the_dense_one_when_sampling_everything():
    """With epsilon tiny the sample is every unpicked point: the stochastic greedy is the greedy."""
    gen = torch.Generator().manual_seed(0)
    emb = DenseEmbedding(torch.randn(40, 5, generator=gen, dtype=torch.float64))
    dense = greedy_dense(similarity_from_distances(emb.distances()), 6)
    stream = greedy_stream(emb, 6, epsilon=1e-30)
    assert stream.picks.tolist() == dense.picks.tolist()
    torch.testing.assert_close(stream.weights, dense.weights)
    small = embedding_facility_location([emb], [6], small_block=512)[0]
    assert small.picks.tolist() == dense.picks.tolist()


def test_facility_location_budget_larger_than_block_is_a_usage_error():
    with pytest.raises(UsageError, match="larger than"):
        greedy_dense(torch.zeros(3, 3), 4)


# ---------------------------------------------------------------------- NNLS / GradMatch

def test_gram_nnls_matches_scipy_nnls_on_the_ridge_problem():
    from scipy.optimize import nnls

    gen = torch.Generator().manual_seed(3)
    for trial in range(20):
        m, e = 3 + trial % 9, 4 + trial % 5
        a = torch.randn(m, e, generator=gen, dtype=torch.float64)
        t = torch.randn(e, generator=gen, dtype=torch.float64) + (a.sum(0) if trial % 2 else 0)
        x = nnls_ridge(a @ a.T, a @ t, lam=0.3)
        aug = np.vstack([a.T.numpy(), np.sqrt(0.3) * np.eye(m)])
        ref, _ = nnls(aug, np.concatenate([t.numpy(), np.zeros(m)]))
        np.testing.assert_allclose(x.numpy(), ref, rtol=1e-9, atol=1e-10)


def test_omp_recovers_a_sparse_nonnegative_combination_and_fills_up_exactly():
    gen = torch.Generator().manual_seed(0)
    atoms = torch.randn(30, 12, generator=gen, dtype=torch.float64)
    emb = DenseEmbedding(atoms)
    # exact budget, positive weights, no duplicates; also with several atoms per step
    for atoms in (1, 3):
        pos, w, scores = omp_select(emb, 8, lam=1e-3, atoms_per_step=atoms)
        assert len(pos) == 8 and len(set(pos.tolist())) == 8 and bool((w > 0).all())
    # copies of 3 directions (4, 7, 9 of each): one pick per direction, weighted by its count
    basis = torch.randn(3, 12, generator=gen, dtype=torch.float64)
    members = torch.tensor([0] * 4 + [1] * 7 + [2] * 9)[torch.randperm(20, generator=gen)]
    pos, w, _ = omp_select(DenseEmbedding(basis[members]), 3, lam=1e-9)
    assert sorted(members[pos].tolist()) == [0, 1, 2]
    torch.testing.assert_close(w[torch.argsort(members[pos])], torch.tensor([4.0, 7.0, 9.0], dtype=torch.float64))
    # identical rows: the sum is matched by one atom (residual 0) -> the rest is random fill, weight 1
    same = DenseEmbedding(torch.ones(10, 4, dtype=torch.float64))
    pos, w, scores = omp_select(same, 5, lam=1e-6, generator=torch.Generator().manual_seed(0))
    assert len(pos) == 5 and len(set(pos.tolist())) == 5
    assert w[0] == pytest.approx(10.0, rel=1e-4) and w[1:].tolist() == [1.0] * 4
    assert torch.isnan(scores[1:]).all()


# ------------------------------------------------------------------------------ Glister

def test_glister_taylor_update_changes_picks_versus_static_top_k():
    """Two near-duplicate candidates align best with the validation gradient. The static
    top-k (DeepCore's Glister) takes both; after the Taylor step for the first one the
    validation loss along that direction is spent and the greedy moves elsewhere."""
    h = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0])
    z = torch.tensor([[0.0, 2.0], [0.0, 2.0], [0.0, 1.0], [0.0, 1.6]], dtype=torch.float64)
    g = logit_gradients(z, y)
    h_val = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z_val = torch.tensor([[0.0, 2.0], [0.0, 2.0]], dtype=torch.float64)
    y_val = torch.tensor([0, 0])
    static, _ = glister_greedy(g, h, z_val, h_val, y_val, budget=2, eta=0.0)
    updated, gains = glister_greedy(g, h, z_val, h_val, y_val, budget=2, eta=2.0)
    assert static.tolist() == [1, 0]  # the two near-duplicates
    assert updated.tolist()[0] == 1 and updated.tolist()[1] == 2
    assert gains[0] > 0


# ------------------------------------------- selections against references random picks fail

def brute_force_cluster_sizes(sim: np.ndarray, picks: list[int]) -> list[float]:
    """Each point counts for its most similar pick (ties: the earlier pick); a pick for itself."""
    sizes = [0.0] * len(picks)
    for i in range(sim.shape[0]):
        owner = picks.index(i) if i in picks else max(range(len(picks)), key=lambda a: (sim[i, picks[a]], -a))
        sizes[owner] += 1
    return sizes


def test_select_craig_is_facility_location_on_autograd_gradient_distances():
    """Per class: the brute-force greedy on max(d) - d of the autograd last-layer gradients,
    weighted by brute-force cluster sizes."""
    model, data = tiny_problem(n=90)
    res = select("craig", model, data, Keep(fraction=0.2, balance=True))
    exact = autograd_last_layer_grads(model, data)
    positions, weights = [], []
    for c, k in enumerate(class_budgets(data.y, 3, 18)):
        members = torch.nonzero(data.y == c).squeeze(1)
        d = torch.cdist(exact[members], exact[members]).numpy()
        sim = d.max() - d
        picks = brute_force_greedy(sim, k, rtol=1e-5)  # the library's embeddings are float32
        positions += members[picks].tolist()
        weights += brute_force_cluster_sizes(sim, picks)
    assert res.positions.tolist() == positions
    assert res.weights.tolist() == weights


def reference_glister(model, data, members, k, eta):
    """Greedy Glister by autograd on the head (W, b): gain_i = e_i . grad of the mean
    validation loss (the class's own examples) at the current head, then the head takes
    the step -eta * e_pick. e_i: example i's head gradient at the start."""
    z, h = logits_and_features(model, data.x[members])
    h = h.detach().double()
    y = data.y[members]
    W0, b0 = model.head.weight.detach().double(), model.head.bias.detach().double()
    e = torch.cat([logit_gradients(z.detach().double(), y), (logit_gradients(z.detach().double(), y)[:, :, None]
                                                             * h[:, None, :]).flatten(1)], 1)
    W, b = W0.clone(), b0.clone()
    picks, gains = [], []
    for _ in range(k):
        Wv, bv = W.clone().requires_grad_(), b.clone().requires_grad_()
        loss = torch.nn.functional.cross_entropy(h @ Wv.T + bv, y)
        gW, gb = torch.autograd.grad(loss, (Wv, bv))
        gain = e @ torch.cat([gb, gW.flatten()])
        gain[picks] = -float("inf")
        j = int(torch.argmax(gain))
        picks.append(j)
        gains.append(float(gain[j]))
        b, W = b - eta * e[j, :b.numel()], W - eta * e[j, b.numel():].view_as(W)
    return picks, gains


def test_select_glister_is_the_greedy_taylor_step_computed_by_autograd():
    model, data = tiny_problem(n=90)
    res = select("glister", model, data, Keep(fraction=0.2, balance=True), scoring=Scoring(lr=0.5))
    positions, gains = [], []
    for c, k in enumerate(class_budgets(data.y, 3, 18)):
        members = torch.nonzero(data.y == c).squeeze(1)
        picks, g = reference_glister(model, data, members, k, eta=0.5)
        positions += members[picks].tolist()
        gains += g
    assert res.positions.tolist() == positions
    np.testing.assert_allclose(res.scores.numpy(), gains, rtol=1e-4, atol=1e-7)
    # the Taylor update matters here: without it (DeepCore's static top-k) the picks differ
    static = select("glister", model, data, Keep(fraction=0.2, balance=True), options={"eta": 0.0},
                    scoring=Scoring(lr=0.5))
    assert static.positions.tolist() != positions


def test_select_gradmatch_matches_the_gradient_sum_far_better_than_random_picks():
    """Per class, ||sum_i e_i - sum_S w_j e_j|| of GradMatch's weighted picks, against
    random picks of the same size given their best non-negative weights (scipy NNLS)."""
    from scipy.optimize import nnls

    model, data = tiny_problem(n=150)
    res = select("gradmatch", model, data, Keep(fraction=0.1, balance=True), options={"lam": 1e-6})
    exact = autograd_last_layer_grads(model, data).numpy()
    picked = dict(zip(res.positions.tolist(), res.weights.tolist()))
    rng = np.random.default_rng(0)
    for c, k in enumerate(class_budgets(data.y, 3, 15)):
        members = torch.nonzero(data.y == c).squeeze(1).numpy()
        target = exact[members].sum(0)
        ours = [p for p in members if p in picked]
        assert len(ours) == k
        residual = np.linalg.norm(target - sum(picked[p] * exact[p] for p in ours))
        random_residuals = [nnls(exact[rng.choice(members, k, replace=False)].T, target)[1] for _ in range(20)]
        assert residual < 0.5 * np.median(random_residuals), (residual, np.median(random_residuals))
