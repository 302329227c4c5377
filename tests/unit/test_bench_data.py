"""`effray bench data`: the generated ImageFolder trees, the per-rank memory callback and the
summary lines (its refusals are in tests/unit/test_bad_input.py; its README commands in
tests/docs/test_readme.py: memory beside stream on Ray Train workers, and several decode blocks
trained in-process by the `effray` console script in a bare shell).
"""

from __future__ import annotations

import os
import resource
from types import SimpleNamespace

import numpy as np
import pytest


@pytest.mark.slow
def test_trees_are_hard_links_into_one_set_of_real_digit_jpegs(tmp_path):
    from PIL import Image

    from raypkg.data.digit_tree import VAL_PER_CLASS, write_trees

    trees = write_trees(tmp_path, [23, 50], 16, seed=0)
    assert set(trees) == {23, 50}
    for size, tree in trees.items():
        train = sorted(tree.glob("train/*/*.jpg"))
        val = sorted(tree.glob("val/*/*.jpg"))
        assert len(train) == size and len(val) == 10 * VAL_PER_CLASS
        per_class = [len(list((tree / "train" / str(c)).glob("*.jpg"))) for c in range(10)]
        assert max(per_class) - min(per_class) <= 1 and min(per_class) >= 2  # balanced, every class present
        for path in train + val:  # no copies: every file is a link to the largest size's file
            twin = tmp_path / "files" / path.relative_to(tree)
            assert os.stat(path).st_ino == os.stat(twin).st_ino
    inodes = {os.stat(p).st_ino for p in tmp_path.rglob("*.jpg")}
    assert len(inodes) == 50 + 10 * VAL_PER_CLASS  # written once
    assert sorted(p.relative_to(trees[23]) for p in trees[23].glob("val/*/*.jpg")) == \
        sorted(p.relative_to(trees[50]) for p in trees[50].glob("val/*/*.jpg"))  # one val split for all sizes

    val = sorted(trees[50].glob("val/*/*.jpg"))
    first = Image.open(val[0])
    assert (first.format, first.mode, first.size) == ("JPEG", "RGB", (16, 16))
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in val])  # [n, 16, 16, 3]
    labels = np.array([int(p.parent.name) for p in val])
    assert pixels.reshape(len(val), -1, 3).mean(1).std(0).min() > 10  # tinted: the colours differ per image
    # Real digits, not noise: a nearest-class-mean rule on normalised grey images, fitted on
    # half of the val split, labels the other half far above chance (0.1); ~0.47 here.
    grey = pixels.mean(-1).reshape(len(val), -1)
    grey = (grey - grey.mean(1, keepdims=True)) / grey.std(1, keepdims=True)
    order = np.random.default_rng(0).permutation(len(val))
    fit, held = order[: len(val) // 2], order[len(val) // 2:]
    means = np.stack([grey[fit][labels[fit] == c].mean(0) for c in range(10)])
    guess = ((grey[held][:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (guess == labels[held]).mean() > 0.3

    again = write_trees(tmp_path / "again", [50], 16, seed=0)[50]  # seeded: the same bytes
    assert all(p.read_bytes() == (again / p.relative_to(trees[50])).read_bytes()
               for p in sorted(trees[50].rglob("*.jpg"))[::97])


def test_worker_peak_rss_reaches_rank_zero_with_every_ranks_slot():
    """Rank 1 of 2 fills its slot; the all-reduce (here: rank 0's vector added) gives every
    rank's peak, and the row takes the largest and one column per rank."""
    import torch

    from raypkg.bench.data import WorkerPeakRSS

    other = torch.tensor([12345.0, 0.0], dtype=torch.float64)
    ctx = SimpleNamespace(rank=1, world_size=2, device=torch.device("cpu"), all_reduce=lambda t: t + other)
    row = {}
    WorkerPeakRSS().on_epoch_end(ctx, row)
    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert row["rank0_peak_mb"] == 12345.0
    assert 0.9 * mine <= row["rank1_peak_mb"] <= mine * 1.1 + 1 and row["rank1_peak_mb"] > 10
    assert row["worker_peak_mb"] == max(row["rank0_peak_mb"], row["rank1_peak_mb"])


def test_summary_compares_the_paths_at_each_size_and_each_paths_memory_across_sizes(capsys):
    """Memory's images/s over each stream's, per size; each path's peak from the smallest
    size to the largest: the driver's in-process, the largest worker's on Ray Train."""
    import pandas as pd

    from raypkg.bench.data import summarise

    table = pd.DataFrame({"images": [40, 40, 80, 80], "mode": ["memory", "stream", "memory", "stream"],
                          "img_per_s": [150.0, 100.0, 300.0, 250.0], "driver_peak_mb": [800.0, 600.0, 880.0, 630.0],
                          "worker_peak_mb": [float("nan")] * 4})
    summarise(table)
    assert capsys.readouterr().out.splitlines() == [
        "      40 images: memory / stream images/s = 1.50x",
        "      80 images: memory / stream images/s = 1.20x",
        "memory: driver_peak_mb 800 MB at 40 -> 880 MB at 80 images (2x the data, 1.10x the memory)",
        "stream: driver_peak_mb 600 MB at 40 -> 630 MB at 80 images (2x the data, 1.05x the memory)"]
    summarise(table.assign(worker_peak_mb=[1000.0, 500.0, 1100.0, 525.0]).query("mode == 'stream'"))
    assert capsys.readouterr().out.splitlines() == [
        "stream: worker_peak_mb 500 MB at 40 -> 525 MB at 80 images (2x the data, 1.05x the memory)"]
