"""LiPT: shards, shard masks at the ERK density, the merge, BN re-estimation, the Ray Train
ensemble against the in-process one, and one whole run (with re-selection)."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from torch import nn

from raypkg.engine.runner import load_data
from raypkg.errors import UsageError
from raypkg.lipt.config import LiptConfig
from raypkg.lipt.merge import average_state_dicts, reestimate_bn
from raypkg.lipt.pretrain import train_shard_models
from raypkg.lipt.shards import stratified_shards
from raypkg.models.registry import build_model
from raypkg.sparse.masks import erk_densities, maskable_parameters

TINY = dict(dataset="digits", model="mlp", batch_size=64, pre_epochs=1, wandb="disabled", progress=False,
            cache=False)


def test_shards_are_disjoint_cover_the_data_and_are_stratified():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (103,), generator=g)
    shards = stratified_shards(y, 4, 5, seed=3)
    everything = torch.cat(shards)
    assert len(everything) == len(y) and torch.equal(everything.sort().values, torch.arange(len(y)))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    for c in range(4):
        per_shard = [int((y[s] == c).sum()) for s in shards]
        assert max(per_shard) - min(per_shard) <= 1 and min(per_shard) >= 1
    assert all(torch.equal(a, b) for a, b in zip(shards, stratified_shards(y, 4, 5, seed=3)))
    assert not all(torch.equal(a, b) for a, b in zip(shards, stratified_shards(y, 4, 5, seed=4)))
    smallest = int(torch.bincount(y).min())
    with pytest.raises(UsageError, match="larger than class"):
        stratified_shards(y, 4, smallest + 1, seed=0)
    with pytest.raises(UsageError, match="larger than the training set"):
        stratified_shards(y, 4, 104, seed=0)


def test_every_shard_model_keeps_exactly_its_erk_density():
    cfg = LiptConfig(**TINY, shards=2, density=0.1, randaugment=True).validate()
    data = load_data(cfg)
    states, _ = train_shard_models(cfg, data)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    densities = erk_densities(model, cfg.density)
    assert len(densities) >= 2 and max(densities.values()) < 1  # a real ERK split, not a uniform one
    supports = []
    for state in states:
        for name, d in densities.items():
            n = state[name].numel()
            assert int((state[name] != 0).sum()) == round(d * n), name
        supports.append({name: state[name] != 0 for name in densities})
    assert any(not torch.equal(supports[0][n], supports[1][n]) for n in densities)  # each shard its own mask


def test_merge_of_identical_models_is_that_model_and_sparse_models_merge_on_the_union():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    merged = average_state_dicts([state, {k: v.clone() for k, v in state.items()}, state, state])
    assert merged.keys() == state.keys()
    for k in state:
        assert torch.equal(merged[k], state[k]), k
    weight = next(iter(maskable_parameters(model)))
    a, b = dict(state), dict(state)
    half = torch.rand(state[weight].shape, generator=torch.Generator().manual_seed(0)) < 0.5
    a[weight], b[weight] = state[weight] * half, state[weight] * ~half  # disjoint supports
    both = average_state_dicts([a, b])[weight]
    assert torch.equal(both != 0, state[weight] != 0)  # the union of the supports
    assert torch.allclose(both, state[weight] / 2)  # each kept by one model of two


def test_bn_reestimation_changes_the_running_statistics_and_nothing_else():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    data = load_data(LiptConfig(**TINY))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    used = reestimate_bn(model, data.train, samples=256, batch_size=256, seed=0)
    after = model.state_dict()
    assert used == 256
    stats = {"2.running_mean", "2.running_var", "2.num_batches_tracked"}
    for k in before:
        if k in stats - {"2.num_batches_tracked"}:
            assert not torch.equal(before[k], after[k]), k
        elif k not in stats:
            assert torch.equal(before[k], after[k]), k
    take = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:256]
    with torch.no_grad():  # one batch of 256: the statistics are that batch's, exactly as BN computes them
        h = model[1](model[0](data.train.x[take]))
    torch.testing.assert_close(after["2.running_mean"], h.mean(0))
    torch.testing.assert_close(after["2.running_var"], h.var(0, unbiased=True))
    assert model.training  # mode restored
    plain = build_model("mlp", (1, 8, 8), 10)
    assert reestimate_bn(plain, data.train, 256, 64, 0) == 0


@pytest.mark.ray
def test_ensemble_on_two_ray_train_workers_equals_in_process(ray_session):
    cfg = LiptConfig(**TINY, shards=3, density=0.2, randaugment=True).validate()  # 3 shards on 2 workers
    data = load_data(cfg)
    local, shards = train_shard_models(cfg, data)
    remote, _ = train_shard_models(dataclasses.replace(cfg, workers=2), data)
    assert len(local) == len(remote) == 3
    for a, b in zip(local, remote):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(local[0][k], local[1][k]) for k in local[0])  # own shard, seed and mask

def test_run_lipt_writes_phases_accuracies_selection_and_reselects(tmp_path):
    from raypkg.lipt.commands import run_lipt

    cfg = LiptConfig(**{**TINY, "cache": True}, out=str(tmp_path), shards=3, selection="grand", score="ensemble",
                     fraction=0.1, epochs=5, reselect=2, name="a").validate()
    summary = run_lipt(cfg)
    run = tmp_path / "a"
    assert list(summary["phases"])[:4] == ["pretrain", "merge", "selection", "train"]
    assert len(summary["shard_test_acc"]) == 3 and 0 <= summary["merged_test_acc"] <= 1
    assert summary["repeats"] == 3  # the K shard models in place of GraNd's repeats
    assert json.loads((run / "summary.json").read_text())["merged_test_acc"] == summary["merged_test_acc"]
    picks = pd.read_parquet(run / "selection.parquet")
    assert len(picks) == summary["subset_size"] == round(0.1 * summary["train_size"])
    rows = pd.read_parquet(run / "metrics.parquet")
    assert [r > 0 for r in rows["reselect_s"]] == [False, False, True, False, True]  # epochs 3 and 5
    again = run_lipt(dataclasses.replace(cfg, name="b", reselect=None))
    assert again["cached"]["pretrain_hits"] == 4 and "merge" not in again["phases"]  # 3 shards + merged
    assert again["shard_test_acc"] == summary["shard_test_acc"]
