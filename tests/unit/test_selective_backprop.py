"""Selective backprop (raypkg.methods.selective_backprop): the draw against its closed form and its bias
to high loss, the batch it leaves (the batch's own examples, their weights, no trace of the
scoring pass), the window and the interrupt steps, the neutral settings as plain training bit
for bit, its counts of example-passes and their FLOPs, and its stacks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from helpers import DIGITS_TRAIN
from torch import nn

import raypkg
from raypkg.algorithms import method_config
from raypkg.cli import main
from raypkg.engine.callbacks import Batch
from raypkg.engine.loop import CLOCK_COLUMNS
from raypkg.methods.selective_backprop import (
    BiggestLosers,
    SelectiveBackprop,
    kept_count,
    select_by_loss,
)

SelectiveBackpropConfig = method_config("selective-backprop")  # `effray run selective-backprop`'s

TINY = dict(dataset="digits", model="mlp", epochs=2, progress=False, drop_last=False)  # every example: the closed forms count 1347 an epoch
# digits' 1,347 training examples in batches of 64: 21 full batches and one of 3, per epoch
STEPS, FULL_BATCHES, LAST = 22, 21, 3


def rows(result, drop=("sb_trained",)) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS and k not in drop}
            for row in result.summary["rows"]]


def test_the_count_kept_is_keep_times_the_batch_rounded_half_up_and_at_least_one():
    assert [kept_count(64, k) for k in (0.5, 0.3, 0.01, 1.0)] == [32, 19, 1, 64]
    assert kept_count(3, 0.5) == 2 and kept_count(5, 0.5) == 3 and kept_count(1, 0.1) == 1


def test_one_draw_follows_the_percentile_power_exactly():
    """keep = 1/8 of 8 draws one example, with P(i) = p_i^7 / sum_j p_j^7, p_i = (rank_i + 0.5) / 8."""
    losses = torch.tensor([0.3, 2.0, 0.1, 5.0, 0.7, 1.1, 0.2, 3.0])  # ranks 3 5 0 7 4 6 1 6
    ranks = torch.argsort(torch.argsort(losses))
    expected = ((ranks.double() + 0.5) / 8) ** 7
    expected /= expected.sum()
    g, draws = torch.Generator().manual_seed(0), 10000
    counts = torch.zeros(8)
    for _ in range(draws):
        (picked,) = select_by_loss(losses, 1 / 8, g)
        counts[picked] += 1
    # within 5 standard errors of each example's probability
    assert torch.all((counts / draws - expected).abs() <= 5 * (expected * (1 - expected) / draws).sqrt() + 1e-3)


def test_high_loss_examples_are_drawn_more_often():
    """keep 0.5: P proportional to the percentile; the inclusion frequency rises with the loss,
    whatever the examples' positions."""
    losses = torch.randperm(16, generator=torch.Generator().manual_seed(1)).float()
    g, counts = torch.Generator().manual_seed(2), torch.zeros(16)
    for _ in range(4000):
        picked = select_by_loss(losses, 0.5, g)
        assert len(picked) == 8 and len(set(picked.tolist())) == 8 and picked.tolist() == sorted(picked.tolist())
        counts[picked] += 1
    by_loss = counts[torch.argsort(losses)]
    assert torch.all(by_loss[1:] >= by_loss[:-1])  # monotone in the loss
    assert by_loss[8:].sum() > 2 * by_loss[:8].sum()


def context(model, size=10, epoch=1, step=0, global_step=0, weights=True):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(size, 4, generator=g), torch.randint(0, 3, (size,), generator=g)
    batch = Batch(torch.arange(100, 100 + size), x, y, torch.rand(size, generator=g) if weights else None)
    return SimpleNamespace(model=model, batch=batch, cfg=SimpleNamespace(seed=0, epochs=2, precision="fp32"), epoch=epoch,
                           step_in_epoch=step, steps_in_epoch=4, global_step=global_step, rank=0,
                           device=torch.device("cpu"), all_reduce=lambda t: t)


