"""CREST: exact coreset sizes and weights, the quadratic model and its check, delta, the
pool floor, the step budget, actors vs in-process, `effray tune crest`, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from click.testing import CliRunner

from raypkg.cli import main
from raypkg.crest.callback import CrestCallback
from raypkg.crest.config import CrestConfig
from raypkg.crest.plan import budget_steps
from raypkg.crest.quadratic import (QuadraticModel, flat_params, gradient_and_hessian_diagonal,
                                    region_left)
from raypkg.crest.runner import prepare, train_crest
from raypkg.crest.selection import class_budgets, select_coresets, stratified_subsets
from raypkg.engine.callbacks import Callback


def tiny(**overrides) -> CrestConfig:
    values = dict(dataset="digits", model="mlp", epochs=3, batch_size=32, random_subset_size=0.1, train_frac=0.3,
                  num_minibatch_coreset=3, progress=False, wandb="disabled", lr=[0.05])
    return CrestConfig(**{**values, **overrides}).validate()


class Recorder(Callback):
    """Placed after CrestCallback: every batch, and delta checked against its own w0 snapshot."""

    def __init__(self, crest: CrestCallback):
        self.crest, self.batches, self.deltas_checked = crest, [], 0
        self.w0, self.region, self.checks = None, 0, 0

    def on_fit_start(self, ctx):
        self.w0, self.region = flat_params(ctx.model.parameters()), self.crest.regions

    def on_after_backward(self, ctx):
        self.batches.append((ctx.batch.positions.cpu(), ctx.batch.y.cpu(), ctx.batch.weights.cpu()))

    def on_step_end(self, ctx):
        if len(self.crest.checks) != self.checks:  # a check ran in this step: w - w0 from the parameters
            self.checks = len(self.crest.checks)
            now = flat_params(ctx.model.parameters())
            assert torch.equal(self.crest.last_delta, now - self.w0)
            self.deltas_checked += 1
        if self.crest.regions != self.region:  # a new region started: w0 is the current weights
            self.w0, self.region = flat_params(ctx.model.parameters()), self.crest.regions


def test_coresets_are_exactly_batch_sized_with_mean_one_weights_and_delta_is_exact():
    cfg = tiny(momentum=0.9, weight_decay=5e-4, lr_warmup_epochs=1, check_thresh_factor=0.05)
    data = prepare(cfg)
    crest = CrestCallback(len(data.train))
    from raypkg.crest.plan import CrestPlan
    from raypkg.engine.trainer import train

    recorder = Recorder(crest)
    train(cfg, data, plan=CrestPlan(len(data.train), cfg.train_frac, cfg.batch_size), callbacks=[crest, recorder])
    assert len(recorder.batches) == cfg.epochs * budget_steps(len(data.train), cfg.train_frac, cfg.batch_size)
    for positions, y, weights in recorder.batches:
        assert len(positions) == cfg.batch_size == len(positions.unique())
        assert torch.bincount(y, minlength=10).max() <= math.ceil(cfg.batch_size / 10)
        assert weights.double().mean().item() == pytest.approx(1.0, abs=1e-6)
    assert crest.regions >= 2 and recorder.deltas_checked == len(crest.checks) >= 2


class CheckAtW0(Callback):
    """Placed after CrestCallback: one validity check at the first region's start (delta = 0)."""

    def __init__(self, crest: CrestCallback):
        self.crest, self.error = crest, None

    def on_fit_start(self, ctx):
        self.crest.check(ctx)
        self.error = self.crest.checks[-1]["approx_error"]


def test_loss0_on_subsets_leaves_no_model_error_at_w0():
    """As specified, L0 comes from the weighted coresets but the check's true loss from the
    random subsets, so the model is off at delta = 0 already; ``loss0_on_subsets`` makes it exact."""
    from raypkg.crest.plan import CrestPlan
    from raypkg.engine.trainer import train

    errors = {}
    for loss0_on_subsets in (False, True):
        cfg = tiny(epochs=1, loss0_on_subsets=loss0_on_subsets)
        data = prepare(cfg)
        crest = CrestCallback(len(data.train))
        probe = CheckAtW0(crest)
        train(cfg, data, plan=CrestPlan(len(data.train), cfg.train_frac, cfg.batch_size), callbacks=[crest, probe])
        errors[loss0_on_subsets] = probe.error
    assert errors[True] == 0.0
    assert errors[False] > 1e-3, errors


def test_class_budgets_sum_to_the_batch_and_respect_ceil_b_over_c():
    assert class_budgets(torch.tensor([50] * 10), 32).tolist() == [4, 4, 3, 3, 3, 3, 3, 3, 3, 3]
    skewed = class_budgets(torch.tensor([1, 2, 40, 40, 40]), 30)
    assert skewed.tolist() == [1, 2, 9, 9, 9] and int(skewed.sum()) == 30
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(1000) % 7
    subsets = stratified_subsets(torch.arange(1000), labels, 4, 100, gen)
    assert [len(s) for s in subsets] == [100] * 4 and len(torch.cat(subsets).unique()) == 400


