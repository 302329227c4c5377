"""Label smoothing (raypkg.methods.label_smoothing): the loss against its closed form, eps = 0 as plain
training bit for bit, the example weights kept, and the method's one registration at work."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import DIGITS_TRAIN

import raypkg
from raypkg.cli import main
from raypkg.engine.loop import CLOCK_COLUMNS, weighted_cross_entropy

TINY = dict(dataset="digits", model="mlp", epochs=2, progress=False)


def rows(result) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS} for row in result.summary["rows"]]


def test_the_smoothed_loss_is_the_cross_entropy_against_the_smoothed_target():
    """l_i = -sum_k q_k log p_k with q = (1 - eps) onehot(y) + eps / C, weighted as the plan says."""
    g = torch.Generator().manual_seed(0)
    logits, y, w = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g), torch.rand(16, generator=g)
    eps = 0.2
    target = (1 - eps) * F.one_hot(y, 10).double() + eps / 10
    by_hand = -(target * torch.log_softmax(logits.double(), 1)).sum(1)
    assert weighted_cross_entropy(logits, y, w, label_smoothing=eps).item() == pytest.approx(
        (w.double() * by_hand).mean().item(), rel=1e-6)
    assert weighted_cross_entropy(logits, y, label_smoothing=eps).item() == pytest.approx(by_hand.mean().item(), rel=1e-6)


def test_smoothing_zero_is_plain_training_bit_for_bit():
    plain = raypkg.run("train", save=False, **TINY)
    unsmoothed = raypkg.run("label-smoothing", save=False, smoothing=0.0, **TINY)
    assert rows(unsmoothed) == rows(plain) and unsmoothed.summary["test_acc"] == plain.summary["test_acc"]
    smoothed = raypkg.run("label-smoothing", save=False, smoothing=0.1, **TINY)
    assert rows(smoothed)[0]["train_loss"] != rows(plain)[0]["train_loss"]  # the objective the steps follow changed
    assert smoothed.summary["smoothing"] == 0.1


def test_added_to_a_weighted_plan_it_keeps_the_weights():
    """InfoBatch weighs its kept examples 1/(1-r): with eps = 0 the stack trains as InfoBatch alone."""
    alone = raypkg.run("infobatch", save=False, **TINY)
    stacked = raypkg.run("infobatch+label-smoothing", save=False, smoothing=0.0, **TINY)
    assert rows(stacked) == rows(alone) and stacked.summary["label-smoothing"] == {"smoothing": 0.0}


def test_its_command_runs_with_no_flags_and_its_frontier_row_is_dense(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "label-smoothing", "--epochs", "1", "--wandb", "disabled",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "label-smoothing digits/mlp: test_acc" in result.stdout
    from raypkg.recipe_registry import load_cases

    case = load_cases()["label-smoothing"]
    cfg = case.config("label-smoothing", None, {}, dict(TINY), DIGITS_TRAIN)
    seen, flops = case.examples(cfg, {}, DIGITS_TRAIN, lambda density=1.0, init="ERK": 3.0)
    # every epoch's batches of 64, the ragged last one dropped (--drop-last)
    assert cfg.smoothing == 0.1 and seen == 2 * (DIGITS_TRAIN // 64 * 64) and math.isclose(flops, 3.0 * seen)
