"""Submodular selectors (facility-location, graphcut, logdet and DeepCore's four optimizers)
and CCS stratified sampling (``--stratify ccs``), against values worked out by hand."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from click.testing import CliRunner
from helpers import tiny_problem

from raypkg.errors import UsageError
from raypkg.selection import Keep, select
from raypkg.selection.config import CoresetConfig
from raypkg.selection.facility_location import facility_location, objective
from raypkg.selection.methods.submodular import (
    OPTIMIZERS,
    FacilityLocation,
    GraphCut,
    LogDeterminant,
    cosine_similarity,
    maximize,
    submodular_greedy,
)
from raypkg.selection.stratify import ccs_positions, paper_beta, strata_allocation

torch.set_num_threads(1)
FUNCTIONS = ("facility-location", "graphcut", "logdet")


def random_psd(n: int, seed: int = 0) -> torch.Tensor:
    """A float64 PSD matrix with unequal diagonal entries (so that singletons differ)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    a *= torch.linspace(0.5, 1.5, n, dtype=torch.float64)[:, None]
    return a @ a.T


def features_similarity(n: int = 40, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return cosine_similarity(torch.randn(n, 5, generator=gen, dtype=torch.float64))


# ------------------------------------------------------------------------------ functions

def test_cosine_similarity_is_deepcores_shifted_cosine():
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    sim = cosine_similarity(h)
    expected = torch.tensor([[1.0, 0.5, 0.0, 0.5], [0.5, 1.0, 0.5, 0.5], [0.0, 0.5, 1.0, 0.5],
                             [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)  # a zero vector: cosine 0
    torch.testing.assert_close(sim, expected)


@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_logdet_greedy_is_brute_force_for_one_and_two_picks(ridge):
    sim = random_psd(6)
    big = sim + ridge * torch.eye(6, dtype=torch.float64)

    def logdet(s):
        return torch.logdet(big[list(s)][:, list(s)]).item()

    picks, gains = submodular_greedy(sim, 1, "logdet", "naive", ridge=ridge)
    best = max(range(6), key=lambda j: logdet([j]))  # the best singleton by brute force
    assert picks.tolist() == [best] and gains[0].item() == pytest.approx(logdet([best]))
    picks, gains = submodular_greedy(sim, 2, "logdet", "naive", ridge=ridge)
    second = max((x for x in range(6) if x != best), key=lambda x: logdet([best, x]))  # greedy by hand
    assert picks.tolist() == [best, second]
    assert gains.sum().item() == pytest.approx(logdet([best, second]), rel=1e-9)


def test_logdet_gain_is_the_schur_complement_at_every_step():
    sim, ridge = random_psd(8, seed=1), 0.3
    big = sim + ridge * torch.eye(8, dtype=torch.float64)
    fn = LogDeterminant(sim, 4, ridge)
    chosen = []
    for j in (2, 5, 0):
        fn.add(j)
        chosen.append(j)
        rest = torch.tensor([x for x in range(8) if x not in chosen])
        base = torch.logdet(big[chosen][:, chosen])
        by_hand = torch.stack([torch.logdet(big[chosen + [int(x)]][:, chosen + [int(x)]]) - base for x in rest])
        torch.testing.assert_close(fn.gains(rest), by_hand)


def test_graphcut_gain_is_its_closed_form_on_four_points():
    sim = torch.tensor([[1.0, 0.2, 0.6, 0.1], [0.2, 1.0, 0.3, 0.8], [0.6, 0.3, 1.0, 0.4], [0.1, 0.8, 0.4, 1.0]],
                       dtype=torch.float64)
    lam = 0.7

    def f(s):  # F(S) = sum_{i in V, j in S} s_ij - lam sum_{i, j in S} s_ij
        s = list(s)
        return sim[:, s].sum().item() - lam * sim[s][:, s].sum().item()

    fn = GraphCut(sim, lam)
    fn.add(0)
    # gain(2 | {0}) = sum_i s_i2 - lam (s_22 + 2 s_02) = 2.3 - 0.7 * (1 + 1.2) = 0.76
    assert fn.gains(torch.tensor([2])).item() == pytest.approx(0.76)
    assert fn.gains(torch.tensor([1, 2, 3])).tolist() == pytest.approx([f([0, x]) - f([0]) for x in (1, 2, 3)])
    fn.add(3)
    assert fn.gains(torch.tensor([1])).item() == pytest.approx(f([0, 3, 1]) - f([0, 3]))


def test_facility_location_value_is_the_greedy_by_hand():
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(7, 7, generator=gen, dtype=torch.float64)
    sim = (a + a.T) / 2
    sim.fill_diagonal_(1.0)
    by_hand = []
    for _ in range(4):  # add the point that raises F(S) = sum_i max_{j in S} s_ij the most
        by_hand.append(max((x for x in range(7) if x not in by_hand), key=lambda x: objective(sim, by_hand + [x])))
    for optimizer in ("naive", "lazy", "approximate-lazy"):
        picks, gains = submodular_greedy(sim, 4, "facility-location", optimizer)
        assert picks.tolist() == by_hand
        assert gains.sum().item() == pytest.approx(objective(sim, by_hand), rel=1e-12)
    assert maximize(FacilityLocation(sim), 7, 4, "naive", 1e-9)[0] == by_hand


# ----------------------------------------------------------------------------- optimizers

def test_every_optimizer_takes_the_top_k_of_a_modular_function():
    """A diagonal similarity makes facility location modular (F(S) = sum_{j in S} w_j), and
    graph cut with lam = 0 is modular (gain = column sum): each optimizer takes the top k.
    Stochastic greedy's sample, ceil(n / k ln 100) = 16 >= n, then holds every point."""
    w = torch.tensor([0.3, 0.9, 0.1, 0.7, 0.5, 0.8, 0.2, 0.6, 0.4, 0.05], dtype=torch.float64)
    top = set(torch.topk(w, 3).indices.tolist())
    sim = features_similarity(10)
    top_cut = set(torch.topk(sim.sum(0), 3).indices.tolist())
    for optimizer in OPTIMIZERS:
        assert set(submodular_greedy(torch.diag(w), 3, "facility-location", optimizer)[0].tolist()) == top
        assert set(submodular_greedy(sim, 3, "graphcut", optimizer, lam=0.0)[0].tolist()) == top_cut


@pytest.mark.parametrize("function", FUNCTIONS)
def test_lazy_equals_naive_exactly(function):
    sim = features_similarity(40)
    naive, naive_gains = submodular_greedy(sim, 12, function, "naive")
    lazy, lazy_gains = submodular_greedy(sim, 12, function, "lazy")
    assert naive.tolist() == lazy.tolist()
    torch.testing.assert_close(naive_gains, lazy_gains)
    # the generic optimizers on facility location give what its exact incremental greedy does
    exact = facility_location([sim], [12])[0].picks.tolist()
    for optimizer in ("naive", "lazy"):
        assert maximize(FacilityLocation(sim), 40, 12, optimizer, 1e-9)[0] == exact


def test_approximate_lazy_and_stochastic_stay_close_to_greedy():
    sim = features_similarity(60, seed=3)
    greedy = objective(sim, submodular_greedy(sim, 10, "facility-location", "naive")[0].tolist())
    for optimizer in ("approximate-lazy", "stochastic"):
        picks = submodular_greedy(sim, 10, "facility-location", optimizer, seed=1)[0].tolist()
        assert len(set(picks)) == 10 and objective(sim, picks) >= (1 - 1 / math.e - 0.01) * greedy
    # DeepCore's approximate rule never loops on negative gains (graph cut, lam 1, large S)
    picks, gains = submodular_greedy(sim, 50, "graphcut", "approximate-lazy")
    assert len(set(picks.tolist())) == 50 and gains[-1] < 0


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_selectors_return_the_exact_budget_per_class(function, optimizer):
    model, data = tiny_problem()
    res = select(function, model, data, Keep(fraction=0.25), options={"optimizer": optimizer})
    assert torch.bincount(res.labels, minlength=3).tolist() == [10, 10, 10]
    assert res.positions.unique().numel() == 30 and bool((res.weights == 1).all())
    assert res.all_scores is None and res.scores is not None


def test_gradient_space_and_bad_options():
    model, data = tiny_problem()
    res = select("logdet", model, data, Keep(class_budget=4), options={"space": "gradients"})
    assert torch.bincount(res.labels).tolist() == [4, 4, 4]
    for bad, match in (({"optimizer": "greedy"}, "unknown submodular optimizer 'greedy'"),
                       ({"space": "logits"}, "unknown similarity space"), ({"ridge": 0}, "ridge must be > 0")):
        with pytest.raises(UsageError, match=match) as err:
            select("logdet", model, data, Keep(fraction=0.2), options=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="unknown option"):
        select("facility-location", model, data, Keep(fraction=0.2), options={"lam": 2})


# ------------------------------------------------------------------------------------ CCS

def test_ccs_allocation_is_algorithm_1_by_hand():
    # smallest first: 1 -> min(1, 6 // 3) = 1; 2 -> min(2, 5 // 2) = 2; 10 -> min(10, 3 // 1) = 3
    assert strata_allocation([1, 2, 10], 6) == [1, 2, 3]
    assert strata_allocation([10, 1, 2], 6) == [3, 1, 2]
    assert strata_allocation([0, 5, 5], 6) == [0, 3, 3]  # an empty stratum takes nothing
    assert strata_allocation([4, 4, 4], 7) == [2, 2, 3]  # equal sizes: the lower stratum first
    # stratum sizes [1, 2, 10] over scores in [0, 3] cut into 3 ranges of width 1
    scores = torch.tensor([0.0] + [1.2, 1.7] + [2.0 + 0.1 * i for i in range(10)], dtype=torch.float64)
    positions = torch.arange(100, 113)
    picked = ccs_positions(scores, positions, 6, beta=0.0, strata=3, generator=torch.Generator().manual_seed(0))
    got = scores[picked - 100]
    assert [int((got < 1).sum()), int(((got >= 1) & (got < 2)).sum()), int((got >= 2).sum())] == [1, 2, 3]


def test_ccs_never_picks_the_hardest_beta_share_and_meets_the_budget():
    gen = torch.Generator().manual_seed(0)
    n = 200
    scores = torch.rand(n, generator=gen, dtype=torch.float64)
    positions = torch.randperm(1000, generator=gen)[:n]
    hardest = set(positions[torch.topk(scores, 60).indices].tolist())  # floor(0.3 * 200)
    for k in (1, 20, 77, 140):
        for seed in range(5):
            picked = ccs_positions(scores, positions, k, 0.3, 50, torch.Generator().manual_seed(seed))
            assert len(picked) == k and picked.unique().numel() == k
            assert not hardest & set(picked.tolist()) and set(picked.tolist()) <= set(positions.tolist())
    # beta leaving fewer than k: it drops only n - k, and the budget is still met
    assert len(ccs_positions(scores, positions, 190, 0.3, 50, gen)) == 190


def test_ccs_with_one_stratum_is_uniform_sampling_of_the_rest():
    scores = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.0], dtype=torch.float64)
    positions = torch.arange(10) * 10
    got = ccs_positions(scores, positions, 4, 0.2, strata=1, generator=torch.Generator().manual_seed(7))
    rest = torch.sort(scores, descending=True, stable=True).indices[2:]  # 9.0 and 8.0 dropped
    expected = positions[rest[torch.randperm(8, generator=torch.Generator().manual_seed(7))[:4]]]
    assert got.tolist() == expected.tolist()
    counts = torch.zeros(10)
    for seed in range(400):  # and every kept example is about equally likely: 4 / 8
        counts[ccs_positions(scores, positions, 4, 0.2, 1, torch.Generator().manual_seed(seed)) // 10] += 1
    assert counts[[2, 6]].sum() == 0 and bool(((counts[rest] / 400 - 0.5).abs() < 0.1).all())


def test_paper_beta_by_fraction():
    assert [paper_beta(f) for f in (0.01, 0.1, 0.2, 0.25, 0.29, 0.3, 0.5, 1.0)] == \
        [0.3, 0.3, 0.2, 0.1, 0.1, 0.0, 0.0, 0.0]


def test_select_grand_with_ccs_keeps_class_budgets_and_the_scores():
    model, data = tiny_problem()
    res = select("grand", model, data, Keep(fraction=0.25, stratify="ccs", ccs_beta=0.2))
    assert torch.bincount(res.labels).tolist() == [10, 10, 10] and bool((res.weights == 1).all())
    assert res.info["stratify"] == "ccs" and res.info["ccs_beta"] == 0.2
    torch.testing.assert_close(res.scores, res.all_scores[res.positions])
    y = data.y
    for c in range(3):  # the hardest floor(0.2 * 40) = 8 of each class are never picked
        pos = torch.nonzero(y == c).squeeze(1)
        hardest = pos[torch.sort(res.all_scores[pos], descending=True, stable=True).indices[:8]]
        assert not set(hardest.tolist()) & set(res.positions.tolist())
    top = select("grand", model, data, Keep(fraction=0.25))
    assert set(top.positions.tolist()) != set(res.positions.tolist())
    again = select("grand", model, data, Keep(fraction=0.25, stratify="ccs", ccs_beta=0.2))
    assert res.positions.tolist() == again.positions.tolist()  # seeded


def test_ccs_is_refused_for_a_selector_without_scores_and_bad_betas():
    model, data = tiny_problem(n=30)
    with pytest.raises(UsageError) as err:
        select("uniform", None, data, Keep(fraction=0.5, stratify="ccs"))
    assert str(err.value) == ("--stratify ccs needs a score-based selector (cal, deepfool, el2n, entropy, forgetting, "
                              "grand, least-confidence, margin): uniform returns no per-example scores")
    with pytest.raises(UsageError, match="craig returns no per-example scores"):  # before any warm-up
        CoresetConfig(selection="craig", stratify="ccs").validate()
    for bad in (dict(stratify="ccs", ccs_beta=1.0), dict(stratify="ccs", ccs_beta=-0.1), dict(ccs_beta=0.1),
                dict(stratify="nope")):
        with pytest.raises(UsageError):
            select("grand", model, data, Keep(fraction=0.5, **bad))
    for bad in (dict(stratify="ccs", ccs_beta=1.0), dict(ccs_beta=0.2), dict(stratify="x"),
                dict(stratify="ccs", ccs_beta=0.6, fraction=0.5)):
        with pytest.raises(UsageError):
            CoresetConfig(selection="grand", **{"fraction": 0.1, **bad}).validate()


def test_cache_keys_include_the_stratification():
    from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, SELECTION_EXCLUDE, config_key, pretrain_config

    base = CoresetConfig(selection="grand").resolved().validate()
    for change in ({"stratify": "ccs"}, {"stratify": "ccs", "ccs_beta": 0.1}):
        other = dataclasses.replace(base, **change).validate()
        assert config_key(other, SELECTION_EXCLUDE) != config_key(base, SELECTION_EXCLUDE)
        assert config_key(pretrain_config(other, 0), PRETRAIN_EXCLUDE) == \
            config_key(pretrain_config(base, 0), PRETRAIN_EXCLUDE)
    one, two = (dataclasses.replace(base, stratify="ccs", ccs_beta=b) for b in (0.1, 0.2))
    assert config_key(one, SELECTION_EXCLUDE) != config_key(two, SELECTION_EXCLUDE)


# ------------------------------------------------------------------------------------ CLI

def run_cli(*args):
    from raypkg.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_stratify_ccs_with_uniform_is_refused_in_one_line(tmp_path):
    res = run_cli("run", "coreset", "--selection", "uniform", "--stratify", "ccs", "--dataset", "digits",
                  "--model", "logreg", "--epochs", "1", "--out", str(tmp_path), "--wandb", "disabled", "--no-progress")
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--stratify ccs needs a score-based selector" in lines[0]


def test_cli_run_coreset_grand_with_ccs(tmp_path):
    res = run_cli("run", "coreset", "--selection", "grand", "--stratify", "ccs", "--dataset", "digits",
                  "--model", "logreg", "--epochs", "1", "--pretrain-epochs", "1", "--out", str(tmp_path),
                  "--wandb", "disabled", "--no-progress")
    assert res.exit_code == 0, res.output
    run_dir = res.output.strip().splitlines()[-1].split("run directory: ")[1]
    summary = json.loads(open(f"{run_dir}/summary.json").read())
    assert summary["subset_size"] == round(0.1 * summary["train_size"]) and summary["test_acc"] is not None

