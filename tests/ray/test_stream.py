"""Streamed data (``--data-path stream``): images read from disk by Ray Data give what the
in-memory path gives: the same pixels bit for bit, the same batches per epoch and rank,
the same training, the same selections; every example once per epoch across workers."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import make_image_tree

import raypkg.data.stream as stream
from raypkg.data.augment import use_augmentation
from raypkg.data.registry import load_dataset
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.trainer import train
from raypkg.errors import UsageError
from raypkg.models.registry import build_model
from raypkg.selection.registry import Compute, Keep, select


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """train: 3 classes of 12, 10 and 14 images (10x12 px, resized to 8); val: 4 per class."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(7)
    make_image_tree(root, rng, "train", {"ant": 12, "bee": 10, "cat": 14}, size=12)
    make_image_tree(root, rng, "val", {"ant": 4, "bee": 4, "cat": 4}, size=12)
    return root


def load(tree, data_path: str, **options):
    return load_dataset("imagefolder", data_dir=str(tree), image_size=8, data_path=data_path, **options)


@pytest.mark.parametrize("options", [{}, {"flat": True}, {"normalize": False}])
def test_streamed_splits_decode_to_the_in_memory_tensors(tree, options, monkeypatch):
    import raypkg.data.sources.imagefolder as imagefolder

    monkeypatch.setattr(imagefolder, "STATS_CHUNK", 5)  # statistics summed in other chunks: still exact
    memory, streamed = load(tree, "memory", **options), load(tree, "stream", **options)
    assert not memory.train.streamed and streamed.train.streamed and streamed.test.streamed
    for a, b in ((memory.train, streamed.train), (memory.test, streamed.test)):
        assert b.x.shape == a.x.shape and b.input_shape == a.input_shape
        assert torch.equal(b.x[:], a.x)  # decoded from disk, bit for bit
        assert torch.equal(b.y, a.y) and torch.equal(b.index, a.index)
    positions = torch.tensor([30, 2, 17])
    sub = streamed.train.subset(positions)
    assert sub.streamed and len(sub.x.paths) == 3
    assert torch.equal(sub.x[:], memory.train.x[positions]) and torch.equal(sub.index, positions)
    assert streamed.augmentable == memory.augmentable and streamed.crop_padding == memory.crop_padding


def test_auto_streams_above_the_threshold_and_says_so(tree, monkeypatch):
    assert not load(tree, "auto").train.streamed  # 36 small images
    assert "held in memory (--data-path auto" in load(tree, "auto").note
    monkeypatch.setattr(stream, "STREAM_ABOVE_BYTES", 36 * 3 * 8 * 8 * 4 - 1)  # one byte below the split
    data = load(tree, "auto")
    assert data.train.streamed and "streamed from disk by Ray Data (--data-path auto)" in data.note


def test_only_image_folders_stream():
    with pytest.raises(UsageError, match="digits is loaded into memory"):
        load_dataset("digits", data_path="stream")


class RecordBatches(Callback):
    """Every step's positions, labels and inputs; on Ray Train, how often each example was
    trained on per epoch, summed over the ranks."""

    def __init__(self, n: int):
        self.n, self.steps, self.counts = n, [], []

    def on_epoch_start(self, ctx):
        self.seen = torch.zeros(self.n, dtype=torch.float64, device=ctx.device)

    def on_step_end(self, ctx):
        batch = ctx.batch
        self.steps.append((batch.positions.cpu(), batch.y.cpu(), batch.x.detach().cpu(), batch.loss.item()))
        self.seen.index_add_(0, batch.positions.to(ctx.device), torch.ones(len(batch.positions), dtype=torch.float64,
                                                                               device=ctx.device))

    def on_epoch_end(self, ctx, row):
        self.counts.append(ctx.all_reduce(self.seen).cpu().tolist())

    def state_dict(self):
        return {"counts": self.counts}

    def load_state_dict(self, state):
        self.counts = state["counts"]


