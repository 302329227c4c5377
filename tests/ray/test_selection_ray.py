"""Selection on the shard-actor pool gives exactly the in-process result (one small Ray test)."""

from __future__ import annotations

import torch

from raypkg.data.registry import load_dataset
from raypkg.distributed.shard_pool import ShardPool
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import fit, seed_everything
from raypkg.models.registry import build_model
from raypkg.selection import Compute, Keep, select


def test_actor_and_in_process_selection_give_identical_indices(ray_session):
    data = load_dataset("digits", seed=0)
    train = data.train.subset(torch.arange(600))
    seed_everything(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    fit(model, train, None, TrainConfig(precision="fp32", memory_format="contiguous", epochs=1, progress=False, batch_size=64))
    second = build_model("mlp", data.input_shape, data.num_classes)
    with ShardPool(train, 2) as pool:
        for method, models in [("grand", [model, second]), ("glister", model), ("gradmatch", model),
                               ("craig", model)]:
            local = select(method, models, train, Keep(fraction=0.1), seed=3)
            remote = select(method, models, train, Keep(fraction=0.1), seed=3, compute=Compute(pool=pool))
            assert remote.info["actors"] == 2
            assert remote.indices.tolist() == local.indices.tolist(), method
            torch.testing.assert_close(remote.weights, local.weights, rtol=1e-6, atol=1e-9)
