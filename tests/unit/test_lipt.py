"""LiPT: shards, shard masks at the ERK density (shared or own), the three merge rules on
hand-built state dicts, BN re-estimation (ResNet-20 included), the Ray Train ensemble
against the in-process one, and whole runs (with re-selection; ResNet-20 from the CLI)."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from torch import nn

from raypkg.errors import UsageError
from raypkg.methods.lipt.config import MERGE_RULES, LiptConfig
from raypkg.methods.lipt.merge import average_state_dicts, reestimate_bn
from raypkg.methods.lipt.pretrain import LIPT_PRETRAIN_EXCLUDE, merge_models, shard_masks, train_shard_models
from raypkg.methods.lipt.shards import stratified_shards
from raypkg.models.registry import build_model
from raypkg.recipe import load_data
from raypkg.selection.pipeline import config_key
from raypkg.sparsity.masks import erk_densities, maskable_parameters

# the engine trains a decided execution: these tests call the stages directly, below Recipe.run's decision
TINY = dict(dataset="digits", model="mlp", batch_size=64, pre_epochs=1, wandb="disabled", progress=False,
            cache=False, precision="fp32", memory_format="contiguous")


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


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 17, 23)])
@pytest.mark.parametrize("magnitude", [5, 30])
def test_every_randaugment_op_and_sign_makes_each_image_as_torchvisions_op_does(shape, magnitude):
    """The batched ops (a gather of source pixels, a lookup of values, one torchvision call
    per op and sign for the rest) give every image exactly what torchvision's op gives it
    alone, for every op of the table, both signs, at the default and the largest magnitude."""
    from raypkg.methods.lipt.augment import OpTable, torchvision_op

    table = OpTable.of(*shape[1:], magnitude)
    numbers = torch.arange(len(table.ops)).repeat(2)
    images = torch.randint(0, 256, (len(numbers), *shape), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    made = table.apply(images, numbers)
    for image, number, out in zip(images, numbers.tolist(), made):
        assert torch.equal(out, torchvision_op(image[None], *table.ops[number])[0]), table.ops[number]
    rotated = [number for number, (name, _) in enumerate(table.ops) if name == "Rotate"]
    assert all(not torch.equal(made[n], images[n]) for n in rotated)  # the images really went through the ops


@pytest.mark.parametrize("merge", ["shared-mask", "keepers"])
def test_every_shard_model_keeps_exactly_its_erk_mask(merge):
    cfg = LiptConfig(**TINY, shards=2, density=0.1, randaugment=True, merge=merge).resolved().validate()
    data = load_data(cfg)
    states, _ = train_shard_models(cfg, data)
    masks = shard_masks(cfg, data, states)  # raises if a shard has a nonzero weight off its mask
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    densities = erk_densities(model, cfg.density)
    assert len(densities) >= 2 and max(densities.values()) < 1  # a real ERK split, not a uniform one
    for state, mask in zip(states, masks):
        assert mask.keys() == densities.keys()
        for name, d in densities.items():
            assert int(mask[name].sum()) == int((state[name] != 0).sum()) == round(d * state[name].numel()), name
    same = all(torch.equal(masks[0][n], masks[1][n]) for n in densities)
    assert same == (merge == "shared-mask")  # one mask per run, or one per shard


def hand_states(values: list[list[float]], bias: list[float]) -> list[dict[str, torch.Tensor]]:
    """State dicts of a 1x4 "layer": weight row k is ``values[k]``, bias ``bias[k]``, and an
    integer buffer. Small integers and K = 4 keep every mean exact in float32."""
    return [{"w": torch.tensor([v]), "b": torch.tensor([b]), "n": torch.tensor(k)}
            for k, (v, b) in enumerate(zip(values, bias))]


def test_shared_mask_merge_is_the_mean_of_the_masked_weights_exactly():
    mask = {"w": torch.tensor([[True, False, True, False]])}
    rows = [[4.0, 0.0, -8.0, 0.0], [8.0, 0.0, 4.0, 0.0], [-4.0, 0.0, 12.0, 0.0], [12.0, 0.0, 0.0, 0.0]]
    states = hand_states(rows, bias=[1.0, 2.0, 3.0, 6.0])
    merged = average_state_dicts(states, [mask] * 4)
    assert torch.equal(merged["w"], torch.tensor([[5.0, 0.0, 2.0, 0.0]]))  # eq. (3): m * mean_k w_k
    assert torch.equal(merged["b"], torch.tensor([3.0]))  # dense tensors: the plain mean
    assert torch.equal(merged["n"], torch.tensor(0))  # integer buffers: the first's
    plain = average_state_dicts(states)  # one mask for all: the keepers and zeros rules coincide
    assert all(torch.equal(merged[k], plain[k]) for k in merged)


def test_keepers_merge_divides_by_the_keep_count():
    rows = [[4.0, 6.0, 0.0, 0.0], [8.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]]
    keeps = [[1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]]  # shard 2 keeps w0 but learnt 0 there
    masks = [{"w": torch.tensor([k], dtype=torch.bool)} for k in keeps]
    merged = average_state_dicts(hand_states(rows, bias=[1.0, 2.0, 3.0, 6.0]), masks)
    # w0: kept by 3 shards, (4 + 8 + 0) / 3; w1: by one, 6 / 1; w2: by one, 3 / 1; w3: by none, 0
    assert torch.equal(merged["w"], torch.tensor([[4.0, 6.0, 3.0, 0.0]]))
    assert torch.equal(merged["b"], torch.tensor([3.0]))


def test_zeros_merge_is_the_plain_mean_and_shrinks_a_weight_by_its_keepers_over_k():
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
    zeros = average_state_dicts([a, b])[weight]
    assert torch.equal(zeros != 0, state[weight] != 0)  # the union of the supports
    assert torch.allclose(zeros, state[weight] / 2)  # the zeros rule: each kept by 1 of 2, shrunk by 1/2
    keepers = average_state_dicts([a, b], [{weight: half}, {weight: ~half}])[weight]
    assert torch.equal(keepers, state[weight])  # the keepers rule: no shrinkage


def test_the_merge_rule_is_part_of_the_pretrained_models_cache_key():
    keys = {config_key(LiptConfig(**TINY, merge=m).resolved().validate(), LIPT_PRETRAIN_EXCLUDE, kind="lipt",
                       device="cpu") for m in MERGE_RULES}
    assert len(keys) == len(MERGE_RULES)
    with pytest.raises(UsageError, match="unknown merge rule 'mean'"):
        LiptConfig(**TINY, merge="mean").validate()


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


@pytest.mark.slow
@pytest.mark.parametrize("merge", MERGE_RULES)
def test_resnet20_merges_by_its_rule_and_reestimates_batch_norm(merge):
    cfg = LiptConfig(**{**TINY, "model": "resnet20"}, shards=2, merge=merge).resolved().validate()
    data = load_data(cfg)
    states, _ = train_shard_models(cfg, data)
    merged = merge_models(cfg, data, states, torch.device("cpu")).state_dict()
    by_hand = build_model("resnet20", data.input_shape, data.num_classes)
    by_hand.load_state_dict(average_state_dicts(states, None if merge == "zeros" else shard_masks(cfg, data, states)))
    assert reestimate_bn(by_hand, data.train, cfg.bn_samples, cfg.batch_size, cfg.seed) == len(data.train)  # all 1347 < 2048
    for k, v in by_hand.state_dict().items():
        assert torch.equal(merged[k], v), k
    running = [k for k in merged if k.endswith("running_mean")]
    assert len(running) == 19  # every BN of ResNet-20 ...
    for k in running:  # ... re-estimated, not the shards' averaged statistics
        assert not torch.allclose(merged[k], (states[0][k] + states[1][k]) / 2), k


def test_resnet20_runs_through_effray_run_lipt_in_process(tmp_path):
    from click.testing import CliRunner

    from raypkg.cli import main

    args = ["run", "lipt", "--dataset", "digits", "--model", "resnet20", "--shards", "2", "--pre-epochs", "1",
            "--epochs", "1", "--selection", "grand", "--fraction", "0.2", "--out", str(tmp_path), "--name", "r",
            "--wandb", "disabled", "--no-progress", "--no-cache"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "merged (shared-mask)" in result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["merge"] == "shared-mask" and len(summary["shard_test_acc"]) == 2
    # 1 epoch on ~720 examples per shard at density 0.05: shards ~0.55, the shared-mask merge
    # keeps up with them (the zeros merge of own masks falls to ~0.18; chance is 0.1)
    assert summary["merged_test_acc"] >= 0.35
    assert summary["merged_test_acc"] >= min(summary["shard_test_acc"]) - 0.1


def test_run_lipt_with_no_flags_runs_lipt_with_grand_on_the_default_data(tmp_path):
    from click.testing import CliRunner

    from raypkg.cli import main

    result = CliRunner().invoke(main, ["run", "lipt", "--out", str(tmp_path), "--name", "d", "--wandb", "disabled",
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["method"] == "lipt-grand" and summary["dataset"] == "digits"
    assert summary["shards"] == 10 and summary["density"] == 0.05 and summary["sparse_init"] == "ERK"
    assert list(summary["phases"])[:3] == ["pretrain", "merge", "selection"] and summary["phases"]["pretrain"] > 0
    assert summary["merged_test_acc"] > 0.3  # 5 steps: 5 pre-epochs of one batch of 128 from ~135 examples a shard
    # (the ragged 7 dropped); chance is 0.1


@pytest.mark.slow
def test_ensemble_on_two_ray_train_workers_equals_in_process_through_a_worker_loss(ray_session, tmp_path,
                                                                                   monkeypatch):
    """3 shards on 2 workers: round 1 trains shards 0 and 1, round 2 shard 2 on worker 0.
    Worker 1 dies at the start of round 2; the restarted group trains only shard 2 (the
    engine's ensemble checkpoint keeps the others), and every shard model, sparse and
    augmented, equals the one trained in process."""
    from raypkg.engine.ray_train import FAULT_ENV

    cfg = LiptConfig(**TINY, shards=3, density=0.2, randaugment=True).resolved().validate()
    data = load_data(cfg)
    local, _ = train_shard_models(cfg, data)
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"1:{marker}")
    remote, restarts = train_shard_models(dataclasses.replace(cfg, workers=2, max_failures=1), data,
                                          storage=tmp_path / "ray")
    assert marker.exists() and restarts == 1, "the injected failure did not happen"
    assert len(local) == len(remote) == 3
    for a, b in zip(local, remote):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(local[0][k], local[1][k]) for k in local[0])  # own shard and seed


def test_run_lipt_writes_phases_accuracies_selection_and_reselects(tmp_path):
    from raypkg.methods.lipt.recipe import LIPT

    cfg = LiptConfig(**{**TINY, "cache": True}, out=str(tmp_path), shards=3, selection="grand", score="ensemble",
                     fraction=0.1, epochs=5, reselect_every=2, name="a").resolved().validate()
    summary = LIPT.run(cfg)
    run = tmp_path / "a"
    assert list(summary["phases"])[:4] == ["pretrain", "merge", "selection", "train"]
    assert len(summary["shard_test_acc"]) == 3 and summary["merge"] == "shared-mask"
    assert summary["merged_test_acc"] >= 0.25  # 1 epoch on ~450 examples per shard: ~0.34; chance 0.1
    assert summary["score"] == "ensemble" and summary["shards"] == 3  # the K shard models' scores averaged
    assert "repeats" not in summary and "pretrain_epochs" not in summary  # DeepCore's warm-up is not run
    assert json.loads((run / "summary.json").read_text())["merged_test_acc"] == summary["merged_test_acc"]
    picks = pd.read_parquet(run / "selection.parquet")
    assert len(picks) == summary["subset_size"] == round(0.1 * summary["train_size"])
    rows = pd.read_parquet(run / "metrics.parquet")
    assert [r > 0 for r in rows["reselect_s"]] == [False, False, True, False, True]  # epochs 3 and 5
    again = LIPT.run(dataclasses.replace(cfg, name="b", reselect_every=None))
    assert again["cached"]["pretrain_hits"] == 4  # 3 shards + merged
    assert again["shard_test_acc"] == summary["shard_test_acc"]
    other = LIPT.run(dataclasses.replace(cfg, name="c", reselect_every=None, merge="zeros"))
    assert other["cached"]["pretrain_hits"] == 0  # another rule, other models


def test_lipt_with_a_selection_model_pretrains_its_shards_as_that_model():
    """SVP for LiPT: ``--selection-model P`` trains, merges and scores with K shard models of P,
    at the run's rate scaled by default_lr(P) / default_lr(model): the same shards, merged model
    and selection as a LiPT run of P itself at that rate."""
    import numpy as np

    from raypkg.methods.lipt.recipe import LIPT
    from raypkg.models.defaults import default_lr
    from raypkg.recipe import MemorySink

    common = dict(TINY, shards=2, selection="grand", fraction=0.2, epochs=1)
    scale = default_lr("mlp") / default_lr("lenet5")
    own = LIPT.run(LiptConfig(**{**common, "lr": [0.03 * scale]}).resolved().validate(), MemorySink)
    proxied = LIPT.run(LiptConfig(**{**common, "model": "lenet5", "lr": [0.03], "selection_model": "mlp"})
                       .resolved().validate(), MemorySink)
    assert proxied["shard_test_acc"] == own["shard_test_acc"] and proxied["merged_test_acc"] == own["merged_test_acc"]
    assert np.array_equal(own["tables"]["scores.parquet"]["score"], proxied["tables"]["scores.parquet"]["score"])
    assert proxied["selection_model"] == "mlp" and proxied["model"] == "lenet5"


@pytest.mark.slow
def test_bench_lipt_gives_a_row_per_shard_backend(tmp_path):
    """`--backends masked,sparse`: one LiPT row per backend against the same DeepCore row; the
    kernels run the same math up to rounding, so the merged models agree."""
    from click.testing import CliRunner

    from raypkg.cli import main

    result = CliRunner().invoke(main, ["bench", "lipt", "--train-size", "2000", "--test-size", "500", "--epochs", "1",
                                       "--pretrain-epochs", "1", "--repeats", "1", "--shards", "2", "--pre-epochs", "1",
                                       "--methods", "grand", "--fractions", "0.1", "--backends", "masked,sparse",
                                       "--save", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "b.parquet")
    assert list(table["pipeline"]) == ["full data", "uniform", "deepcore", "lipt", "lipt"]
    assert list(table["backend"]) == ["-", "-", "-", "masked", "sparse"]
    deepcore, lipt = table.iloc[2], table.iloc[3:]
    assert lipt["pretrain_x"].tolist() == pytest.approx(
        (deepcore["pretrain_s"] / (lipt["pretrain_s"] + lipt["merge_s"])).tolist())
    assert abs(lipt["merged_acc"].iloc[0] - lipt["merged_acc"].iloc[1]) <= 0.01
