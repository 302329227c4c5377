"""Sparse training: ERK masks, masks kept exactly, prune/regrow, RigL, AGC, Ray Train ranks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from raypkg.data import load_dataset
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import fit, seed_everything
from raypkg.models import build_model
from raypkg.sparsity.masks import StaticMask, erk_densities, layer_densities, maskable_parameters, random_masks


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 6 * 6, 64)
        self.ln = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.fc2(torch.relu(self.ln(self.fc1(x))))


def test_maskable_parameters_skip_biases_and_norms():
    assert list(maskable_parameters(ConvNet())) == ["conv.weight", "fc1.weight", "fc2.weight"]


@pytest.mark.parametrize("density", [0.1, 0.3])
def test_erk_overall_density_and_saturated_layers_dense(density):
    model = ConvNet()
    params = maskable_parameters(model)
    dens = erk_densities(model, density)
    total = sum(p.numel() for p in params.values())
    # the small conv (score 11/36) saturates at these densities (eps*score > 1) and is dense
    assert dens["conv.weight"] == 1.0
    assert all(0 < d <= 1 for d in dens.values())
    masks = random_masks(model, density, "ERK", torch.Generator().manual_seed(0))
    on = sum(int(m.sum()) for m in masks.values())
    assert abs(on - density * total) <= len(masks)  # within one weight per layer
    for name, m in masks.items():
        assert int(m.sum()) == round(dens[name] * m.numel())
    # the other layers keep d_l = eps * score_l with one eps, and eps * score_l > 1 for dense ones
    score = {name: sum(p.shape) / p.numel() for name, p in params.items()}
    eps = {dens[name] / score[name] for name in params if dens[name] < 1}
    assert len(eps) == 1 or max(eps) - min(eps) < 1e-9 * max(eps)
    assert all(next(iter(eps)) * score[name] > 1 for name in params if dens[name] == 1)
    uniform = layer_densities(model, density, "uniform")
    assert set(uniform.values()) == {density}


def _fit_digits(callbacks, epochs=2, model_name="mlp", seed=0, **cfg_kw):
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=epochs, seed=seed, progress=False, nesterov=True, **cfg_kw).validate()
    seed_everything(seed)
    model = ConvNet() if model_name == "convnet" else build_model(model_name, data.input_shape, data.num_classes)
    class KeepOptimizer(Callback):
        def on_fit_start(self, ctx):
            self.optimizer = ctx.optimizer

    kept = KeepOptimizer()
    rows = fit(model, data.train, data.test, cfg, callbacks=[*callbacks, kept])
    return model, kept.optimizer, rows


def _assert_masked_exactly(model, optimizer, masks):
    params = maskable_parameters(model)
    for name, mask in masks.items():
        p = params[name]
        assert torch.all(p[~mask] == 0), name
        assert torch.all(optimizer.state[p]["momentum_buffer"][~mask] == 0), name


def test_static_mask_keeps_weights_and_momentum_zero():
    cb = StaticMask(0.1, "ERK", seed=3)
    model, optimizer, rows = _fit_digits([cb], epochs=2, model_name="lenet5")
    _assert_masked_exactly(model, optimizer, cb.masks)
    expected = random_masks(model, 0.1, "ERK", torch.Generator().manual_seed(3))
    assert all(torch.equal(cb.masks[k], expected[k]) for k in expected)
    total = sum(m.numel() for m in cb.masks.values())
    assert rows[-1]["density"] <= sum(int(m.sum()) for m in cb.masks.values()) / total
    assert rows[-1]["density"] > 0.05
    state = cb.state_dict()
    assert all(m.dtype == torch.bool for m in state["masks"].values())


# --- dynamic sparse training ------------------------------------------------------------------

from raypkg.engine.callbacks import Callback  # noqa: E402
from raypkg.methods.sparse.agc import AGCorrection  # noqa: E402
from raypkg.methods.sparse.dst import SparseTraining  # noqa: E402


class MaskWatch(Callback):
    """Placed after SparseTraining: checks after every step that masked weights and
    momentum are exactly 0 and records per-layer mask counts before/after each update."""

    def __init__(self, dst):
        self.dst, self.counts, self.checked = dst, [], 0

    def on_step_end(self, ctx):
        _assert_masked_exactly(ctx.model, ctx.optimizer, self.dst.masks)
        self.checked += 1
        counts = {k: int(m.sum()) for k, m in self.dst.masks.items()}
        if not self.counts or counts != self.counts[-1]:
            self.counts.append(counts)


@pytest.mark.parametrize("growth,death", [("random", "magnitude"), ("momentum", "SET")])
def test_prune_regrow_keeps_masks_exact_and_layer_densities(growth, death):
    dst = SparseTraining(0.1, "ERK", seed=0, growth=growth, death=death, update_frequency=7)
    watch = MaskWatch(dst)
    first = None

    class First(Callback):
        def on_fit_start(self, ctx):
            nonlocal first
            first = {k: m.clone() for k, m in dst.masks.items()}

    model, optimizer, rows = _fit_digits([dst, First(), watch], epochs=2, model_name="lenet5")
    assert len(dst.updates) == (2 * 21 - 1) // 7 and watch.checked == 42  # 21 steps an epoch (1347 // 64)
    assert not all(torch.equal(first[k], dst.masks[k]) for k in first), "the masks never changed"
    assert len(watch.counts) == 1, "prune/regrow without redistribution changed a layer's count"
    explored = sum(int((first[k] | dst.masks[k]).sum()) for k in first)
    assert rows[-1]["R_s"] * sum(m.numel() for m in first.values()) >= explored > sum(int(m.sum()) for m in first.values())
    assert [u["R_s"] for u in dst.updates] == sorted(u["R_s"] for u in dst.updates)


def test_redistribution_moves_budget_between_layers():
    dst = SparseTraining(0.1, "ERK", seed=0, redistribution="nonzeros", update_frequency=7)
    watch = MaskWatch(dst)
    _fit_digits([dst, watch], epochs=1, model_name="lenet5")
    assert len(watch.counts) > 1, "redistribution moved nothing"
    totals = {sum(c.values()) for c in watch.counts}
    assert len(totals) == 1  # the overall count is kept


class GradRecorder(Callback):
    """Placed before SparseTraining: keeps the dense gradient of update steps and the masks
    around each update."""

    def __init__(self, dst):
        self.dst, self.events = dst, []

    def on_after_backward(self, ctx):
        if self.dst.is_update_step(ctx.global_step + 1):
            params = maskable_parameters(ctx.model)
            self.events.append({"grad": {k: params[k].grad.clone() for k in self.dst.masks},
                                "before": {k: m.clone() for k, m in self.dst.masks.items()}})


def test_rigl_grows_where_the_uncorrected_dense_gradient_is_largest():
    dst = SparseTraining(0.1, "ERK", seed=0, growth="gradient", update_frequency=5)
    recorder = GradRecorder(dst)
    after = []

    class After(Callback):
        def on_step_end(self, ctx):
            if len(after) < len(recorder.events) and ctx.global_step % 5 == 0:
                after.append({k: m.clone() for k, m in dst.masks.items()})

    # AGC with c = 1 after SparseTraining changes the gradient the step uses; growth must not see it
    _fit_digits([recorder, dst, After(), AGCorrection(fixed_c=1.0)], epochs=1, model_name="lenet5")
    assert len(after) == len(recorder.events) >= 3
    grown_any = 0
    for event, new in zip(recorder.events, after):
        for name, mask in new.items():
            grown = mask & ~event["before"][name]
            if grown.any() and (~mask).any():
                g = event["grad"][name].abs()
                assert g[grown].min() >= g[~mask].max(), name
                grown_any += int(grown.sum())
    assert grown_any > 0


# --- adaptive gradient correction -------------------------------------------------------------

def test_agc_gamma_zero_reproduces_the_uncorrected_run_bit_for_bit():
    def run(extra):
        dst = SparseTraining(0.2, "ERK", seed=1, growth="gradient", update_frequency=9)
        model, _, rows = _fit_digits([dst, *extra], epochs=2, model_name="convnet", seed=4)  # BN + LN
        return model, rows

    plain, _ = run([])
    agc = AGCorrection(gamma=0.0, sample=300)
    corrected, rows = run([agc])
    for (name, a), b in zip(plain.state_dict().items(), corrected.state_dict().values()):
        assert torch.equal(a, b), name
    assert rows[-1]["agc_c"] == 0.0 and math.isfinite(rows[-1]["agc_c_hat"])
    # gamma > 0 does change the run (the test above can fail)
    changed, _ = run([AGCorrection(gamma=0.5)])
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), changed.state_dict().values()))


def test_agc_with_c_one_is_svrg():
    """c fixed at 1: every step is theta -= lr * (g_B(theta) - g_B(theta~) + g~), with
    theta~ the epoch-start weights and g~ the full gradient there (Johnson & Zhang 2013)."""
    from torch.func import functional_call, grad

    from raypkg.engine.loop import epoch_permutation

    data = load_dataset("digits", seed=0)
    train = data.train.subset(torch.arange(48))
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=2, batch_size=16, lr=[0.1], schedule="constant", momentum=0.0, weight_decay=0.0,
                      seed=5, progress=False).validate()
    seed_everything(5)
    model = build_model("mlp", data.input_shape, data.num_classes)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    fit(model, train, None, cfg, callbacks=[AGCorrection(fixed_c=1.0)])

    def loss(params, x, y):
        return torch.nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    theta = start
    for epoch in range(2):
        snapshot = {k: v.clone() for k, v in theta.items()}
        g_full = grad(loss)(snapshot, train.x, train.y)
        order = epoch_permutation(48, 5, epoch)
        for b in range(3):
            x, y = train.x[order[b * 16:(b + 1) * 16]], train.y[order[b * 16:(b + 1) * 16]]
            g_new, g_old = grad(loss)(theta, x, y), grad(loss)(snapshot, x, y)
            theta = {k: theta[k] - 0.1 * (g_new[k] - g_old[k] + g_full[k]) for k in theta}
    for k, p in model.named_parameters():
        assert torch.allclose(p, theta[k], atol=1e-6, rtol=1e-5), k
    seed_everything(5)
    sgd = build_model("mlp", data.input_shape, data.num_classes)
    fit(sgd, train, None, cfg)
    assert not torch.allclose(sgd.head.weight, model.head.weight, atol=1e-4)


# --- resume, Ray Train ranks, command line ----------------------------------------------------

def test_run_resumed_mid_way_keeps_the_masks():
    """A run restarted from its epoch-2 training state ends with the masks, ITOP union and
    weights of the uninterrupted run (random growth: the generator state is in the state)."""
    import copy

    from raypkg.engine.loop import training_state

    class Capture(Callback):
        def __init__(self):
            self.state = None

        def on_epoch_end(self, ctx, row):
            if ctx.epoch == 1:
                self.state = copy.deepcopy(training_state(ctx))

    def make():
        return SparseTraining(0.1, "ERK", seed=2, growth="random", update_frequency=6)

    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(precision="fp32", memory_format="contiguous", epochs=3, seed=3, progress=False).validate()
    seed_everything(3)
    full_model, full, capture = build_model("lenet5", data.input_shape, data.num_classes), make(), Capture()
    fit(full_model, data.train, None, cfg, callbacks=[full, capture])

    seed_everything(99)  # a fresh process: other init, restored from the state
    resumed_model, resumed = build_model("lenet5", data.input_shape, data.num_classes), make()
    fit(resumed_model, data.train, None, cfg, callbacks=[resumed, Capture()], resume=capture.state)
    for name in full.masks:
        assert torch.equal(full.masks[name], resumed.masks[name]), name
        assert torch.equal(full.explored[name], resumed.explored[name]), name
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
    assert [u["step"] for u in resumed.updates] == [u["step"] for u in full.updates]


@pytest.mark.slow
def test_a_ray_train_run_loses_a_worker_once_and_finishes_from_its_checkpoint(ray_session, tmp_path, monkeypatch):
    """`effray run sparse --workers 2` (the recipe, its run directory) on the sparse kernels,
    a worker killed after epoch 2's checkpoint: Ray Train restarts both ranks from it; the
    run directory has every epoch's row once, the mask updates fall at the same steps as
    without the failure, both ranks end with the same masks, the kernel layers come back
    through the checkpoint, and the weights are 0 off the masks. This is the engine's
    test of a callback's state through a worker loss, on a callback whose state matters."""
    import pandas as pd

    from raypkg.engine.ray_train import FAULT_ENV
    from raypkg.methods.sparse.config import SparseConfig
    from raypkg.methods.sparse.recipe import SPARSE

    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"2:{marker}")
    cfg = SparseConfig(dataset="digits", model="lenet5", epochs=3, workers=2, seed=0, density=0.1, growth="random",
                       update_frequency=4, sparse_backend="sparse", max_failures=1, out=str(tmp_path / "runs"),
                       name="ft", wandb="disabled", progress=False)
    summary = SPARSE.run(cfg)
    run = tmp_path / "runs" / "ft"
    assert marker.exists() and summary["restarts"] == 1
    assert list(pd.read_parquet(run / "metrics.parquet")["epoch"]) == [1, 2, 3]  # 1-2 from the checkpoint
    # 10 steps per epoch per rank (674 examples, batch 64, the ragged 34 dropped): updates at 4, 8, ..., 28
    assert list(pd.read_parquet(run / "mask_updates.parquet")["step"]) == list(range(4, 30, 4))
    assert summary["rank_mask_digests"] == [summary["mask_digest"]] * 2
    assert summary["sparse_layers"]  # from the workers' checkpoint
    masks, weights = torch.load(run / "masks.pt"), torch.load(run / "model.pt")
    assert all(not weights[name][~mask.bool()].any() for name, mask in masks.items())