def fit(data, workers: int = 0, tmp_path=None, **config):
    config = {"epochs": 2, **config}
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", dataset="imagefolder", model="lenet5", batch_size=8, workers=workers, progress=False,
                      **config).validate()
    record = RecordBatches(len(data.train))
    result = train(cfg, data, callbacks=[record], augment=use_augmentation(cfg, data), storage=tmp_path)
    return result, record


def test_streaming_trains_on_the_same_batches_as_memory(tree, ray_session):
    memory, streamed = load(tree, "memory"), load(tree, "stream")
    plain, seen = fit(memory)
    result, got = fit(streamed)
    assert len(got.steps) == len(seen.steps) == 2 * 4  # 36 examples in batches of 8, the ragged 4 dropped, 2 epochs
    for (pos_a, y_a, x_a, loss_a), (pos_b, y_b, x_b, loss_b) in zip(seen.steps, got.steps):
        assert torch.equal(pos_a, pos_b) and torch.equal(y_a, y_b)
        assert torch.equal(x_a, x_b) and loss_a == loss_b  # augmented inputs and losses, bit for bit
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in plain.history]
    assert [r["test_acc"] for r in result.history] == [r["test_acc"] for r in plain.history]
    for a, b in zip(plain.model.state_dict().values(), result.model.state_dict().values()):
        assert torch.equal(a, b)


def test_two_ray_train_workers_see_every_example_once_per_epoch(tree, ray_session, tmp_path, monkeypatch):
    """Also across a worker lost at the start of epoch 3: the streamed epochs resume where
    the checkpoint left them and train exactly as an in-memory run that never failed."""
    from raypkg.engine.ray_train import FAULT_ENV

    memory, streamed = load(tree, "memory"), load(tree, "stream")  # 36 examples: 18 per rank, no padding
    # every example: each rank's ragged last batch (18 = 2 x 8 + 2) trains (--keep-last)
    plain, _ = fit(memory, workers=2, tmp_path=tmp_path / "memory", epochs=4, drop_last=False)
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"2:{marker}")
    result, record = fit(streamed, workers=2, tmp_path=tmp_path / "stream", epochs=4, drop_last=False)
    assert marker.exists() and result.restarts == 1
    assert len(record.counts) == 4
    for counts in record.counts:
        assert counts == [1.0] * len(streamed.train)
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in plain.history]
    assert [r["test_acc"] for r in result.history] == [r["test_acc"] for r in plain.history]


def shard_kind(shard):
    """Runs in a shard actor: [holds image files (1) or pixels (0), shard size]."""
    return torch.tensor([[int(isinstance(shard.x, stream.ImageFiles)), len(shard)]])


