"""Ray parts of the platform: shard-actor pool, Tune + W&B (a Ray Train worker loss: test_sparse.py).

These share one Ray instance (the session fixture) and are kept few and small.
"""

from __future__ import annotations


import pandas as pd
import pytest
import torch
import yaml

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


def test_tune_over_a_space_file_writes_wandb_offline_runs(ray_session, tmp_path):
    from raypkg.tuning import run_tune

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "method": "train", "metric": "test_acc", "mode": "max", "scheduler": "fifo", "search": "grid",
        "base": {"dataset": "digits", "model": "logreg", "epochs": 2, "wandb": "disabled"},
        "space": {"lr": {"choice": [0.05, 0.2]}}}))
    best = run_tune("train", str(space), num_samples=1, out=str(tmp_path / "out"), wandb_mode="offline")
    assert best["num_trials"] == 2 and best["config"]["lr"] in (0.05, 0.2)
    saved = yaml.safe_load(open(best["path"]))
    assert saved["lr"] == best["config"]["lr"] and saved["epochs"] == 2
    trials = pd.read_parquet(f"{best['dir']}/trials.parquet")
    assert len(trials) == 2 and trials["test_acc"].max() == pytest.approx(best["value"])
    offline_runs = list((tmp_path / "out").rglob("offline-run-*"))
    assert len(offline_runs) >= 2, "W&B callback wrote no offline runs"