def _cli(args, tmp_path):
    from click.testing import CliRunner

    from raypkg.cli import main

    return CliRunner().invoke(main, ["run", "sparse", "--out", str(tmp_path / "runs"), "--wandb", "disabled",
                                     "--no-progress", *args])


def test_no_flags_run_rigl_itop_at_density_0_05_and_dense_is_the_baseline(tmp_path):
    import json

    sparse = _cli(["--epochs", "1", "--name", "s"], tmp_path)
    assert sparse.exit_code == 0, sparse.output
    summary = json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())
    assert summary["method_variant"] == "RigL-ITOP" and summary["density"] == pytest.approx(0.05, abs=0.005)
    dense = _cli(["--epochs", "1", "--dense", "--name", "d"], tmp_path)
    assert dense.exit_code == 0, dense.output
    summary = json.loads((tmp_path / "runs" / "d" / "summary.json").read_text())
    assert summary["method_variant"] == "dense" and summary["density"] == 1.0


def test_cli_run_writes_density_rs_and_agc_columns(tmp_path):
    import json

    import pandas as pd

    result = _cli(["--sparse", "--growth", "gradient", "--agc", "--agc-sample", "500", "--dataset", "digits",
                   "--model", "mlp", "--epochs", "2", "--multiplier", "2", "--update-frequency", "10",
                   "--name", "r"], tmp_path)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "r"
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert list(metrics["epoch"]) == [1, 2, 3, 4]  # 2 epochs x multiplier 2
    assert list(metrics["lr"].round(6)) == [0.1, 0.1, 0.01, 0.001]  # x0.1 at 1/2 and 3/4, stretched
    assert {"density", "R_s", "agc_c"} <= set(metrics.columns)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method_variant"] == "A-RigL-ITOP" and abs(summary["density"] - 0.05) < 0.01
    assert summary["R_s"] == metrics["R_s"].iloc[-1] > 0.05
    assert len(pd.read_parquet(run / "mask_updates.parquet")) == metrics["mask_updates"].iloc[-1]


