"""Adaptive selection (`run coreset --reselect-every R --warm-start KAPPA [--per-batch]`,
CORDS's semantics): the warm-start arithmetic, the plan's full/skipped/subset epochs, the
rounds' schedule, a run that never re-selects equals training on the fixed subset bit for
bit, the rounds come from the cache on a rerun, and per-batch selection keeps whole
mini-batches at the exact budget."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
from helpers import DIGITS_TRAIN

from raypkg.data.registry import load_dataset
from raypkg.engine.callbacks import TrainContext
from raypkg.errors import UsageError
from raypkg.methods.coreset.recipe import CORESET
from raypkg.selection.adaptive import Reselect, SubsetPlan, warm_start_epochs
from raypkg.selection.config import CoresetConfig
from raypkg.selection.embeddings import FactoredEmbedding
from raypkg.selection.per_batch import batch_units, unit_embedding, unit_picks
from raypkg.selection.registry import Keep, select

TINY = dict(dataset="digits", model="mlp", epochs=6, batch_size=64, progress=False, wandb="disabled")


@pytest.mark.parametrize("epochs, kappa, fraction, expected", [
    (300, 0.5, 0.1, (15, 150)),  # CORDS's warm configs: 15 full epochs, the subset from epoch 151
    (10, 0.5, 0.1, (0, 5)),  # round(0.5) = 0: at this size the warm start is all skipped epochs
    (10, 0.5, 0.3, (2, 5)),
    (20, 0.0, 0.3, (0, 0)),  # no warm start
])
def test_warm_start_follows_cords(epochs, kappa, fraction, expected):
    assert warm_start_epochs(epochs, kappa, fraction) == expected


def planned(plan: SubsetPlan, epoch: int) -> list[int]:
    ctx = TrainContext(model=None, module=None, optimizer=None, cfg=None, device=torch.device("cpu"),
                       train=load_dataset("digits", seed=0).train, plan=plan, epoch=epoch)
    return torch.cat([b.positions for b in plan.batches(ctx)] or [torch.zeros(0, dtype=torch.long)]).tolist()


@pytest.mark.slow
def test_the_plan_trains_full_then_skips_then_trains_the_subset():
    n, subset = DIGITS_TRAIN, torch.arange(0, DIGITS_TRAIN, 5)
    plan = SubsetPlan(n, subset, torch.ones(len(subset)), "none", None, batch_size=64, seed=1, full_epochs=2,
                      skip_until=4)
    assert [plan.data_of(e) for e in range(6)] == ["full", "full", "skipped", "skipped", "subset", "subset"]
    assert [plan.steps(e, 0, 1) for e in range(6)] == [22, 22, 0, 0, 5, 5]  # ceil(1347/64), ceil(270/64)
    assert sorted(planned(plan, 1)) == list(range(n))
    assert planned(plan, 2) == []
    assert sorted(planned(plan, 4)) == subset.tolist()


def test_rounds_come_every_r_epochs_from_the_first():
    assert [e for e in range(9) if Reselect(2).is_round(e)] == [2, 4, 6, 8]  # no warm start: R, 2R, ...
    assert [e for e in range(9) if Reselect(3, first=5).is_round(e)] == [5, 8]  # after a warm start


def test_a_schedule_whose_rounds_never_come_is_refused(tmp_path):
    """Rounds at epochs >= E never happen: the run would train its initial uniform subset under
    the selector's name (issue 41), so the config is refused; one round in time is enough."""
    fixed = CoresetConfig(**TINY, out=str(tmp_path), selection="glister", fraction=0.3)
    with pytest.raises(UsageError, match="glister would never select again"):
        dataclasses.replace(fixed, reselect_every=TINY["epochs"]).resolved().validate()
    dataclasses.replace(fixed, reselect_every=TINY["epochs"] - 1).resolved().validate()


@pytest.mark.slow
def test_rounds_select_with_the_trained_model_at_the_exact_budget_and_come_back_from_the_cache(tmp_path):
    cfg = CoresetConfig(**TINY, out=str(tmp_path), selection="gradmatch", fraction=0.2, reselect_every=2,
                        warm_start=0.5, name="a").resolved().validate()
    first = CORESET.run(cfg)
    # int(0.5 * 6) = 3, round(3 * 0.2) = 1 full epoch, 2 skipped, rounds at epochs 4 and 6 (1-based)
    assert (first["warm_epochs"], first["skipped_epochs"]) == (1, 2)
    assert [r["epoch"] for r in first["selection_rounds"]] == [4, 6]
    rows = pd.read_parquet(tmp_path / "a" / "metrics.parquet")
    assert rows["train_loss"].isna().tolist() == [False, True, True, False, False, False]
    assert [s > 0 for s in rows["reselect_s"]] == [False, False, False, True, False, True]
    rounds = pd.read_parquet(tmp_path / "a" / "rounds.parquet")
    budgets = pd.read_parquet(tmp_path / "a" / "selection.parquet").groupby("label").size()  # the initial subset
    for _, picks in rounds.groupby("round"):
        assert len(picks) == first["subset_size"] and picks["index"].is_unique
        assert picks.groupby("label").size().equals(budgets)  # per class, as balanced selection asks
    assert not rounds[rounds["round"] == 0]["index"].sort_values().reset_index(drop=True).equals(
        rounds[rounds["round"] == 1]["index"].sort_values().reset_index(drop=True))  # the model moved on
    again = CORESET.run(dataclasses.replace(cfg, name="b"))
    assert again["test_acc"] == first["test_acc"]
    # the original seconds read back with each round (two timings of a selection never agree to the bit)
    assert [r["charged_s"] for r in again["selection_rounds"]] == [r["charged_s"] for r in first["selection_rounds"]]
    assert pd.read_parquet(tmp_path / "b" / "rounds.parquet").equals(rounds)


