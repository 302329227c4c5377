"""CREST: exact coreset sizes and weights, the quadratic model (its moving averages step
once per coreset mini-batch) and its check (one forward over the random subsets' union),
delta, BatchNorm in eval mode, the pool floor, the step budget, actors vs in-process,
overlapped selection on actors, the bench's optimizers, `effray tune crest`, bad input."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from helpers import DIGITS_TRAIN

from raypkg.cli import main
from raypkg.engine.callbacks import Callback
from raypkg.methods.crest.callback import CrestCallback, eval_losses
from raypkg.methods.crest.config import CREST_ONLY
from raypkg.methods.crest.plan import budget_steps
from raypkg.methods.crest.quadratic import QuadraticModel, flat_params, gradient_and_hessian_diagonal, region_left
from raypkg.methods.crest.recipe import CREST
from raypkg.methods.crest.selection import class_budgets, select_coresets, stratified_subsets
from raypkg.recipe import MemorySink, load_data

CrestConfig = CREST.config_cls  # `effray run crest`'s: method_config("crest")


def run_crest(cfg: CrestConfig) -> dict:
    """The CREST recipe's summary for ``cfg``, in memory."""
    return CREST.run(cfg, lambda recipe, cfg: MemorySink(recipe, cfg))


def tiny(**overrides) -> CrestConfig:
    values = dict(dataset="digits", model="mlp", epochs=3, batch_size=32, random_subset_size=0.1, train_frac=0.3,
                  num_minibatch_coreset=3, progress=False, wandb="disabled", lr=[0.05], precision="fp32",
                  memory_format="contiguous")  # the stages are called directly, below Recipe.run's decision
    if overrides.get("selection_method", "crest") != "crest":  # the baselines take none of CREST's settings
        values = {k: v for k, v in values.items() if k not in CREST_ONLY}
    return CrestConfig(**{**values, **overrides}).resolved().validate()


class Recorder(Callback):
    """Placed after CrestCallback: every batch, and delta checked against its own w0 snapshot."""

    def __init__(self, crest: CrestCallback):
        self.crest, self.batches, self.deltas_checked = crest, [], 0
        self.w0, self.region, self.checks = None, 0, 0
        self.coresets_per_region: list[int] = []

    def on_fit_start(self, ctx):
        self.w0, self.region = flat_params(ctx.model.parameters()), self.crest.regions
        self.coresets_per_region.append(len(ctx.plan.positions))

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
            self.coresets_per_region.append(len(ctx.plan.positions))


def train_recorded(cfg: CrestConfig, actor_pool=None) -> tuple[CrestCallback, Recorder]:
    from raypkg.engine.trainer import train

    data = load_data(cfg)
    crest = CrestCallback(cfg, len(data.train), actor_pool)
    recorder = Recorder(crest)
    train(cfg, data, plan=crest.plan, callbacks=[crest, recorder])
    return crest, recorder


def assert_valid_coreset_batches(cfg: CrestConfig, recorder: Recorder) -> None:
    assert len(recorder.batches) == cfg.epochs * budget_steps(DIGITS_TRAIN, cfg.train_frac, cfg.batch_size)
    for positions, y, weights in recorder.batches:
        assert len(positions) == cfg.batch_size == len(positions.unique())
        assert torch.bincount(y, minlength=10).max() <= math.ceil(cfg.batch_size / 10)
        assert weights.double().mean().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("optimizer", [dict(momentum=0.9, check_thresh_factor=0.05),
                                       dict(momentum=0.0, lr_warmup_epochs=1, check_thresh_factor=0.02)])