def every_plan(n: int) -> dict:
    """One of each batch plan over ``n`` positions, batches of 8."""
    from raypkg.engine.plans import ShuffledBatches, WeightedSampling
    from raypkg.methods.crest.plan import CrestPlan, RandomSubsetPlan
    from raypkg.methods.infobatch.plan import InfoBatchPlan
    from raypkg.selection.adaptive import SubsetPlan
    from raypkg.selection.methods.rs2 import RS2Plan

    g = torch.Generator().manual_seed(0)
    infobatch = InfoBatchPlan(n, 8, seed=0, prune_ratio=0.5, pruning_epochs=5)
    infobatch.scores = torch.rand(n, generator=g)
    crest = CrestPlan(n, 0.5, 8)
    crest.set_coresets([torch.randperm(n, generator=g)[:8] for _ in range(2)], [torch.rand(8, generator=g)] * 2)
    return {"shuffled": ShuffledBatches(n, 8, seed=0), "weighted": WeightedSampling(torch.rand(n, generator=g), 8, 0),
            "infobatch": infobatch, "rs2": RS2Plan([(torch.arange(n), 20)], 8, seed=0),
            "random-subset": RandomSubsetPlan(n, 0.5, 8, seed=0), "crest": crest,
            "subset": SubsetPlan(n, torch.arange(0, n, 2), torch.rand(n // 2, generator=g), "loss", None, 8, seed=0)}


@pytest.mark.parametrize("name", list(every_plan(36)))
def test_every_plan_streams_the_batches_it_gives_in_memory(tree, ray_session, name, monkeypatch):
    """The loader reads a plan's positions, whatever the plan: ahead through Ray Data when the
    plan fixes its epoch (every plan but CREST's), else as each batch comes."""
    from types import SimpleNamespace

    from raypkg.engine.loader import read_batches

    calls = []
    real = stream.stream_batches
    monkeypatch.setattr(stream, "stream_batches", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = {}
    for data in (load(tree, "memory"), load(tree, "stream")):
        plan = every_plan(36)[name]  # a fresh plan each: CREST's cursor moves as it yields
        ctx = SimpleNamespace(epoch=1, rank=0, world_size=1, train=data.train, cfg=SimpleNamespace(decode_block=5))
        got[data.train.streamed] = list(read_batches(plan, ctx))
    memory, streamed = got[False], got[True]
    assert len(memory) == len(streamed) > 0 and calls == ([] if name == "crest" else [1])
    for a, b in zip(memory, streamed):
        assert torch.equal(a.positions, b.positions) and torch.equal(a.y, b.y) and torch.equal(a.x, b.x)
        assert (a.weights is None) == (b.weights is None) and (a.weights is None or torch.equal(a.weights, b.weights))


@pytest.mark.parametrize("actors", [0, 2])
def test_selection_on_a_streamed_tree_equals_in_memory(tree, ray_session, actors):
    """With actors: GraNd opens and closes its own pool (``actors=``), CRAIG and DeepFool
    share one (``pool=``): each pool costs two actor processes."""
    from raypkg.distributed.shard_pool import ShardPool

    memory, streamed = load(tree, "memory"), load(tree, "stream")
    torch.manual_seed(3)
    models = [build_model("lenet5", memory.input_shape, memory.num_classes) for _ in range(2)]

    def check(method, chosen, on_streamed=Compute()):
        a = select(method, chosen, memory.train, Keep(fraction=0.3), seed=1)
        b = select(method, chosen, streamed.train, Keep(fraction=0.3), seed=1, compute=on_streamed)
        assert b.info["actors"] == (0 if method == "uniform" else actors), method
        assert torch.equal(a.indices, b.indices), method
        assert torch.equal(a.weights, b.weights), method
        if method == "deepfool":  # 50 float32 iterations on a shard's batch of 18 or on all 36: matmul
            # blocking follows the batch size, so the scores agree to float32 rounding (2e-7 on an AMD EPYC)
            torch.testing.assert_close(a.all_scores, b.all_scores, rtol=1e-6, atol=0)
        elif a.all_scores is not None:
            assert torch.equal(a.all_scores, b.all_scores), method

    check("uniform", None)
    check("grand", models, Compute(actors=actors))
    with ShardPool(streamed.train, actors) if actors else contextlib.nullcontext() as pool:
        check("craig", models[0], Compute(pool=pool))
        check("deepfool", models[0], Compute(pool=pool))
        if actors:  # shard actors get paths and read their own images
            assert pool.map(shard_kind).tolist() == [[1, 18], [1, 18]]


@pytest.mark.parametrize("method", ["glister", "gradmatch"])
def test_selectors_that_hold_every_embedding_refuse_streamed_data(tree, method):
    data = load(tree, "stream")
    model = build_model("lenet5", data.input_shape, data.num_classes)
    with pytest.raises(UsageError, match="--data-path stream use craig, deepfool, el2n, forgetting, grand, uniform"):
        select(method, model, data.train, Keep(fraction=0.3), val=data.test)


def test_train_command_streams_and_says_so_first(tree, ray_session, tmp_path):
    from raypkg.cli import main

    result = CliRunner().invoke(main, ["train", "--dataset", "imagefolder", "--data-dir", str(tree),
                                       "--image-size", "8", "--model", "lenet5", "--data-path", "stream",
                                       "--epochs", "1", "--out", str(tmp_path), "--wandb", "disabled",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "data: 36 train images, 0.00 GiB decoded; streamed from disk by Ray Data (--data-path stream)"
    assert "test_acc" in result.output


def test_run_config_refuses_unknown_data_paths():
    with pytest.raises(UsageError, match="data path"):
        dataclasses.replace(TrainConfig(), data_path="fast").validate()

