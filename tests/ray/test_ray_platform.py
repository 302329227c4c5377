"""Ray parts of the platform: the shard-actor pool (a Ray Train worker loss: test_sparse.py; Tune +
W&B: test_platform_cli.py and the README's `effray tune` commands in test_readme.py).

These share one Ray instance (the session fixture) and are kept few and small.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

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


LISTENERS = r'''
import os, re, subprocess
import ray
from raypkg.distributed.cluster import connect_ray

def descendants(root):
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent[int(entry)] = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, todo = {root}, [root]
    while todo:
        pid = todo.pop()
        children = [c for c, p in parent.items() if p == pid and c not in found]
        found.update(children)
        todo += children
    return found

def listeners(root):
    ours = descendants(root)
    return ["LISTEN " + line.split()[3] + " " + ",".join(re.findall(r'"([^"]+)"', line)) + "\n"
            for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
            if {int(pid) for pid in re.findall(r"pid=(\d+)", line)} & ours]

print("GCS", connect_ray(num_cpus=2))
ray.get(ray.remote(lambda: 1).remote())  # a worker process too
print("".join(listeners(os.getpid())), end="")
if TRAIN:  # issue 65: one Ray Train worker, its process group set up, lists while it runs
    import torch.distributed as dist
    from raypkg.engine.ray_train import _run
    from raypkg.engine.config import TrainConfig
    from raypkg.data import load_dataset

    import tempfile
    seen, root = tempfile.mktemp(prefix="effray-listeners-"), os.getpid()

    def worker(config):  # in the worker, while its process group is up
        assert dist.is_initialized() and dist.get_world_size() == 1 and dist.get_backend() == "gloo"
        with open(seen, "w") as out:
            out.writelines(["GROUP\n", *listeners(root)])

    cfg = TrainConfig(workers=1, cpus_per_worker=1, epochs=1, progress=False, precision="fp32",
                      memory_format="contiguous").validate()  # decided: _run takes no auto
    with tempfile.TemporaryDirectory() as storage:
        _run(worker, cfg, {"data": load_dataset("digits", seed=0)}, storage, "listeners")
    print(open(seen).read(), end="")
    os.remove(seen)
'''


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to list listening sockets")
@pytest.mark.parametrize("train", [False, True], ids=["ray", "ray-train"])
def test_a_private_local_ray_listens_on_loopback_only(train):
    """issue 48: the private Ray of a local run (GCS, raylet, dashboard and its agents,
    workers) listened on every interface; it listens on 127.0.0.1 only (docs/operations.md)."""
    from helpers import bare_env

    proc = subprocess.run([sys.executable, "-c", f"TRAIN = {train}\n" + LISTENERS], capture_output=True,
                          text=True, timeout=300,
                          env=bare_env(RAY_USAGE_STATS_ENABLED="0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    listening = [line.split(" ", 2)[1:] for line in proc.stdout.splitlines() if line.startswith("LISTEN ")]
    names = {name for _, shown in listening for name in shown.split(",")}
    assert "gcs_server" in names and "raylet" in names, listening
    exposed = [entry for entry in listening if not re.match(r"(\[::ffff:)?127\.0\.0\.1\]?:\d+$", entry[0])]
    assert not exposed, exposed
    assert "GCS 127.0.0.1:" in proc.stdout
    assert ("GROUP" in proc.stdout.splitlines()) is train
    if train:  # issue 65: torch's rendezvous store listened on *:PORT, owned by ray::RayTrainWorker
        assert any("ray::RayTrainWo" in shown for _, shown in listening), listening  # ss: 15 characters