def test_coresets_are_exactly_batch_sized_with_mean_one_weights_and_delta_is_exact(optimizer):
    cfg = tiny(weight_decay=5e-4, **optimizer)
    crest, recorder = train_recorded(cfg)
    assert_valid_coreset_batches(cfg, recorder)
    assert crest.regions >= 2 and recorder.deltas_checked == len(crest.checks) >= 2
    # the moving averages stepped once per coreset mini-batch of every region, not once per region
    assert crest.quad.updates == sum(recorder.coresets_per_region) == crest.coreset_batches > crest.regions


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
    from raypkg.engine.trainer import train

    errors = {}
    for loss0_on_subsets in (False, True):
        cfg = tiny(epochs=1, loss0_on_subsets=loss0_on_subsets)
        data = load_data(cfg)
        crest = CrestCallback(cfg, len(data.train))
        probe = CheckAtW0(crest)
        train(cfg, data, plan=crest.plan, callbacks=[crest, probe])
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
        quad.fit_region([gradient_and_hessian_diagonal(loss_fn, [w], probes=1, generator=gen)])
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


def test_moving_averages_step_once_per_coreset_minibatch_and_carry_across_regions():
    """Region 1 has two mini-batches, region 2 one: the EMAs take three steps, and each
    region's g and H are the means of the bias-corrected per-mini-batch values. Updating
    once per region (from the mean of g_b) would give g = (g1 + g2) / 2 for region 1."""
    f64 = dict(dtype=torch.float64)
    g1, g2, g3 = torch.tensor([1.0, -2.0], **f64), torch.tensor([3.0, 0.5], **f64), torch.tensor([-1.0, 1.0], **f64)
    h1, h2, h3 = torch.tensor([-3.0, 4.0], **f64), torch.tensor([1.0, 2.0], **f64), torch.tensor([0.5, -0.5], **f64)
    quad = QuadraticModel(approx_moment=True)
    quad.fit_region([(1.0, g1, h1), (3.0, g2, h2)])
    m1, v1 = 0.1 * g1, 0.001 * h1 ** 2
    m2, v2 = 0.9 * m1 + 0.1 * g2, 0.999 * v1 + 0.001 * h2 ** 2
    expected_g = (m1 / 0.1 + m2 / (1 - 0.9 ** 2)) / 2
    expected_h = ((v1 / 0.001).sqrt() + (v2 / (1 - 0.999 ** 2)).sqrt()) / 2 + 1e-4
    assert quad.updates == 2 and quad.loss0 == 2.0
    torch.testing.assert_close(quad.g, expected_g, rtol=1e-12, atol=0)
    torch.testing.assert_close(quad.h, expected_h, rtol=1e-12, atol=0)
    assert not torch.allclose(quad.g, (g1 + g2) / 2)
    quad.fit_region([(0.5, g3, h3)])
    m3, v3 = 0.9 * m2 + 0.1 * g3, 0.999 * v2 + 0.001 * h3 ** 2
    assert quad.updates == 3 and quad.loss0 == 0.5
    torch.testing.assert_close(quad.g, m3 / (1 - 0.9 ** 3), rtol=1e-12, atol=0)
    torch.testing.assert_close(quad.h, (v3 / (1 - 0.999 ** 3)).sqrt() + 1e-4, rtol=1e-12, atol=0)
    raw = QuadraticModel(approx_moment=False)  # no smoothing: plain means of the mini-batches' g_b and h_b
    raw.fit_region([(1.0, g1, h1), (3.0, g2, h2)])
    assert torch.equal(raw.g, (g1 + g2) / 2) and torch.equal(raw.h, (h1 + h2) / 2) and raw.updates == 0


@pytest.mark.parametrize("model_name", ["mlp", "resnet20"])
def test_check_is_one_forward_over_the_union_equal_to_the_p_separate_forwards(model_name):
    """The check's true loss: one eval-mode forward over the region's random subsets; per
    example it equals forwarding each subset alone (BatchNorm uses running statistics)."""
    from raypkg.models.registry import build_model

    cfg = tiny(model=model_name)
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(model_name, data.input_shape, data.num_classes)
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        model(data.train.x[:256])
    subsets = stratified_subsets(torch.arange(len(data.train)), data.train.y, 3, 135, torch.Generator().manual_seed(1))
    union = torch.cat(subsets)
    forwards = []
    hook = model.register_forward_hook(lambda module, args, out: forwards.append(len(args[0])))
    together = eval_losses(model, data.train.x[union], data.train.y[union])
    assert forwards == [len(union)] and model.training  # one forward, and the mode restored
    crest = CrestCallback(cfg, len(data.train))
    crest.random_positions = union
    ctx = SimpleNamespace(model=model, train=data.train, cfg=SimpleNamespace(precision="fp32"),
                          all_reduce=lambda t, op="sum": t)
    true = crest.true_loss(ctx)  # what the check compares with the model's prediction
    assert forwards == [len(union)] * 2
    hook.remove()
    apart = torch.cat([eval_losses(model, data.train.x[s], data.train.y[s]) for s in subsets])
    torch.testing.assert_close(together, apart, rtol=1e-5, atol=1e-6)
    assert true == pytest.approx(float(apart.double().mean()), rel=1e-6)


