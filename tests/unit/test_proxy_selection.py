"""Online proxy batch selection (raypkg.methods.proxy_selection): the kept examples are the proxy's
top-k losses, the proxy trains outside the global RNG, keep = 1 is plain training bit for bit,
a run repeats, a checkpoint brings the proxy back, stacks, and the frontier's count."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import DIGITS_TRAIN

import raypkg
from raypkg.algorithms import method_config
from raypkg.cli import main
from raypkg.data import load_dataset
from raypkg.engine.callbacks import Batch, Callback
from raypkg.engine.execution import to_memory_format
from raypkg.engine.loop import CLOCK_COLUMNS, fit, seed_everything, training_state
from raypkg.engine.plans import trained_examples
from raypkg.errors import UsageError
from raypkg.methods.proxy_selection import (
    ProxyBatchSelection,
    ProxySelection,
    hardest,
    kept_count,
    proxy_name,
)

ProxySelectionConfig = method_config("proxy-selection")  # `effray run proxy-selection`'s
from raypkg.models import build_model

TINY = dict(dataset="digits", model="mlp", epochs=2, progress=False)
# digits: 1,347 examples in 21 batches of 64 (the ragged last one dropped, --drop-last); keep 0.5 keeps 32
DRAWN_PER_EPOCH, KEPT_PER_EPOCH = 21 * 64, 21 * 32


def rows(result, drop=("proxy_loss",)) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS and k not in drop}
            for row in result.summary["rows"]]


def context(model_name="mlp", **settings):
    """A training context on digits for calling the callback's hooks by hand."""
    data = load_dataset("digits")
    cfg = ProxySelectionConfig(model=model_name, precision="fp32", memory_format="contiguous", **settings)
    model = to_memory_format(build_model(model_name, data.input_shape, data.num_classes), "contiguous")
    return SimpleNamespace(model=model, cfg=cfg, device=torch.device("cpu"), train=data.train, epoch=0,
                           step_in_epoch=0, steps_in_epoch=10, global_step=0, lr=0.1, batch=None)


def test_k_is_keep_times_the_batch_rounded_half_up_and_ties_go_to_the_earlier_position():
    assert [kept_count(b, 0.5) for b in (64, 3, 1)] == [32, 2, 1] and kept_count(10, 0.3) == 3
    assert kept_count(7, 1.0) == 7 and kept_count(7, 0.01) == 1
    losses = torch.tensor([1.0, 3.0, 2.0, 3.0, 3.0, 0.5])
    assert hardest(losses, 2).tolist() == [1, 3] and hardest(losses, 4).tolist() == [1, 2, 3, 4]


def test_auto_picks_the_mlp_under_a_convolutional_model_and_logreg_otherwise():
    assert proxy_name("auto", "resnet20", True) == "mlp" and proxy_name("auto", "lenet5", True) == "logreg"
    assert proxy_name("auto", "mlp", False) == "logreg" and proxy_name("lenet5", "resnet20", True) == "lenet5"


def test_the_main_model_gets_the_proxys_top_k_losses_with_their_weights():
    ctx = context()
    selection = ProxySelection("auto", keep=0.25, start=0.0)
    selection.on_fit_start(ctx)
    selection.on_epoch_start(ctx)
    assert selection.name == "logreg" and selection.lr_scale == 1.0
    before = copy.deepcopy(selection.proxy)
    x, y = ctx.train.x[:32].clone(), ctx.train.y[:32].clone()
    x[16:24] = x[8:16]  # equal inputs and labels: equal losses, taken in the batch's order
    y[16:24] = y[8:16]
    weights, positions = torch.rand(32, generator=torch.Generator().manual_seed(0)), torch.arange(100, 132)
    ctx.batch = Batch(positions, x, y, weights)
    selection.on_batch_start(ctx)
    with torch.no_grad():
        losses = F.cross_entropy(before(x), y, reduction="none").tolist()
    expected = sorted(sorted(range(32), key=lambda i: (-losses[i], i))[:8])
    assert ctx.batch.positions.tolist() == [100 + i for i in expected]
    assert torch.equal(ctx.batch.x, x[expected]) and torch.equal(ctx.batch.y, y[expected])
    assert torch.equal(ctx.batch.weights, weights[expected])
    assert selection.proxy_examples == 32