def test_scale_init_divides_each_layer_by_sqrt_density_once():
    from types import SimpleNamespace

    seed_everything(0)
    model = ConvNet()
    before = {k: p.detach().clone() for k, p in maskable_parameters(model).items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ctx = SimpleNamespace(model=model, optimizer=optimizer, distributed=False)
    cb = StaticMask(0.1, "ERK", seed=0, scale_init=True)
    cb.on_fit_start(ctx)
    for name, p in maskable_parameters(model).items():
        d = float(cb.masks[name].float().mean())
        assert torch.allclose(p, before[name] * cb.masks[name] * d ** -0.5), name
    restored = StaticMask(0.1, "ERK", seed=0, scale_init=True)
    restored.load_state_dict(cb.state_dict())
    again = {k: p.detach().clone() for k, p in maskable_parameters(model).items()}
    restored.on_fit_start(ctx)  # masks from a checkpoint: the weights are not scaled again
    assert all(torch.equal(p, again[k]) for k, p in maskable_parameters(model).items())


def test_bench_sparse_writes_table_curves_and_plot(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from raypkg.bench.sparse import sparse_bench

    result = CliRunner().invoke(sparse_bench, ["--setups", "digits:mlp", "--epochs", "2", "--methods",
                                               "dense,SET-ITOP,A-SET-ITOP", "--save", str(tmp_path / "b")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "b.parquet")
    curves = pd.read_parquet(tmp_path / "b-curves.parquet")
    assert list(table["method"]) == ["dense", "dense", "SET-ITOP", "A-SET-ITOP"]  # dense at auto's pick and fp32
    assert list(table["backend"][:2]) == ["dense", "dense fp32"] and table["execution"][1] == "fp32/contiguous"
    assert (table["density"][:2] == 1.0).all() and abs(table["density"].iloc[2] - 0.05) < 0.005
    assert len(curves) == 4 * 2 and (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    row = table.set_index("method").loc["A-SET-ITOP"]
    assert row["time_vs_plain"] == row["s_per_epoch"] / table.set_index("method")["s_per_epoch"]["SET-ITOP"]


def test_bench_sparse_runs_dense_once_and_pairs_each_agc_row_with_its_density(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from raypkg.bench.sparse import sparse_bench

    result = CliRunner().invoke(sparse_bench, ["--setups", "digits:mlp", "--epochs", "1", "--density", "0.2,0.05",
                                               "--methods", "dense,SET-ITOP,A-SET-ITOP", "--save",
                                               str(tmp_path / "b")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "b.parquet")
    assert list(zip(table["method"], table["target_density"])) == [
        ("dense", 1.0), ("dense", 1.0), ("SET-ITOP", 0.2), ("A-SET-ITOP", 0.2), ("SET-ITOP", 0.05),
        ("A-SET-ITOP", 0.05)]
    assert (table["density"] - table["target_density"]).abs().max() < 0.01
    by = table.set_index(["method", "target_density"])["s_per_epoch"]
    curves = pd.read_parquet(tmp_path / "b-curves.parquet")
    indexed = table.set_index(["method", "target_density"])
    for d in (0.2, 0.05):
        agc, plain = indexed.loc[("A-SET-ITOP", d)], indexed.loc[("SET-ITOP", d)]
        assert agc["time_vs_plain"] == by[("A-SET-ITOP", d)] / by[("SET-ITOP", d)]
        assert agc["pair_target"] == 0.95 * plain["best_acc"]  # --target-of-dense x the plain version's best
        plain_curve = curves[(curves["method"] == "SET-ITOP") & (curves["target_density"] == d)]["test_acc"].tolist()
        assert agc["plain_epochs_to_pair_target"] == 1 + next(i for i, a in enumerate(plain_curve)
                                                              if a >= agc["pair_target"])
    from raypkg.cli import main

    bad = CliRunner().invoke(main, ["bench", "sparse", "--density", "0.05,x", "--save", str(tmp_path / "c")])
    assert bad.exit_code == 2 and bad.output.startswith("error: --density takes comma-separated")
    assert not list(tmp_path.glob("c*"))