def linear_squared_loss(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, power: int = 2):
    return lambda: ((x @ w - y) ** power).mean()


def test_quadratic_model_is_exact_for_a_linear_model_with_squared_loss_and_a_curved_loss_leaves():
    """One-hot scaled inputs make the Hessian 2/n X^T X diagonal, so Hutchinson is exact and
    the quadratic model equals the loss anywhere; a quartic loss leaves the region."""
    gen = torch.Generator().manual_seed(0)
    d, n = 6, 40
    x = torch.zeros(n, d, dtype=torch.float64)
    x[torch.arange(n), torch.arange(n) % d] = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    for power, leaves in ((2, False), (4, True)):
        w = torch.zeros(d, dtype=torch.float64, requires_grad=True)
        loss_fn = linear_squared_loss(x, y, w, power)
        quad = QuadraticModel(approx_moment=False)
        quad.update(*gradient_and_hessian_diagonal(loss_fn, [w], probes=1, generator=gen))
        w0 = flat_params([w])
        velocity = torch.zeros_like(w)
        for _ in range(5):  # SGD with momentum, driven by autograd.grad
            (grad,) = torch.autograd.grad(loss_fn(), [w])
            velocity = 0.9 * velocity + grad
            with torch.no_grad():
                w -= 0.3 * velocity
        delta = flat_params([w]) - w0
        true = float(loss_fn().detach())
        predicted = quad.predict(delta)
        if power == 2:
            assert predicted == pytest.approx(true, rel=1e-12)
        assert region_left(true, predicted, thresh_factor=0.1) is leaves


def test_adam_style_smoothing_of_the_first_region_is_the_raw_estimate():
    quad = QuadraticModel(approx_moment=True)
    quad.update(1.0, torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([-3.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(quad.g, torch.tensor([1.0, -2.0], dtype=torch.float64))
    torch.testing.assert_close(quad.h, torch.tensor([3.0001, 4.0001], dtype=torch.float64))


def test_dropping_learned_examples_stops_at_min_train_size():
    cfg = tiny(epochs=2, drop_learned=True, drop_interval=1, watch_interval=1, drop_thresh=100.0,
               min_train_size=1200)
    data = prepare(cfg)
    outcome = train_crest(cfg, data)
    seen_in_first_epoch = 1347 - 1200  # far more were observed (all "learned" with thresh 100) than room
    assert outcome.crest["pool_size"] == 1200 and outcome.crest["dropped"] == seen_in_first_epoch


def test_random_and_crest_take_the_same_steps_none_takes_the_full_budget():
    steps = {m: train_crest(tiny(selection_method=m), prepare(tiny(selection_method=m))).steps
             for m in ("crest", "random", "none")}
    assert steps["crest"] == steps["random"] == 3 * math.ceil(round(0.3 * 1347) / 32)
    assert steps["none"] == 3 * math.ceil(1347 / 32)


def test_actors_and_in_process_select_the_same_coresets(ray_session):
    from raypkg.engine.shard_pool import ShardPool
    from raypkg.models.registry import build_model

    cfg = tiny()
    data = prepare(cfg)
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    subsets = stratified_subsets(torch.arange(len(data.train)), data.train.y, 3, 135, torch.Generator().manual_seed(1))
    local = select_coresets(model, data.train.x, data.train.y, subsets, 32, 10)
    with ShardPool(data.train, 2) as pool:
        remote = select_coresets(model, data.train.x, data.train.y, subsets, 32, 10, pool=pool)
    for a, b in zip(local, remote):
        assert a.picks.tolist() == b.picks.tolist() and len(a.picks) == 32
        assert torch.equal(a.weights, b.weights)


def test_tune_crest_completes_and_writes_wandb_offline_runs(ray_session, tmp_path):
    space = tmp_path / "crest.yaml"
    space.write_text(yaml.safe_dump({
        "method": "crest", "metric": "test_acc", "mode": "max", "scheduler": "asha", "search": "random",
        "base": {"dataset": "digits", "model": "logreg", "epochs": 2, "batch_size": 32, "random_subset_size": 0.1,
                 "wandb": "disabled"},
        "space": {"check_thresh_factor": {"loguniform": [0.05, 0.5]}, "train_frac": {"choice": [0.1, 0.3]}}}))
    result = CliRunner().invoke(main, ["tune", "crest", "--space", str(space), "--num-samples", "2",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "best test_acc" in result.output
    assert len(list((tmp_path / "out").rglob("offline-run-*"))) >= 2


@pytest.mark.parametrize("flags, message", [
    (["--train-frac", "1.5"], "train-frac must be in"),
    (["--selection-method", "craig"], "is not one of"),
    (["--random-subset-size", "0.01"], "smaller than the batch size"),
    (["--actors", "2", "--workers", "2"], "give one of them"),
    (["--min-train-size", "5000", "--random-subset-size", "0.1"], "larger than the training set"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, flags, message):
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", "crest", "--dataset", "digits", "--out", str(out), *flags])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
