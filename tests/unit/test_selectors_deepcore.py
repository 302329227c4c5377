"""DeepCore's uncertainty, EL2N, Herding, k-Center Greedy and Contextual Diversity selectors:
their scores and picks against closed forms and brute force on hand-made inputs."""

from __future__ import annotations

import itertools
import json
import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from helpers import identity_logreg, points, tiny_problem

from raypkg.cli import main
from raypkg.models.zoo.mlp import MLP
from raypkg.selection import Keep, select
from raypkg.selection.budget import class_budgets, subset_size
from raypkg.selection.methods.herding import herding
from raypkg.selection.methods.kcenter import k_center_greedy, symmetric_kl_from
from raypkg.selection.methods.uncertainty import uncertainty_scores

NEW = ("least-confidence", "entropy", "margin", "el2n", "herding", "kcenter", "contextual-diversity")


# --------------------------------------------------------------------------- uncertainty

LOGITS = [[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [5.0, -1.0, 2.0], [1.0, 3.0, 3.5],
          [0.5, 0.2, -3.0], [-1.0, 4.0, 0.0], [1.0, 1.0, -2.0], [0.0, 2.0, 1.0]]


def test_uncertainty_scores_equal_their_closed_forms_and_keep_deepcores_uncertain_end():
    z = torch.tensor(LOGITS, dtype=torch.float64)
    e = torch.exp(z)
    p = e / e.sum(1, keepdim=True)
    ranked = p.sort(dim=1, descending=True).values
    closed = {"least-confidence": 1 - ranked[:, 0],
              "entropy": -(p * torch.log(p)).sum(1),
              "margin": ranked[:, 1] - ranked[:, 0]}  # minus the margin: higher = more uncertain
    # the all-zero row: p = 1/3 each, the most uncertain under all three scores
    assert closed["least-confidence"][1] == pytest.approx(2 / 3)
    assert closed["entropy"][1] == pytest.approx(math.log(3))
    assert closed["margin"][1] == 0.0 and bool((closed["margin"] <= 0).all())
    data = points(LOGITS, classes=3)
    model = identity_logreg(3, 3)
    for method, expected in closed.items():
        torch.testing.assert_close(uncertainty_scores(z, method), expected, rtol=1e-12, atol=1e-12)
        # DeepCore (balanced) keeps its lowest max-logit / -entropy / margin: here the highest scores
        for balance in (False, True):
            res = select(method, model, data, Keep(budget=3, balance=balance))
            torch.testing.assert_close(res.all_scores, expected, rtol=1e-12, atol=1e-12)
            want = []
            for c, k in (enumerate(res.info["budgets"]) if balance else [(None, 3)]):
                pos = [i for i in range(len(data)) if c is None or data.y[i] == c]
                want += sorted(pos, key=lambda i: -expected[i])[:k]
            assert res.positions.tolist() == want, method
            assert 1 in want  # the uniform row
            torch.testing.assert_close(res.scores, expected[want])


# --------------------------------------------------------------------------------- EL2N

def test_el2n_is_the_error_norm_averaged_over_two_models():
    _, data = tiny_problem(n=60, seed=0)
    models = [tiny_problem(n=60, seed=s)[0] for s in (1, 2)]  # two different warm-ups, same features
    norms = []
    for model in models:
        with torch.no_grad():
            p = torch.softmax(model(data.x), dim=1)
        norms.append((p - torch.nn.functional.one_hot(data.y, 3).double()).norm(dim=1))
    expected = (norms[0] + norms[1]) / 2
    res = select("el2n", models, data, Keep(fraction=0.25))
    torch.testing.assert_close(res.all_scores, expected, rtol=1e-10, atol=1e-12)
    want = torch.cat([pos[torch.sort(expected[pos], descending=True, stable=True).indices[:k]]
                      for pos, k in [(torch.nonzero(data.y == c).squeeze(1), b)
                                     for c, b in enumerate(class_budgets(data.y, 3, 15))]])
    assert res.positions.tolist() == want.tolist()
    one = select("el2n", models[0], data, Keep(fraction=0.25))
    torch.testing.assert_close(one.all_scores, norms[0], rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------ k-Center Greedy

CLUSTERS = [[0.0, 0.0], [0.3, 0.0], [5.0, 0.0], [5.0, 0.4], [0.0, 6.0], [0.2, 6.0], [7.0, 7.0], [7.0, 7.5]]


def radius(d: torch.Tensor, chosen) -> float:
    """The k-center objective: the largest distance of a point to its nearest chosen center."""
    return float(d[:, list(chosen)].min(dim=1).values.max())


def brute_greedy(d: torch.Tensor, budget: int, first: int) -> list[int]:
    """Farthest-first from the full distance matrix."""
    chosen = [first]
    while len(chosen) < budget:
        rest = [i for i in range(len(d)) if i not in chosen]
        chosen.append(max(rest, key=lambda i: (float(d[i, chosen].min()), -i)))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kcenter_radius_equals_brute_force_over_all_subsets_with_the_same_first_center(seed):
    data = points(CLUSTERS)
    d = torch.cdist(data.x, data.x)
    res = select("kcenter", identity_logreg(2, 2), data, Keep(budget=4, balance=False), seed=seed)
    picks = res.positions.tolist()
    first = picks[0]
    assert picks == brute_greedy(d, 4, first)
    best = min(radius(d, (first, *rest)) for rest in itertools.combinations(
        [i for i in range(8) if i != first], 3))
    assert radius(d, picks) == pytest.approx(best)  # one center per cluster
    assert sorted(p // 2 for p in picks) == [0, 1, 2, 3]
    assert math.isnan(res.scores[0]) and res.scores[1:].tolist() == pytest.approx(
        [float(d[p, picks[:i + 1]].min()) for i, p in enumerate(picks[1:])])


def test_kcenter_greedy_equals_the_full_matrix_greedy_from_every_first_center():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    d = torch.cdist(x, x)
    for first in range(8):
        for budget in (1, 3, 8):
            picks, _ = k_center_greedy(x, budget, first)
            assert picks.tolist() == brute_greedy(d, budget, first)
            optimum = min(radius(d, s) for s in itertools.combinations(range(8), budget))
            assert radius(d, picks.tolist()) <= 2 * optimum + 1e-12  # Gonzalez's 2-approximation


# ----------------------------------------------------------------------- Contextual Diversity

def test_contextual_diversity_distance_is_deepcores_symmetric_kl():
    a, b = [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]
    expected = sum(0.5 * ai * math.log(ai / bi) + 0.5 * bi * math.log(bi / ai) for ai, bi in zip(a, b))
    d = symmetric_kl_from(torch.log(torch.tensor([a, b], dtype=torch.float64)), 0)
    assert d[0] == 0.0 and float(d[1]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 5])
def test_contextual_diversity_picks_equal_brute_force_greedy(seed):
    data = points(LOGITS, classes=3)
    p = torch.softmax(data.x, dim=1)
    aa, bb = p[:, None, :], p[None, :, :]
    d = (0.5 * aa * torch.log(aa / bb) + 0.5 * bb * torch.log(bb / aa)).sum(2)  # DeepCore's _metric
    res = select("contextual-diversity", identity_logreg(3, 3), data, Keep(budget=4, balance=False), seed=seed)
    picks = res.positions.tolist()
    assert picks == brute_greedy(d, 4, picks[0])


# ---------------------------------------------------------------------------------- Herding

def test_herding_picks_the_point_that_brings_the_running_mean_closest():
    # 1-D, mean 3.2. Running means: 3 -> 3.0; then 2 -> 2.5 (1 -> 2.0, 0 -> 1.5, 10 -> 6.5);
    # then 1 -> 2.0 (0 -> 1.67, 10 -> 5.0); then 10 -> 4.0 (0 -> 1.5): gaps 0.2, 0.7, 1.2, 0.8
    data = points([[0.0], [1.0], [2.0], [3.0], [10.0]])
    model = MLP((1,), 2).double()  # logistic regression: its features are the inputs
    res = select("herding", model, data, Keep(budget=4, balance=False))
    assert res.positions.tolist() == [3, 2, 1, 4]  # DeepCore's argmax would start at 10
    assert res.scores.tolist() == pytest.approx([0.2, 0.7, 1.2, 0.8])
    # 2-D: brute force over the candidates at every step
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    picks, _ = herding(x, 6)
    chosen: list[int] = []
    for _ in range(6):
        rest = [i for i in range(9) if i not in chosen]
        chosen.append(min(rest, key=lambda i: float((x.mean(0) - x[chosen + [i]].mean(0)).norm())))
    assert picks.tolist() == chosen


# ----------------------------------------------------------------------- every new selector

@pytest.mark.parametrize("method", NEW)
@pytest.mark.parametrize("fraction,balance", [(0.1, True), (0.37, True), (0.25, False)])
def test_every_new_method_returns_exactly_the_budget(method, fraction, balance):
    model, data = tiny_problem(n=150, classes=3)
    res = select(method, model, data, Keep(fraction=fraction, balance=balance), seed=1)
    k = subset_size(len(data), fraction)
    assert len(res) == k and len(torch.unique(res.indices)) == k
    assert bool((res.weights == 1).all())
    torch.testing.assert_close(data.index[res.positions], res.indices)
    if balance:
        assert torch.bincount(data.y[res.positions], minlength=3).tolist() == class_budgets(data.y, 3, k)
    again = select(method, model, data, Keep(fraction=fraction, balance=balance), seed=1)
    assert again.indices.tolist() == res.indices.tolist()


@pytest.mark.parametrize("method", NEW)
def test_run_coreset_with_each_new_selection_through_the_cli(method, tmp_path):
    torch.set_num_threads(1)
    args = ["run", "coreset", "--selection", method, "--dataset", "digits", "--model", "logreg",
            "--epochs", "1", "--pretrain-epochs", "1", "--fraction", "0.1", "--out", str(tmp_path),
            "--wandb", "disabled", "--no-progress"] + (["--repeats", "2"] if method == "el2n" else [])
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = result.output.strip().splitlines()[-1].split("run directory: ")[1]
    summary = json.loads(open(f"{run_dir}/summary.json").read())
    table = pd.read_parquet(f"{run_dir}/selection.parquet")
    assert len(table) == summary["subset_size"] == round(0.1 * summary["train_size"]) and table["index"].is_unique
    scoring = method in ("least-confidence", "entropy", "margin", "el2n")
    assert (pd.read_parquet(f"{run_dir}/scores.parquet").shape[0] == summary["train_size"]) if scoring else True