def test_the_proxy_trains_on_each_batch_and_leaves_the_global_rng_alone():
    ctx = context()
    rng = torch.get_rng_state()
    selection = ProxySelection("auto", keep=0.5, start=0.0)
    selection.on_fit_start(ctx)
    selection.on_epoch_start(ctx)
    x, y = ctx.train.x[:64], ctx.train.y[:64]
    start = {k: v.clone() for k, v in selection.proxy.state_dict().items()}
    losses = []
    for step in range(20):
        ctx.global_step, ctx.batch = step, Batch(torch.arange(64), x, y)
        with torch.no_grad():
            losses.append(F.cross_entropy(selection.proxy(x), y).item())
        selection.on_batch_start(ctx)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not torch.equal(selection.proxy.state_dict()["head.weight"], start["head.weight"])
    assert losses[-1] < 0.5 * losses[0] and losses[5] < losses[0]
    assert selection.optimizer.param_groups[0]["lr"] == ctx.lr


@pytest.mark.parametrize("setting, name, lr", [("auto", "mlp", 0.1), ("lenet5", "lenet5", 0.03)])
def test_under_a_convolutional_model_the_proxy_steps_at_its_share_of_the_schedule(setting, name, lr):
    """Each model's default rate: the MLP's 0.1 is ResNet-20's; LeNet-5's 0.03 makes its SGD follow
    0.3 x the main LR."""
    ctx = context("resnet20")
    selection = ProxySelection(setting, keep=0.5, start=0.0)
    selection.on_fit_start(ctx)
    selection.on_epoch_start(ctx)
    ctx.batch = Batch(torch.arange(8), ctx.train.x[:8], ctx.train.y[:8])
    selection.on_batch_start(ctx)
    assert selection.name == name and selection.optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    assert len(ctx.batch.y) == 4


def test_keep_one_is_plain_training_bit_for_bit():
    plain = raypkg.run("train", save=False, **TINY)
    unselected = raypkg.run("proxy-selection", save=False, proxy_keep=1.0, **TINY)
    assert rows(unselected) == rows(plain) and unselected.summary["test_acc"] == plain.summary["test_acc"]
    s = unselected.summary
    assert s["proxy_forward_examples"] == s["main_forward_examples"] == s["main_backward_examples"] == 2 * DRAWN_PER_EPOCH
    proxy_losses = [row["proxy_loss"] for row in s["rows"]]
    assert proxy_losses[1] < proxy_losses[0]  # the proxy trained, unseen by the main model


def test_selection_trains_the_main_model_on_the_kept_share_and_repeats_exactly():
    """--proxy-start 0.5 of 2 epochs: the first epoch trains whole batches, the second the kept half."""
    runs = [raypkg.run("proxy-selection", save=False, proxy_keep=0.5, proxy_start=0.5, **TINY) for _ in range(2)]
    assert rows(runs[0], drop=()) == rows(runs[1], drop=()) and runs[0].summary["test_acc"] == runs[1].summary["test_acc"]
    s = runs[0].summary
    assert s["main_forward_examples"] == s["main_backward_examples"] == DRAWN_PER_EPOCH + KEPT_PER_EPOCH
    assert s["proxy_forward_examples"] == s["proxy_backward_examples"] == 2 * DRAWN_PER_EPOCH
    assert s["proxy_model"] == "logreg" and s["proxy_forward_flops"] == 2 * 64 * 10
    plain = raypkg.run("train", save=False, **TINY)
    assert rows(runs[0])[0] == rows(plain)[0] and rows(runs[0])[1] != rows(plain)[1]


def test_a_checkpoint_brings_the_proxy_back_and_the_resumed_run_equals_the_straight_one():
    data = load_dataset("digits")
    cfg = ProxySelectionConfig(precision="fp32", memory_format="contiguous", epochs=3, progress=False).validate()
    saved = {}

    class Interrupted(Exception):
        pass

    class StopAfterTwo(Callback):
        def on_epoch_end(self, ctx, row):
            if ctx.epoch == 1 and not saved:
                buffer = io.BytesIO()  # through torch.save and a weights_only load, as Ray Train's checkpoints
                torch.save(training_state(ctx), buffer)
                buffer.seek(0)
                saved.update(torch.load(buffer, weights_only=True))
                raise Interrupted

    def model():
        seed_everything(0)
        return build_model("mlp", data.input_shape, data.num_classes)

    straight, straight_selection = model(), ProxySelection("auto", 0.5, 0.0)
    straight_rows = fit(straight, data.train, None, cfg, callbacks=[straight_selection])
    with pytest.raises(Interrupted):
        fit(model(), data.train, None, cfg, callbacks=[ProxySelection("auto", 0.5, 0.0), StopAfterTwo()])
    resumed, resumed_selection = model(), ProxySelection("auto", 0.5, 0.0)
    resumed_rows = fit(resumed, data.train, None, cfg, callbacks=[resumed_selection, StopAfterTwo()], resume=saved)
    drop = lambda rs: [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in rs]  # noqa: E731
    assert drop(resumed_rows) == drop(straight_rows)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight_selection.proxy.state_dict().values(), resumed_selection.proxy.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed_selection.state_dict()["main_examples"] == straight_selection.main_examples == 3 * KEPT_PER_EPOCH