def test_a_batch_embedding_is_the_mean_of_its_examples():
    g = torch.Generator().manual_seed(0)
    emb = FactoredEmbedding(torch.randn(70, 3, generator=g, dtype=torch.float64),
                            torch.randn(70, 4, generator=g, dtype=torch.float64))
    units = batch_units(70, 8, seed=2)
    assert units.shape == (8, 8) and len(torch.unique(units)) == 64  # 70 // 8 whole batches, no repeats
    explicit = emb.materialize()
    torch.testing.assert_close(unit_embedding(emb, units).e, explicit[units].mean(1))


def test_unit_picks_keep_whole_batches_and_cut_the_last_at_the_budget():
    units = torch.arange(40).view(5, 8)
    positions, weights, scores = unit_picks(units, torch.tensor([3, 0, 4]), torch.tensor([2.0, 1.0, 5.0]),
                                            torch.tensor([0.3, 0.2, 0.1]), k=20)
    assert positions.tolist() == list(range(24, 32)) + list(range(0, 8)) + list(range(32, 36))
    assert weights.tolist() == [2.0] * 8 + [1.0] * 8 + [5.0] * 4


@pytest.mark.parametrize("method", ["gradmatch", "craig"])
def test_per_batch_selection_returns_whole_mini_batches_at_the_exact_budget(method):
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    from raypkg.models.registry import build_model

    model = build_model("mlp", data.input_shape, data.num_classes)
    result = select(method, model, data.train, Keep(fraction=0.1, per_batch=16), seed=3)
    units = batch_units(len(data.train), 16, seed=3)
    k = round(0.1 * len(data.train))
    assert len(result) == k and len(torch.unique(result.positions)) == k
    unit_of = {int(p): u for u, row in enumerate(units) for p in row}
    picked = [unit_of[int(p)] for p in result.positions]
    whole = math.floor(k / 16)
    for u in set(picked[:whole * 16]):
        assert picked.count(u) == 16  # every batch but the last is kept whole
    assert result.info["budgets"] is None  # batches mix classes


def test_per_batch_is_refused_for_selectors_of_examples():

    data = load_dataset("digits", seed=0)
    with pytest.raises(UsageError, match="not mini-batches"):
        select("uniform", None, data.train, Keep(fraction=0.1, per_batch=16))


@pytest.mark.slow
def test_rounds_on_shard_actors_equal_the_in_process_rounds(ray_session, tmp_path):
    cfg = CoresetConfig(**TINY, out=str(tmp_path), selection="craig", fraction=0.2, reselect_every=2, cache=False,
                        name="local").resolved().validate()
    local = CORESET.run(cfg)
    remote = CORESET.run(dataclasses.replace(cfg, actors=2, name="actors"))
    assert remote["actors"] == 2 and len(remote["selection_rounds"]) == 2
    assert pd.read_parquet(tmp_path / "actors" / "rounds.parquet").equals(
        pd.read_parquet(tmp_path / "local" / "rounds.parquet"))
    assert remote["test_acc"] == local["test_acc"]


@pytest.mark.slow
def test_on_two_ray_train_workers_rank_0_selects_and_every_rank_trains_its_subset(ray_session, tmp_path):
    cfg = CoresetConfig(**{**TINY, "epochs": 4}, out=str(tmp_path), selection="craig", fraction=0.2,
                        reselect_every=2, workers=2, name="ddp").resolved().validate()
    summary = CORESET.run(cfg)
    assert [r["epoch"] for r in summary["selection_rounds"]] == [3]
    rounds = pd.read_parquet(tmp_path / "ddp" / "rounds.parquet")
    assert len(rounds) == summary["subset_size"] and rounds["index"].is_unique
    rows = pd.read_parquet(tmp_path / "ddp" / "metrics.parquet")
    assert rows["subset_size"].tolist() == [summary["subset_size"]] * 4