def test_crest_trains_a_batchnorm_model_and_leaves_its_running_statistics_to_training():
    """ResNet-20: the quadratic model and the checks run in eval mode, so the running
    statistics change only through training steps (none at the fit's start)."""
    from raypkg.engine.trainer import train

    class RunningStatsAtStart(Callback):
        def on_fit_start(self, ctx):
            self.before = {k: v.clone() for k, v in ctx.model.state_dict().items() if "running" in k}

    cfg = tiny(model="resnet20", epochs=1, train_frac=0.1, momentum=0.0)
    data = load_data(cfg)
    snap = RunningStatsAtStart()
    crest = CrestCallback(cfg, len(data.train))
    probe = CheckAtW0(crest)

    class AfterFirstRegion(Callback):  # after CrestCallback's first region and a check at w0
        def on_fit_start(self, ctx):
            self.after = {k: v.clone() for k, v in ctx.model.state_dict().items() if "running" in k}

    after = AfterFirstRegion()
    result = train(cfg, data, plan=crest.plan,
                   callbacks=[snap, crest, probe, after])
    assert snap.before and all(torch.equal(snap.before[k], after.after[k]) for k in snap.before)
    assert crest.regions == 1 + sum(c["reselect"] for c in crest.checks)  # one at the start, one per re-selection
    assert crest.quad.updates == crest.coreset_batches >= 1
    assert math.isfinite(result.history[-1]["train_loss"]) and crest.checks


def test_dropping_learned_examples_stops_at_min_train_size():
    cfg = tiny(epochs=2, drop_learned=True, drop_interval=1, watch_interval=1, drop_thresh=100.0,
               min_train_size=1200)
    summary = run_crest(cfg)
    seen_in_first_epoch = DIGITS_TRAIN - 1200  # far more were observed (all "learned" with thresh 100) than room
    assert summary["candidates"] == 1200 and summary["dropped"] == seen_in_first_epoch