def test_added_to_infobatch_it_selects_within_its_weighted_batches():
    alone = raypkg.run("infobatch", save=False, **TINY)
    neutral = raypkg.run("infobatch+proxy-selection", save=False, proxy_keep=1.0, **TINY)
    assert rows(neutral) == rows(alone)
    stacked = raypkg.run("infobatch+proxy-selection", save=False, proxy_keep=0.5, **TINY).summary
    notes = stacked["proxy-selection"]
    drawn = sum(trained_examples(kept, 64, True) for kept in stacked["kept_per_epoch"])  # its batches, the ragged dropped
    assert notes["proxy_forward_examples"] == drawn and notes["main_forward_examples"] < 0.51 * drawn
    assert stacked["stack"] == ["proxy-selection"]


def test_the_frontier_charges_both_models_and_estimates_a_stack_from_the_config():
    case = ProxyBatchSelection.bench_cases[0]
    cfg = case.config("proxy-selection", None, {}, dict(TINY), DIGITS_TRAIN)
    summary = {"main_forward_examples": 600, "main_backward_examples": 600, "proxy_forward_examples": 1000,
               "proxy_backward_examples": 1000, "proxy_forward_flops": 5.0}
    seen, flops = case.examples(cfg, summary, DIGITS_TRAIN, lambda density=1.0, init="ERK": 100.0)
    assert seen == 1000 and math.isclose(flops, 600 * 100.0 + 1000 * 5.0)
    # stacked: keep 0.5 after a first 0.2 of the run: 0.6 of each example through the MLP, all through logreg
    cfg = ProxySelectionConfig(proxy_keep=0.5, proxy_start=0.2)
    per_example = ProxyBatchSelection.stacked_flops(cfg, lambda density=1.0, init="ERK": 1000.0 * density)
    assert math.isclose(per_example(), 0.6 * 1000.0 + 2 * 64 * 10) and math.isclose(per_example(0.5), 300 + 1280)


def test_one_process_and_a_proxy_that_takes_the_data_or_one_line():
    data = SimpleNamespace(input_shape=(7,), num_classes=10)
    with pytest.raises(UsageError, match="--workers 2: proxy-selection trains its proxy on each rank's own"):
        ProxyBatchSelection.check(ProxySelectionConfig(workers=2), data)
    with pytest.raises(UsageError, match="proxy-model: model 'lenet5' needs image input"):
        ProxyBatchSelection.check(ProxySelectionConfig(proxy_model="lenet5"), data)
    assert ProxyBatchSelection.check(ProxySelectionConfig(workers=1), data) is None  # logreg takes 7 features
    with pytest.raises(UsageError, match="proxy-keep must be in \\(0, 1\\], got 0"):
        ProxySelectionConfig(proxy_keep=0.0).validate()


def test_its_command_runs_with_no_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "proxy-selection", "--epochs", "1", "--wandb", "disabled",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "main model trained on 50.0% of the examples drawn; proxy logreg at 2.9%" in result.stdout
    summary = json.loads(next(Path("runs").glob("proxy-selection-*/summary.json")).read_text())
    assert summary["main_forward_examples"] == KEPT_PER_EPOCH and summary["proxy_keep"] == 0.5


def test_after_progressive_resizing_the_proxy_sees_each_batch_scaled_back_to_the_datas_size():
    """progressive-resizing's callback acts first here: the MLP proxy (64 inputs) gets its 4x4
    images bilinearly up-scaled to 8x8; the main ResNet-20 trains on the kept 4x4 ones."""
    result = raypkg.run("progressive-resizing+proxy-selection", save=False, dataset="digits", model="resnet20",
                        epochs=1, progress=False, resize_initial_scale=0.5, resize_delay=0.0, resize_finetune=0.0,
                        resize_increment=4).summary
    notes = result["proxy-selection"]
    assert notes["proxy_model"] == "mlp" and notes["proxy_forward_examples"] == DRAWN_PER_EPOCH
    assert notes["main_forward_examples"] == KEPT_PER_EPOCH
    assert result["examples"] == DRAWN_PER_EPOCH and result["sizes"]["4x4"]["examples"] > 0  # it resized whole batches
