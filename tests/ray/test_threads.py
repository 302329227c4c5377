"""One command, one torch thread count: in process and on one Ray Train worker alike
(issue 65; ``raypkg.engine.execution.decide_threads``)."""

from __future__ import annotations

import pytest
import torch

import raypkg
from raypkg.data import load_dataset
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.execution import decide_threads
from raypkg.engine.trainer import train

pytestmark = pytest.mark.ray

TINY = dict(dataset="digits", epochs=1, progress=False, wandb="disabled")


class SeenThreads(Callback):
    """Each epoch's row says how many torch threads computed it (on whichever process trained)."""

    def on_epoch_end(self, ctx, row: dict) -> None:
        row["threads"] = torch.get_num_threads()


def test_a_ray_train_worker_trains_with_the_threads_its_config_records(ray_session):
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(model="logreg", workers=1, threads=2, precision="fp32", memory_format="contiguous", **TINY)
    result = train(cfg.resolved().validate(), data, callbacks=[SeenThreads()])
    assert [row["threads"] for row in result.history] == [2]  # not the worker's CPU share less a core (1)


def test_in_process_and_one_ray_train_worker_give_equal_losses_for_a_convolutional_model(ray_session):
    """LeNet-5 at channels_last, at the precision auto picks on this CPU (bf16 on one with AMX,
    fp32 on an AVX2 one): a convolution sums in another order with another thread count, so
    the losses are equal only when both placements compute with the same threads."""
    torch.set_num_threads(2)  # what `effray train` takes on a 2-CPU machine (conftest restores 1)
    assert decide_threads(TrainConfig(workers=1)).threads == decide_threads(TrainConfig()).threads == 2
    common = dict(model="lenet5", precision="auto", memory_format="channels_last", **TINY)
    here = raypkg.run("train", save=False, **common)
    there = raypkg.run("train", save=False, workers=1, **common)
    assert here.summary["threads"] == there.summary["threads"] == 2
    assert (here.summary["precision"], here.summary["memory_format"]) == \
        (there.summary["precision"], there.summary["memory_format"])
    assert here.metrics["train_loss"].tolist() == there.metrics["train_loss"].tolist()
    assert here.test_acc == there.test_acc