def batchnorm_net():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def test_a_selective_step_trains_its_batchs_own_examples_and_leaves_no_trace_of_the_scoring_pass():
    model = batchnorm_net()
    model.train()
    ctx = context(model)
    before = ctx.batch
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k}
    rng = torch.get_rng_state()
    BiggestLosers(0.5, 0.9, 0.3, 0).on_batch_start(ctx)
    after = ctx.batch
    assert len(after.y) == kept_count(10, 0.3) == 3
    kept = after.positions - 100  # where each kept example sat in the batch
    assert torch.equal(after.x, before.x[kept]) and torch.equal(after.y, before.y[kept])
    assert torch.equal(after.weights, before.weights[kept])  # the plan's weights ride along
    assert all(torch.equal(model.state_dict()[k], v) for k, v in buffers.items())  # batch norm's statistics
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's draw came from a forked RNG


@pytest.mark.parametrize("where", [dict(epoch=0),  # before the window [0.5, 0.8) of training
                                   dict(epoch=1, step=3, global_step=4),  # after it: (1 + 3/4) / 2 = 0.875
                                   dict(global_step=1)])  # an interrupt step: (1 + 1) % 2 == 0
def test_outside_the_window_and_on_an_interrupt_step_the_whole_batch_trains_unscored(where):
    model = batchnorm_net()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    losers = BiggestLosers(0.5, 0.8, 0.5, 2)
    ctx = context(model, **where)
    before = ctx.batch
    losers.on_batch_start(ctx)
    inside = context(model, step=1)  # (1 + 1/4) / 2 of training, global step 0: selective
    BiggestLosers(0.5, 0.8, 0.5, 2).on_batch_start(inside)
    assert ctx.batch is before and len(calls) == 1 and len(inside.batch.y) == 5
    assert losers.epoch["planned"] == 10 and losers.epoch["scored"] == 0


def test_the_counts_survive_a_checkpoint_as_plain_data():
    losers = BiggestLosers(0.0, 1.0, 0.5, 0)
    ctx = context(batchnorm_net())
    losers.on_epoch_start(ctx)
    losers.on_batch_start(ctx)
    losers.on_after_backward(ctx)
    row = {}
    losers.on_epoch_end(ctx, row)
    assert row["sb_trained"] == 0.5 and losers.notes()["forward_example_passes"] == 15
    restored = BiggestLosers(0.0, 1.0, 0.5, 0)
    restored.load_state_dict(losers.state_dict())
    assert restored.notes() == losers.notes() and all(isinstance(v, int) for v in losers.state_dict()["totals"].values())


@pytest.mark.parametrize("neutral", [dict(sb_keep=1.0), dict(sb_start=0.5, sb_end=0.5), dict(sb_interrupt=1)])
def test_the_neutral_settings_are_plain_training_bit_for_bit(neutral):
    plain = raypkg.run("train", save=False, **TINY)
    unselected = raypkg.run("selective-backprop", save=False, **{"sb_start": 0.0, **neutral}, **TINY)
    assert rows(unselected) == rows(plain) and unselected.summary["test_acc"] == plain.summary["test_acc"]
    notes = unselected.summary
    assert notes["scored_examples"] == 0 and notes["backward_example_passes"] == 2 * DIGITS_TRAIN
    assert [row["sb_trained"] for row in unselected.summary["rows"]] == [1.0, 1.0]


def test_a_run_counts_its_passes_in_closed_form_and_is_deterministic():
    """Window 0 to 1, no interrupt, keep 0.5: each epoch scores all 1,347 examples and trains
    21 x 32 + 2; with interrupt 2 the even global steps are selective."""
    settings = dict(sb_start=0.0, sb_end=1.0, sb_keep=0.5, sb_interrupt=0, **TINY)
    first = raypkg.run("selective-backprop", save=False, **settings)
    again = raypkg.run("selective-backprop", save=False, **settings)
    assert rows(again, drop=()) == rows(first, drop=()) and again.summary["test_acc"] == first.summary["test_acc"]
    trained = FULL_BATCHES * 32 + kept_count(LAST, 0.5)
    s = first.summary
    assert (s["scored_examples"], s["backward_example_passes"]) == (2 * DIGITS_TRAIN, 2 * trained)
    assert s["forward_example_passes"] == 2 * (DIGITS_TRAIN + trained) and s["selective_steps"] == 2 * STEPS
    assert [row["sb_trained"] for row in s["rows"]] == [trained / DIGITS_TRAIN] * 2
    plain = raypkg.run("train", save=False, **TINY)
    assert rows(first) != rows(plain)
    interrupted = raypkg.run("selective-backprop", save=False, **{**settings, "sb_interrupt": 2}).summary
    assert interrupted["selective_steps"] == STEPS  # global steps 0, 2, ..., 42 of 44


