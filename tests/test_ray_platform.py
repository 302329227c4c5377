"""Ray parts of the platform: the shard-actor pool (a Ray Train worker loss: test_sparse.py; Tune +
W&B: test_platform_cli.py and the README's `effray tune` commands in test_readme.py).

These share one Ray instance (the session fixture) and are kept few and small.
"""

from __future__ import annotations

import pytest
import torch

from raypkg.data import load_dataset
from raypkg.distributed.shard_pool import ShardPool, map_in_process, sum_in_process

pytestmark = pytest.mark.ray


def scaled_logits(shard, model, scale):
    """A per-example function with a model argument (weights travel via the object store)."""
    with torch.no_grad():
        return {"logits": model(shard.x) * scale, "index": shard.index.clone()}


def gradient_sum(shard, model):
    loss = torch.nn.functional.cross_entropy(model(shard.x), shard.y, reduction="sum")
    return torch.autograd.grad(loss, model.head.weight)[0]


def test_shard_pool_returns_exactly_the_in_process_map(ray_session):
    from raypkg.models import build_model

    data = load_dataset("digits").train
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    with ShardPool(data, num_actors=2) as pool:
        remote = pool.map(scaled_logits, model, 2.0)
        remote_sum = pool.sum(gradient_sum, model)
    # Each actor runs torch with one thread (its CPU share), as this test process does
    # (conftest's one_torch_thread): another thread count may reorder float additions.
    assert torch.get_num_threads() == 1
    local = map_in_process(scaled_logits, data, model, 2.0, num_shards=2)
    local_sum = sum_in_process(gradient_sum, data, model, num_shards=2)
    assert torch.equal(remote["index"], data.index)  # index order
    assert torch.equal(remote["logits"], local["logits"])
    assert torch.equal(remote_sum, local_sum)
