"""EMA of the weights (raypkg.methods.ema): the average against its closed form, H = 0 as plain training
bit for bit, training never seeing the average, and the final model being it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import raypkg
from raypkg.engine.loop import CLOCK_COLUMNS
from raypkg.methods.ema import WeightAverage

TINY = dict(dataset="digits", model="mlp", epochs=3, progress=False)


def rows(result, *columns) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS and (not columns or k in columns)}
            for row in result.summary["rows"]]


def test_the_average_moves_towards_the_weights_by_its_half_life_and_copies_integer_buffers():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ctx = SimpleNamespace(model=model, device=torch.device("cpu"), steps_in_epoch=4)
    average = WeightAverage(half_life=0.5)  # memory halves every 2 steps: d = 0.5 ** (1 / 2)
    average.on_fit_start(ctx)
    average.on_epoch_start(ctx)
    d = 0.5 ** 0.5
    expected = {k: v.clone().double() for k, v in model.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(step + 1.0)
            model[1].num_batches_tracked += 1
        average.on_step_end(ctx)
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v.double() if v.is_floating_point() else v.double()
    for k, v in average.average.items():
        assert torch.allclose(v.double(), expected[k], rtol=1e-6, atol=1e-6), k
    assert int(average.average["1.num_batches_tracked"]) == 3


def test_the_average_is_evaluated_between_swaps_and_survives_a_checkpoint():
    model = nn.Linear(2, 2)
    ctx = SimpleNamespace(model=model, device=torch.device("cpu"), steps_in_epoch=1)
    average = WeightAverage(half_life=1.0)
    average.on_fit_start(ctx)
    average.on_epoch_start(ctx)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.on_step_end(ctx)
    now = {k: v.clone() for k, v in model.state_dict().items()}
    average.on_eval_start(ctx)
    assert torch.equal(model.weight, average.average["weight"]) and not torch.equal(model.weight, now["weight"])
    average.on_eval_end(ctx)
    assert all(torch.equal(model.state_dict()[k], now[k]) for k in now)  # the trained weights are back
    restored = WeightAverage(half_life=1.0)
    restored.load_state_dict(average.state_dict())
    restored.on_fit_start(ctx)
    assert all(torch.equal(restored.average[k], average.average[k]) for k in now)


def test_half_life_zero_is_plain_training_bit_for_bit():
    plain = raypkg.run("train", save=False, **TINY)
    unaveraged = raypkg.run("ema", save=False, ema_half_life=0.0, **TINY)
    assert rows(unaveraged) == rows(plain) and unaveraged.summary["test_acc"] == plain.summary["test_acc"]


def test_training_never_sees_the_average_and_the_final_model_is_it():
    plain = raypkg.run("train", save=False, **TINY)
    averaged = raypkg.run("ema", save=False, ema_half_life=1.0, **TINY)
    assert rows(averaged, "train_loss", "train_acc") == rows(plain, "train_loss", "train_acc")
    assert rows(averaged, "test_acc") != rows(plain, "test_acc")  # each epoch's test row is the average's
    assert averaged.summary["test_acc"] == averaged.summary["rows"][-1]["test_acc"]  # the saved model is it
    assert averaged.summary["ema_half_life"] == 1.0


@pytest.mark.parametrize("method", ["infobatch+ema", "sparse+ema"])
def test_added_to_another_method_it_changes_only_what_is_evaluated(method):
    base = method.split("+")[0]
    alone = raypkg.run(base, save=False, **TINY)
    added = raypkg.run(method, save=False, ema_half_life=1.0, **TINY)
    assert rows(added, "train_loss") == rows(alone, "train_loss") and added.summary["ema"] == {"ema_half_life": 1.0}