def test_its_frontier_charge_counts_every_pass_and_the_stacked_estimate_agrees():
    """The case charges (forward + 2 x backward) passes in forward units; the estimate from the
    config alone (window 0 to 1, no interrupt, keep 0.5: (1 + 3 x 0.5) / 3 of plain) is within 1%."""
    from raypkg.recipe_registry import load_cases

    case = load_cases()["selective-backprop"]
    cfg = case.config("selective-backprop", None, {}, dict(TINY), DIGITS_TRAIN)
    assert (cfg.sb_start, cfg.sb_end, cfg.sb_keep, cfg.sb_interrupt) == (0.5, 0.9, 0.5, 2)  # Composer's
    summary = raypkg.run("selective-backprop", save=False, sb_start=0.0, sb_end=1.0, sb_interrupt=0, **TINY).summary
    seen, forward = case.examples(cfg, summary, DIGITS_TRAIN, lambda density=1.0, init="ERK": 3.0)
    passes = summary["forward_example_passes"] + 2 * summary["backward_example_passes"]
    assert seen == 2 * DIGITS_TRAIN and math.isclose(3 * forward, 3.0 * passes)
    whole = SelectiveBackpropConfig(sb_start=0.0, sb_end=1.0, sb_interrupt=0, **TINY)
    estimate = SelectiveBackprop.stacked_flops(whole, lambda density=1.0, init="ERK": 3.0)()
    assert math.isclose(estimate, 3.0 * 2.5 / 3) and abs(estimate / (passes / (3 * seen) * 3.0) - 1) < 0.01
    # Composer's defaults: a fifth of the steps selective, each at 2.5/3 of plain's work
    assert math.isclose(SelectiveBackprop.work_share(cfg), 1 - 0.2 + 0.2 * 2.5 / 3)
    assert SelectiveBackprop.work_share(SelectiveBackpropConfig(sb_keep=1.0, **TINY)) == 1.0
    assert SelectiveBackprop.work_share(SelectiveBackpropConfig(sb_keep=0.995, **TINY)) == 1.0  # rounds to all 64


def test_added_to_infobatch_it_cuts_infobatchs_weighted_batches_and_is_neutral_at_keep_one():
    alone = raypkg.run("infobatch", save=False, **TINY)
    neutral = raypkg.run("infobatch+selective-backprop", save=False, sb_keep=1.0, **TINY)
    assert rows(neutral) == rows(alone)
    stacked = raypkg.run("infobatch+selective-backprop", save=False, sb_start=0.0, sb_interrupt=0, **TINY)
    notes = stacked.summary["selective-backprop"]
    assert notes["planned_examples"] == sum(stacked.summary["kept_per_epoch"])  # InfoBatch's pruned epochs
    assert notes["scored_examples"] > 0 and notes["backward_example_passes"] < notes["planned_examples"]


def test_label_smoothing_acts_on_the_subset():
    """on_loss comes after the batch is cut: with eps = 0 the stack trains as selective backprop alone."""
    settings = dict(sb_start=0.0, sb_interrupt=0, **TINY)
    alone = raypkg.run("selective-backprop", save=False, **settings)
    stacked = raypkg.run("selective-backprop+label-smoothing", save=False, smoothing=0.0, **settings)
    assert rows(stacked, drop=()) == rows(alone, drop=())
    smoothed = raypkg.run("selective-backprop+label-smoothing", save=False, smoothing=0.1, **settings)
    assert rows(smoothed)[0]["train_loss"] != rows(alone)[0]["train_loss"]


def test_its_command_runs_with_no_flags_but_the_epochs_and_train_takes_it_with_with(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "selective-backprop", "--epochs", "2", "--wandb", "disabled",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "selective steps" in result.stdout and "selective-backprop digits/mlp: test_acc" in result.stdout
    result = CliRunner().invoke(main, ["train", "--with", "selective-backprop", "--sb-keep", "0.3", "--epochs", "1",
                                       "--wandb", "disabled", "--no-progress"])
    assert result.exit_code == 0, result.output
