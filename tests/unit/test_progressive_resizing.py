"""Progressive resizing (raypkg.methods.progressive_resizing): the schedule against its closed form,
the rounding of the sides, initial scale 1 as plain training bit for bit, the sizes a run
really trained at and their FLOPs, the refusals, and the method stacked onto InfoBatch."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import DIGITS_TRAIN

import raypkg
from raypkg.algorithms import method_config
from raypkg.cli import main
from raypkg.engine.callbacks import Batch
from raypkg.engine.loop import CLOCK_COLUMNS
from raypkg.errors import UsageError
from raypkg.methods.progressive_resizing import (
    ProgressiveResizing,
    ResizeBatch,
    mean_pixel_fraction,
    scale_at,
    side_at,
)

ProgressiveResizingConfig = method_config("progressive-resizing")  # `effray run progressive-resizing`'s

TINY = dict(dataset="digits", model="lenet5", epochs=2, progress=False, precision="fp32", memory_format="contiguous",
            drop_last=False)  # every example: the closed forms count 1347 an epoch
STEPS = math.ceil(DIGITS_TRAIN / 64)  # batch 64


def rows(result) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS} for row in result.summary["rows"]]


def test_the_scale_holds_then_grows_linearly_then_holds_at_full_size():
    a, d, f = 0.5, 0.5, 0.2
    assert scale_at(0.0, a, d, f) == a and scale_at(0.4999, a, d, f) == a and scale_at(d, a, d, f) == a
    assert scale_at(0.65, a, d, f) == pytest.approx(0.75)  # midway between d and 1 - f: (a + 1) / 2
    assert scale_at(0.8, a, d, f) == pytest.approx(1.0) and scale_at(0.9, a, d, f) == 1.0 and scale_at(1.0, a, d, f) == 1.0
    assert scale_at(0.49, 0.5, 0.5, 0.5) == 0.5 and scale_at(0.5, 0.5, 0.5, 0.5) == 1.0  # no ramp: a jump at d


@pytest.mark.parametrize("length, scale, side", [
    (32, 0.5, 16), (28, 0.5, 16),  # 14 px is 3.5 increments: halves round up
    (30, 0.55, 16), (30, 0.999, 28), (30, 1.0, 30),  # full size is the input's, a multiple of 4 or not
    (8, 0.1, 4),  # never below the increment
    (2, 0.5, 2),  # never above the input
    (8, 0.9, 8), (8, 0.7, 4),  # 7.2 and 5.6 px: 1.8 and 1.4 increments
])
def test_a_side_is_the_nearest_multiple_of_the_increment_within_bounds(length, scale, side):
    assert side_at(length, scale, 4) == side


def test_the_mean_pixel_fraction_is_the_integral_of_the_squared_scale():
    for a, d, f in [(0.5, 0.5, 0.2), (0.25, 0.0, 0.0), (0.6, 0.3, 0.7), (1.0, 0.5, 0.2)]:
        n = 100_000
        numeric = sum(scale_at((i + 0.5) / n, a, d, f) ** 2 for i in range(n)) / n
        assert mean_pixel_fraction(a, d, f) == pytest.approx(numeric, abs=1e-4)
    assert mean_pixel_fraction(1.0, 0.3, 0.1) == 1.0 and mean_pixel_fraction(0.5, 0.5, 0.2) == pytest.approx(0.5)


def callback(**settings) -> ResizeBatch:
    values = dict(resize_initial_scale=0.5, resize_delay=0.5, resize_finetune=0.2, resize_increment=4,
                  resize_mode="resize", seed=3, epochs=10)
    return ResizeBatch(SimpleNamespace(**{**values, **settings}))


def context(x, epoch=0, step=0, steps=10, global_step=0):
    batch = Batch(torch.arange(len(x)), x, torch.zeros(len(x), dtype=torch.long))
    return SimpleNamespace(batch=batch, epoch=epoch, step_in_epoch=step, steps_in_epoch=steps, global_step=global_step)


def test_the_batch_is_interpolated_to_the_scheduled_size_in_its_memory_format():
    x = torch.randn(5, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    resize = callback()
    ctx = context(x)
    resize.on_batch_start(ctx)
    expected = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    assert ctx.batch.x.shape == (5, 3, 8, 8) and torch.equal(ctx.batch.x, expected)
    assert ctx.batch.x.is_contiguous(memory_format=torch.channels_last) and not ctx.batch.x.is_contiguous()
    late = context(x, epoch=9)  # t = 0.9: the fine-tune, the batch left as it was
    resize.on_batch_start(late)
    assert late.batch.x is x
    assert resize.sizes == {"8x8": [1, 5], "16x16": [1, 5]}
    restored = callback()
    restored.load_state_dict(resize.state_dict())
    assert restored.sizes == resize.sizes


def test_crop_mode_takes_one_window_per_batch_drawn_from_the_seed_and_the_step():
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)

    def window(seed, step):
        ctx = context(x, global_step=step)
        callback(resize_mode="crop", seed=seed).on_batch_start(ctx)
        out = ctx.batch.x
        top, left = divmod(int(out[0, 0, 0, 0]), 16)
        assert out.shape == (2, 1, 8, 8) and torch.equal(out, x[..., top:top + 8, left:left + 8])
        return top, left

    seed3 = [window(3, step) for step in range(8)]
    assert seed3 == [window(3, step) for step in range(8)]  # the same command, the same windows
    assert len(set(seed3)) > 1 and seed3 != [window(4, step) for step in range(8)]


def test_scale_1_is_plain_training_bit_for_bit():
    plain = raypkg.run("train", save=False, **TINY)
    kept = raypkg.run("progressive-resizing", save=False, resize_initial_scale=1.0, **TINY)
    assert rows(kept) == rows(plain) and kept.summary["test_acc"] == plain.summary["test_acc"]
    assert kept.summary["sizes"] == {"8x8": {"steps": 2 * STEPS, "examples": 2 * DIGITS_TRAIN}}
    assert kept.summary["pixel_fraction"] == 1.0 and kept.summary["flops_fraction"] == 1.0


@pytest.mark.parametrize("settings", [dict(resize_initial_scale=0.9), dict(resize_increment=64)])
def test_a_schedule_that_keeps_the_input_size_below_scale_1_is_refused(settings):
    """0.9, whose 7.2 px sides round to the input's 8 (increment 4), and an increment above the
    side would train at full size throughout: plain training, which scale 1 asks for by name."""
    with pytest.raises(UsageError, match="keeps the 8x8 images at full size") as refused:
        raypkg.run("progressive-resizing", save=False, **settings, **TINY)
    assert "\n" not in str(refused.value)


def test_a_run_trains_at_the_schedules_sizes_and_notes_their_pixels_and_flops():
    """Default schedule, 2 epochs of 22 steps: 4x4 until the side reaches 6 px (s = 0.75, t = 0.65),
    then 8x8. LeNet-5's fully connected layers after its fixed-size pool do not shrink: its
    FLOP fraction is above the pixel fraction."""
    plain = raypkg.run("train", save=False, **TINY)
    resized = raypkg.run("progressive-resizing", save=False, **TINY)
    small = [(e, k) for e in range(2) for k in range(STEPS) if (e + k / STEPS) / 2 < 0.65]
    last = DIGITS_TRAIN - (STEPS - 1) * 64  # the ragged last batch of an epoch
    small_examples = sum(last if k == STEPS - 1 else 64 for _, k in small)
    s = resized.summary
    assert s["sizes"] == {"4x4": {"steps": len(small), "examples": small_examples},
                          "8x8": {"steps": 2 * STEPS - len(small), "examples": 2 * DIGITS_TRAIN - small_examples}}
    assert s["steps"] == 2 * STEPS and s["input_size"] == "8x8"
    assert s["pixel_fraction"] == pytest.approx((small_examples / 4 + 2 * DIGITS_TRAIN - small_examples)
                                                / (2 * DIGITS_TRAIN))
    assert s["pixel_fraction"] < s["flops_fraction"] < 1.0
    assert rows(resized)[0]["train_loss"] != rows(plain)[0]["train_loss"]


def test_on_resnet20_the_flops_shrink_with_the_pixels_and_the_command_runs_with_no_flags(tmp_path, monkeypatch):
    """ResNet-20 (the command's default model) pools globally: its FLOPs scale with the pixels
    but for its 64 x 10 head."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "progressive-resizing", "--epochs", "1", "--resize-delay", "1",
                                       "--resize-finetune", "0", "--precision", "fp32", "--memory-format", "contiguous",
                                       "--wandb", "disabled", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "progressive-resizing digits/resnet20: test_acc" in result.stdout
    import json

    (summary_file,) = tmp_path.glob("runs/*/summary.json")
    s = json.loads(summary_file.read_text())
    assert list(s["sizes"]) == ["4x4"] and s["pixel_fraction"] == 0.25
    assert s["flops_fraction"] == pytest.approx(0.25, abs=0.002) and s["flops_fraction"] > 0.25


def test_the_frontier_charges_the_measured_fraction_and_a_stack_the_schedules():
    from raypkg.recipe_registry import load_cases

    case = load_cases()["progressive-resizing"]
    cfg = case.config("progressive-resizing", None, {}, dict(TINY), DIGITS_TRAIN)
    seen, flops = case.examples(cfg, {"flops_fraction": 0.6}, DIGITS_TRAIN, lambda density=1.0, init="ERK": 3.0)
    assert seen == 2 * DIGITS_TRAIN and flops == pytest.approx(0.6 * 3.0 * seen) and not case.default
    dropped, _ = case.examples(dataclasses.replace(cfg, drop_last=True), {"flops_fraction": 0.6}, DIGITS_TRAIN,
                               lambda density=1.0, init="ERK": 3.0)
    assert dropped == 2 * (DIGITS_TRAIN // 64 * 64)  # the ragged last batches not trained, not charged
    masked = ProgressiveResizing.stacked_flops(cfg, lambda density=1.0, init="ERK": 10.0 * density)
    assert masked(0.5) == pytest.approx(5.0 * mean_pixel_fraction(0.5, 0.5, 0.2))


@pytest.mark.parametrize("settings, says", [
    (dict(model="mlp"), "model mlp cannot take 4x4 images"),
    (dict(model="lenet300-100"), "model lenet300-100 cannot take 4x4 images"),
    (dict(flat=True), "the data's samples have shape (64,), not (C, H, W)"),
    (dict(resize_initial_scale=0.0), "resize-initial-scale must be in (0, 1], got 0"),
    (dict(resize_delay=0.9, resize_finetune=0.2), "resize-delay + resize-finetune must be at most 1"),
    (dict(resize_increment=0), "resize-increment must be a positive integer, got 0"),
    (dict(resize_mode="nearest"), "unknown resize mode 'nearest'"),
])
def test_what_it_cannot_train_is_refused_before_any_work(settings, says):
    with pytest.raises(UsageError) as err:
        raypkg.run("progressive-resizing", save=False, **{**TINY, **settings})
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_model_that_cannot_resize_is_fine_when_nothing_is_resized():
    assert raypkg.run("progressive-resizing", save=False, resize_initial_scale=1.0, **{**TINY, "model": "mlp",
                                                                                       "epochs": 1}).summary["steps"]


def test_added_to_infobatch_it_resizes_infobatchs_batches():
    alone = raypkg.run("infobatch", save=False, **TINY)
    kept = raypkg.run("infobatch+progressive-resizing", save=False, resize_initial_scale=1.0, **TINY)
    assert rows(kept) == rows(alone)
    stacked = raypkg.run("infobatch+progressive-resizing", save=False, **TINY)
    notes = stacked.summary["progressive-resizing"]
    assert set(notes["sizes"]) == {"4x4", "8x8"} and notes["examples"] == sum(stacked.summary["kept_per_epoch"])
    assert rows(stacked)[0]["train_loss"] != rows(alone)[0]["train_loss"]


def test_its_config_defaults_to_a_model_that_takes_smaller_images():
    cfg = ProgressiveResizingConfig()
    assert cfg.model == "resnet20" and (cfg.resize_initial_scale, cfg.resize_delay, cfg.resize_finetune,
                                        cfg.resize_increment, cfg.resize_mode) == (0.5, 0.5, 0.2, 4, "resize")