def test_random_and_crest_take_the_same_steps_none_takes_the_full_budget():
    steps = {m: run_crest(tiny(selection_method=m))["steps"] for m in ("crest", "random", "none")}
    assert steps["crest"] == steps["random"] == 3 * (round(0.3 * DIGITS_TRAIN) // 32)  # ragged batches dropped
    assert steps["none"] == 3 * (DIGITS_TRAIN // 32)


@pytest.mark.slow
def test_actors_and_in_process_select_the_same_coresets(ray_session):
    from raypkg.distributed.shard_pool import ShardPool
    from raypkg.models.registry import build_model

    cfg = tiny()
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    subsets = stratified_subsets(torch.arange(len(data.train)), data.train.y, 3, 135, torch.Generator().manual_seed(1))
    local = select_coresets(model, data.train.x, data.train.y, subsets, 32, 10)
    with ShardPool(data.train, 2) as pool:
        remote = select_coresets(model, data.train.x, data.train.y, subsets, 32, 10, actor_pool=pool)
    for a, b in zip(local, remote):
        assert a.picks.tolist() == b.picks.tolist() and len(a.picks) == 32
        assert torch.equal(a.weights, b.weights)


@pytest.mark.slow
def test_overlap_trains_on_coresets_the_actors_selected_from_the_last_region_start(ray_session):
    """--actors with overlap: every region after the first trains on exactly the coresets
    that in-process selection gives from the weights at the previous region's start (one
    region stale), and they are valid coreset batches."""
    from raypkg.distributed.shard_pool import ShardPool
    from raypkg.engine.trainer import train
    from raypkg.methods.crest.selection import select_coresets

    class Dispatches(Callback):  # after CrestCallback: at each region start, w0, what went to the actors, the plan
        def __init__(self, crest):
            self.crest, self.seen, self.regions = crest, 0, []

        def on_fit_start(self, ctx):
            if self.crest.regions != self.seen:
                self.seen = self.crest.regions
                self.regions.append((copy.deepcopy(ctx.model).cpu(), self.crest.pending.subsets,
                                     [p.cpu() for p in ctx.plan.positions]))

        on_step_end = on_fit_start

    cfg = tiny(actors=2, overlap=True, check_thresh_factor=0.05)
    data = load_data(cfg)
    with ShardPool(data.train, 2) as actor_pool:
        crest = CrestCallback(cfg, len(data.train), actor_pool)
        recorder, dispatches = Recorder(crest), Dispatches(crest)
        train(cfg, data, plan=crest.plan,
              callbacks=[crest, recorder, dispatches])
    assert_valid_coreset_batches(cfg, recorder)
    assert crest.regions == len(dispatches.regions) >= 3 and crest.pending is None
    for (w0, sent, _), (_, _, used) in zip(dispatches.regions, dispatches.regions[1:]):
        expected = select_coresets(w0, data.train.x, data.train.y, sent, cfg.batch_size, 10)
        assert [s[c.picks].tolist() for s, c in zip(sent, expected)] == [p.tolist() for p in used]


def test_no_flags_run_crest_on_the_default_data_and_the_first_line_says_the_subsets_were_floored(tmp_path):
    result = CliRunner().invoke(main, ["run", "crest", "--epochs", "1", "--out", str(tmp_path), "--wandb", "disabled",
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == ("note: random subsets of 64 examples: --random-subset-size 0.01 x 1347 = 13 is less than one "
                     "batch, so they are floored at the batch size 64")
    run_dir = result.output.strip().splitlines()[-1].split("run directory: ")[1]
    summary = json.loads(open(f"{run_dir}/summary.json").read())
    assert summary["selection_method"] == "crest" and summary["steps"] == round(0.1 * DIGITS_TRAIN) // 64
    assert summary["regions"] == 1 + summary["reselections"]  # a region at the start, one per re-selection


def test_bench_labels_both_optimizers_the_paper_one_without_momentum_and_with_warm_up(tmp_path):
    from raypkg.methods.crest.recipe import OPTIMIZERS, paper_warmup_epochs

    assert [paper_warmup_epochs(e) for e in (200, 10, 2, 1)] == [20, 1, 1, 0]  # the reference: 20 of 200 epochs
    assert OPTIMIZERS["paper"][1](10) == {"momentum": 0.0, "lr_warmup_epochs": 1}
    assert OPTIMIZERS["momentum"][1](10) == {"momentum": 0.9, "lr_warmup_epochs": 0}
    result = CliRunner().invoke(main, ["bench", "crest", "--datasets", "digits", "--epochs", "2", "--fracs", "0.3",
                                       "--batch-size", "32", "--set", "weight_decay=0.0001",
                                       "--save", str(tmp_path / "bench")])
    assert result.exit_code == 0, result.output  # a --set of a setting the header shows (it once raised TypeError)
    assert result.output.count("weight decay 0.0001") == 1
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "bench.parquet")
    assert list(frame.optimizer.unique()) == [OPTIMIZERS["paper"][0], OPTIMIZERS["momentum"][0]]
    assert frame.groupby("optimizer").method.apply(list).tolist() == [["none", "random", "crest"]] * 2
    steps = frame.set_index(["optimizer", "method"]).steps
    assert steps[OPTIMIZERS["paper"][0], "crest"] == steps[OPTIMIZERS["paper"][0], "random"] == 2 * (404 // 32)


def test_bench_seeds_are_the_mean_of_single_seed_runs_and_a_variant_is_its_own_row(tmp_path):
    """--seeds 2 is the mean of the --seed 0 and --seed 1 runs (every number, test_acc_std
    their spread); a --variant is a CREST row of its own."""
    import pandas as pd

    def bench(name, *flags):
        result = CliRunner().invoke(main, ["bench", "crest", "--datasets", "digits", "--epochs", "3", "--fracs", "0.3",
                                           "--optimizers", "paper", "--wandb", "disabled",
                                           "--save", str(tmp_path / name), *flags])
        assert result.exit_code == 0, result.output
        return pd.read_parquet(tmp_path / f"{name}.parquet").set_index(["method", "variant"])

    both = bench("both", "--seeds", "2", "--variant", "loss0_on_subsets=true")
    one, other = bench("s0", "--seed", "0"), bench("s1", "--seed", "1")
    assert both.index.tolist() == [("none", ""), ("random", ""), ("crest", ""), ("crest", "loss0_on_subsets=true")]
    for column in ("steps", "regions", "checks", "test_acc"):
        assert both[column].drop(("crest", "loss0_on_subsets=true")).tolist() == \
            ((one[column] + other[column]) / 2).tolist(), column
    assert both.test_acc_std.iloc[0] == pytest.approx(abs(one.test_acc.iloc[0] - other.test_acc.iloc[0]) / 2, rel=1e-12)
    assert (both.seeds == 2).all() and (one.seeds == 1).all() and (one.test_acc_std == 0).all()


def test_the_reference_double_step_is_crest_at_twice_the_lr():
    """The reference code's second loss.backward() makes p.grad 2g: without weight decay that
    is exactly CREST at twice the LR (x2 is exact in floating point)."""
    import raypkg

    common = dict(save=False, dataset="digits", model="mlp", epochs=2, weight_decay=0.0, progress=False)
    doubled = raypkg.run("crest", reference_double_step=True, lr=0.05, **common)
    assert doubled.metrics["train_loss"].tolist() == raypkg.run("crest", lr=0.1, **common).metrics["train_loss"].tolist()
    assert doubled.metrics["train_loss"].tolist() != raypkg.run("crest", lr=0.05, **common).metrics["train_loss"].tolist()


# ---------------------------------------------------------------- the cheaper selection picks what the old one did
# The straightforward implementations the batched ones replaced: one subset, one class, one probe at a time.

def reference_class_budgets(counts: torch.Tensor, batch_size: int) -> torch.Tensor:
    order = sorted(range(len(counts)), key=lambda c: (-int(counts[c]), c))
    budgets = torch.zeros_like(counts)
    left = batch_size
    while left:
        for c in order:
            if left and budgets[c] < counts[c]:
                budgets[c] += 1
                left -= 1
    return budgets


def reference_coreset(z: torch.Tensor, y: torch.Tensor, batch_size: int, num_classes: int):
    """One subset's coreset: per class, DenseEmbedding distances, max(d) - d, the padded
    greedy of facility_location (picks, weights, losses)."""
    from raypkg.selection.embeddings import DenseEmbedding, logit_gradients
    from raypkg.selection.facility_location import greedy_batched, pad_blocks, similarity_from_distances

    losses = torch.nn.functional.cross_entropy(z, y, reduction="none")
    g = logit_gradients(z, y)
    members = [m for m in (torch.nonzero(y == c).squeeze(1) for c in range(num_classes)) if len(m)]
    budgets = reference_class_budgets(torch.tensor([len(m) for m in members]), batch_size)
    batch, valid = pad_blocks([similarity_from_distances(DenseEmbedding(g[m]).distances()) for m in members])
    results = greedy_batched(batch, budgets, valid)
    return (torch.cat([m[r.picks] for m, r in zip(members, results)]), torch.cat([r.weights for r in results]),
            losses)


def random_subsets_logits(seed: int, num_classes: int = 5) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Subsets of different sizes: skewed classes, a class missing from some, and repeated
    proxies (exact ties in the greedy's gains) in others."""
    gen = torch.Generator().manual_seed(seed)
    zs, ys = [], []
    for i in range(6):
        n = int(torch.randint(40, 120, (1,), generator=gen))
        present = num_classes - (i % 3 == 1)
        y = torch.minimum(torch.randint(0, present, (n,), generator=gen), torch.randint(0, present, (n,), generator=gen))
        z = torch.randn(n, num_classes, generator=gen) * float(torch.rand(1, generator=gen) * 4 + 0.1)
        if i % 2:
            z[n // 2:] = z[:n - n // 2].clone()  # duplicated rows: tied distances
            y[n // 2:] = y[:n - n // 2].clone()
        zs.append(z)
        ys.append(y)
    return zs, ys


@pytest.mark.parametrize("seed", range(6))
def test_all_subsets_in_one_greedy_pick_exactly_what_each_subset_alone_picked(seed):
    from raypkg.methods.crest.selection import coresets_from_logits

    zs, ys = random_subsets_logits(seed)
    together = coresets_from_logits(zs, ys, 16, 5)
    for z, y, got in zip(zs, ys, together):
        picks, weights, losses = reference_coreset(z, y, 16, 5)
        assert torch.equal(got.losses, losses) and got.weights.dtype == torch.float64
        if got.picks.tolist() != picks.tolist():
            # an exact tie in the greedy's gains (repeated proxies), broken the other way where a
            # padded block sums in another order (seen on an AMD EPYC): the same classes and the
            # same facility-location value, to the last bit of a double
            assert torch.equal(torch.bincount(y[got.picks], minlength=5), torch.bincount(y[picks], minlength=5))
            assert facility_value(z, y, got.picks) == facility_value(z, y, picks)
            continue
        assert torch.equal(got.weights, weights)


def facility_value(z: torch.Tensor, y: torch.Tensor, picks: torch.Tensor) -> float:
    """The facility-location value of ``picks``, class by class: each member's best similarity
    to a pick of its class, summed (in float64)."""
    from raypkg.selection.embeddings import DenseEmbedding, logit_gradients
    from raypkg.selection.facility_location import similarity_from_distances

    g, chosen, total = logit_gradients(z, y), set(picks.tolist()), 0.0
    for c in y.unique().tolist():
        members = torch.nonzero(y == c).squeeze(1)
        columns = [i for i, m in enumerate(members.tolist()) if m in chosen]
        if columns:
            sim = similarity_from_distances(DenseEmbedding(g[members]).distances()).double()
            total += sim[:, columns].max(1).values.sum().item()
    return total


def test_select_coresets_and_the_callback_pick_what_the_reference_picks_from_a_model():
    """From a model's forwards (one per subset) to the picks: select_coresets, and the
    callback's selection from its once-a-region read of the subsets' rows."""
    from raypkg.models.registry import build_model

    cfg = tiny()
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    subsets = stratified_subsets(torch.arange(len(data.train)), data.train.y, 4, 135, torch.Generator().manual_seed(2))
    crest = CrestCallback(cfg, len(data.train))
    crest.random_positions = torch.cat(subsets)
    ctx = SimpleNamespace(model=model, train=data.train, cfg=SimpleNamespace(precision="fp32"))
    for coresets in (select_coresets(model, data.train.x, data.train.y, subsets, 32, 10), crest.select(ctx, subsets)):
        for s, got in zip(subsets, coresets):
            with torch.no_grad():
                z = model.eval()(data.train.x[s])
            picks, weights, _ = reference_coreset(z, data.train.y[s], 32, 10)
            assert got.picks.tolist() == picks.tolist() and torch.equal(got.weights, weights)
    assert crest.check_set[0].data_ptr() == crest.region_examples(ctx)[0].data_ptr()  # read once


def test_greedy_blocks_equals_greedy_batched_block_by_block():
    from raypkg.methods.crest.selection import greedy_blocks
    from raypkg.selection.facility_location import greedy_batched, pad_blocks, similarity_from_distances

    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        sizes = torch.randint(1, 30, (8,), generator=gen).tolist()
        sims = []
        for n in sizes:
            e = torch.randn(n, 3, generator=gen)
            e[n // 2:] = e[:n - n // 2].round() + 1e-7 * torch.randn(n - n // 2, 3, generator=gen)  # near ties
            sims.append(similarity_from_distances(torch.cdist(e, e)))
        budgets = torch.tensor([int(torch.randint(1, n + 1, (1,), generator=gen)) for n in sizes])
        batch, valid = pad_blocks(sims)
        picks, weights = greedy_blocks(batch, budgets, valid)
        for i, res in enumerate(greedy_batched(batch, budgets, valid)):
            k = int(budgets[i])
            assert picks[i, :k].tolist() == res.picks.tolist() and (picks[i, k:] == -1).all()
            assert torch.equal(weights[i, :k], res.weights) and (weights[i, k:] == 0).all()


def test_class_budgets_equal_the_reference_round_robin():
    gen = torch.Generator().manual_seed(4)
    for _ in range(200):
        counts = torch.randint(1, 40, (int(torch.randint(1, 12, (1,), generator=gen)),), generator=gen)
        batch = int(torch.randint(1, int(counts.sum()) + 1, (1,), generator=gen))
        assert class_budgets(counts, batch).tolist() == reference_class_budgets(counts, batch).tolist()


def reference_gradient_and_hessian_diagonal(loss_fn, params, probes, generator):
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    diag = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for k in range(probes):
        vs = [(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p) for p in params]
        hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=k < probes - 1)
        for d, v, hv in zip(diag, vs, hvs):
            d += (v * hv).double() / probes
    g = torch.cat([gr.detach().reshape(-1).double() for gr in grads])
    return float(loss.detach()), g, torch.cat([d.reshape(-1) for d in diag])


@pytest.mark.parametrize("probes", [1, 3])
def test_hessian_probes_and_moving_averages_are_bitwise_the_reference_ones(probes):
    """The same Rademacher draws, g, h into a packed buffer, and the in-place moving
    averages: the quadratic model, and so every check, is unchanged to the last bit."""
    from raypkg.engine.loop import weighted_cross_entropy
    from raypkg.methods.crest.quadratic import BETA1, BETA2, H_EPS
    from raypkg.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10).eval()
    params = list(model.parameters())
    gen_new, gen_ref = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    out = torch.empty(2 * sum(p.numel() for p in params), dtype=torch.float64)
    quad = QuadraticModel()
    m = v = None
    for region in range(3):
        batches, expected = [], []
        for b in range(4):
            x, y, w = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)), torch.rand(16) + 0.5
            loss_fn = lambda x=x, y=y, w=w: weighted_cross_entropy(model(x), y, w)  # noqa: E731
            loss, g, h = gradient_and_hessian_diagonal(loss_fn, params, probes, gen_new, out=out)
            ref = reference_gradient_and_hessian_diagonal(loss_fn, params, probes, gen_ref)
            assert loss == ref[0] and torch.equal(g, ref[1]) and torch.equal(h, ref[2])
            batches.append((loss, g.clone(), h.clone()))
            t = quad.updates + b + 1
            m = (1 - BETA1) * ref[1] if m is None else BETA1 * m + (1 - BETA1) * ref[1]
            v = (1 - BETA2) * ref[2].square() if v is None else BETA2 * v + (1 - BETA2) * ref[2].square()
            expected.append((m / (1 - BETA1 ** t), (v / (1 - BETA2 ** t)).sqrt() + H_EPS))
        saved = quad.state_dict()
        quad.fit_region(batches)
        g_sum, h_sum = expected[0][0].clone(), expected[0][1].clone()
        for eg, eh in expected[1:]:
            g_sum.add_(eg)
            h_sum.add_(eh)
        assert torch.equal(quad.g, g_sum / 4) and torch.equal(quad.h, h_sum / 4)
        assert torch.equal(quad.m, m) and torch.equal(quad.v, v)
        if region:  # a saved state is a copy: the in-place steps after it leave it alone
            assert not torch.equal(saved["m"], quad.m) and saved["updates"] == 4 * region
