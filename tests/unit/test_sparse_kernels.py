"""--sparse-backend: SparseProp's kernels give the masked layers' math (layers, whole runs,
AGC, resume, LiPT's shard masks), the model leaves the fit unchanged, and the choices and
refusals of masked / sparse / auto."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raypkg.data import load_dataset
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.execution import MARGIN
from raypkg.engine.loop import fit, seed_everything, training_state
from raypkg.methods.sparse.agc import AGCorrection
from raypkg.methods.sparse.dst import SparseTraining
from raypkg.models import build_model
from raypkg.sparsity import kernels as K
from raypkg.sparsity.backend import SparseExecution
from raypkg.sparsity.masks import StaticMask, maskable_parameters

pytestmark = pytest.mark.skipif(K.kernels() is None, reason="SparseProp is not installed")
TOL = 1e-5


def batch_inner(x: torch.Tensor) -> torch.Tensor:
    return x.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)


# --- the layers ---------------------------------------------------------------------------------

def test_conv_layout_is_the_kernels_own_format_and_positions_are_row_major():
    mask = torch.rand(6, 5, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.2
    layout = K.conv_layout(mask)
    nnz = int(mask.sum())
    rows, cols = torch.zeros(7, dtype=torch.int32), torch.zeros(6 * 6, dtype=torch.int16)
    xs, ys, values = torch.zeros(nnz, dtype=torch.uint8), torch.zeros(nnz, dtype=torch.uint8), torch.zeros(nnz)
    weight = torch.arange(1, mask.numel() + 1, dtype=torch.float32).view_as(mask) * mask
    K.kernels().sparsify_conv2d(6, 5, 3, weight, rows, cols, xs, ys, values)
    assert torch.equal(layout.rows, rows) and torch.equal(layout.cols, cols)
    assert torch.equal(layout.xs, xs) and torch.equal(layout.ys, ys)
    assert torch.equal(K.gather(weight, layout), values)  # the kernels' value order
    assert torch.equal(layout.positions, mask.flatten().nonzero().flatten())


def masked_and_sparse(layer: nn.Module, density: float, gen: torch.Generator):
    """A random mask of ``layer`` applied to its weights, and a copy of it on the kernels."""
    mask = torch.rand(layer.weight.shape, generator=gen) < density
    with torch.no_grad():
        layer.weight.mul_(mask)
    sparse = copy.deepcopy(layer)
    K.swap_class(sparse, True)
    sparse.sparse_layout = K.layout_for(sparse, mask)
    return mask, sparse


@pytest.mark.parametrize("batch", [16, 13])  # 13: the kernels' tail bug, worked around by padding
@pytest.mark.parametrize("stride,padding,kernel,bias", [(1, 1, 3, False), (2, 1, 3, True), (1, 0, 5, True)])
def test_sparse_conv_equals_the_masked_conv(batch, stride, padding, kernel, bias):
    gen = torch.Generator().manual_seed(batch + stride)
    conv = nn.Conv2d(4, 6, kernel, stride=stride, padding=padding, bias=bias)
    mask, sparse = masked_and_sparse(conv, 0.15, gen)
    for layout_of in (lambda t: t, batch_inner):  # a dense layer's output, a sparse layer's output
        x = layout_of(torch.randn(batch, 4, 11, 11, generator=gen)).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        y, y2 = conv(x), sparse(x2)
        assert torch.allclose(y, y2, atol=TOL) and K.is_batch_inner(y2)
        grad = torch.randn(y.shape, generator=gen)
        y.backward(grad)
        y2.backward(grad)
        assert torch.allclose(x.grad, x2.grad, atol=TOL)
        assert torch.allclose(conv.weight.grad * mask, sparse.weight.grad, rtol=1e-4, atol=1e-4)
        assert torch.all(sparse.weight.grad[~mask] == 0)
        if bias:
            assert torch.allclose(conv.bias.grad, sparse.bias.grad, rtol=1e-4, atol=1e-4)
        conv.zero_grad(), sparse.zero_grad()


def test_sparse_linear_equals_the_masked_linear_and_allows_in_place_relu():
    gen = torch.Generator().manual_seed(1)
    linear = nn.Linear(40, 24)
    mask, sparse = masked_and_sparse(linear, 0.1, gen)
    x = torch.randn(19, 40, generator=gen, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y2 = F.relu(linear(x)), F.relu_(sparse(x2))
    assert torch.allclose(y, y2, atol=TOL)
    y.sum().backward()
    y2.sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=TOL)
    assert torch.allclose(linear.weight.grad * mask, sparse.weight.grad, atol=1e-5)
    assert torch.allclose(linear.bias.grad, sparse.bias.grad, atol=1e-5)


def test_batch_inner_batch_norm_equals_batch_norm_and_keeps_the_input_layout():
    gen = torch.Generator().manual_seed(2)
    bn = nn.BatchNorm2d(5)
    inner = copy.deepcopy(bn)
    K.swap_class(inner, True)
    x = torch.randn(12, 5, 4, 4, generator=gen) * 3 + 1
    for source in (x, batch_inner(x)):
        a, b = x.clone().requires_grad_(), source.detach().clone().requires_grad_()
        y, y2 = bn(a), inner(b)
        assert torch.allclose(y, y2, atol=TOL) and K.is_batch_inner(y2) == K.is_batch_inner(source)
        (y * y).sum().backward()
        (y2 * y2).sum().backward()
        assert torch.allclose(a.grad, b.grad, atol=1e-4)
    assert torch.allclose(bn.running_mean, inner.running_mean) and torch.allclose(bn.running_var, inner.running_var)
    assert bn.num_batches_tracked == inner.num_batches_tracked == 2


# --- whole runs: the sparse backend takes the masked backend's steps ----------------------------

class PlugInBNConvNet(nn.Module):
    """A user's model: convs with biases, BatchNorm2d, a strided conv, a Conv2d subclass the
    kernels leave alone, a head."""

    class OwnConv(nn.Conv2d):
        pass

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32)
        self.conv3 = self.OwnConv(32, 16, 3, padding=1)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x.view(-1, 1, 8, 8))))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.head(F.relu(self.conv3(x)).flatten(1))


class StepLosses(Callback):
    """Each step's loss and, given the sparse callback, its number and the masks' digest
    after it (a mask update included)."""

    def __init__(self, dst=None):
        self.dst, self.losses, self.steps, self.masks = dst, [], [], []

    def on_step_end(self, ctx):
        self.losses.append(float(ctx.batch.loss.detach()))
        if self.dst is None:
            return
        self.steps.append(ctx.global_step)
        self.masks.append(hash(tuple(tuple(m.flatten().nonzero().flatten().tolist()) for m in self.dst.masks.values())))


def short_run(model_name, backend, *, growth="gradient", agc=False, density=0.05, steps=8, epochs=1, resume=None,
              capture_at=-1):
    """``steps`` steps of batch 32 on digits per epoch, masks updated every 3 steps, LR 0.02.
    Short and at a small LR because ResNet-20 at LR 0.1 amplifies a 1e-7 rounding
    difference to 1e-4 within 7 steps, the masked backend's own runs included (a 1e-7
    relative perturbation of its initial weights does the same); at 0.02 both stay ~1e-7."""
    data = load_dataset("digits", seed=0)
    train = data.train.subset(torch.arange(32 * steps))
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=[0.02], seed=3, progress=False, precision="fp32",
                      memory_format="contiguous").validate()  # the same arithmetic for both backends
    seed_everything(3)
    model = PlugInBNConvNet() if model_name == "plugin-bn" else build_model(model_name, data.input_shape,
                                                                             data.num_classes)
    dst = SparseTraining(density, "ERK", seed=2, growth=growth, update_frequency=3, scale_init=True, backend=backend)
    callbacks = [dst] + ([AGCorrection(0.1, sample=100, masks=dst)] if agc else []) + [StepLosses(dst), Capture(capture_at)]
    fit(model, train, None, cfg, callbacks=callbacks, resume=resume)
    return model, dst, callbacks


class Capture(Callback):
    """Keeps the training state at the end of epoch ``epoch`` (0-based; -1: never)."""

    def __init__(self, epoch):
        self.epoch, self.state = epoch, None

    def on_epoch_end(self, ctx, row):
        if ctx.epoch == self.epoch:
            self.state = copy.deepcopy(training_state(ctx))


def assert_same_run(masked, sparse):
    """The two runs take the same steps while their masks agree, and they agree at least
    through the first mask update. RigL grows where |gradient| is largest, and two gradients
    equal to float32 rounding can order a near-tie at the k-th place differently: the
    8-step A-RigL-ITOP ResNet-20 run parts at its second update on an AMD EPYC (AVX2
    kernels), not on an AVX-512 machine (a masked run with its initial weights scaled by
    1 + 1e-7 ends 5e-2 away in loss from itself). From there they are two different runs."""
    (model_a, dst_a, cbs_a), (model_b, dst_b, cbs_b) = masked, sparse
    steps_a, steps_b = cbs_a[-2], cbs_b[-2]
    assert len(steps_a.losses) == len(steps_b.losses) and steps_a.steps == steps_b.steps
    parted = next((i for i, (a, b) in enumerate(zip(steps_a.masks, steps_b.masks)) if a != b), None)
    updates = [u["step"] for u in dst_b.updates]
    assert parted is None or steps_a.steps[parted] > updates[0], (steps_a.steps[parted], updates)
    same = steps_a.losses if parted is None else steps_a.losses[:parted + 1]  # step parted+1 still had one mask
    assert max(abs(a - b) for a, b in zip(same, steps_b.losses)) < TOL
    assert dst_b.updates and [u["step"] for u in dst_a.updates] == [u["step"] for u in dst_b.updates]
    if parted is not None:
        return
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=TOL), name
    assert all(torch.equal(dst_a.masks[k], dst_b.masks[k]) for k in dst_a.masks)
    # the kernel layers skip the per-step re-masking: their weights must still be 0 off the mask
    weights = maskable_parameters(model_b)
    assert all(not weights[k][~mask].any() for k, mask in dst_b.masks.items())


@pytest.mark.slow
@pytest.mark.parametrize("model_name,growth,agc", [
    ("mlp", "gradient", False),       # RigL-ITOP: dense gradients on update steps
    ("lenet5", "random", True),       # A-SET-ITOP
    ("resnet20", "gradient", False),  # batch norm, option-A shortcuts, stride 2
    ("resnet20", "gradient", True),   # A-RigL-ITOP
    ("plugin-bn", "random", False),
])
def test_sparse_backend_takes_the_masked_backends_steps(model_name, growth, agc):
    sparse = short_run(model_name, "sparse", growth=growth, agc=agc)
    assert sparse[1].sparse_layers, "no layer ran on the kernels"
    assert_same_run(short_run(model_name, "masked", growth=growth, agc=agc), sparse)
    # the model leaves the fit as it came: plain modules, the same state_dict keys
    assert all(type(m) not in K.SWAPS.values() for m in sparse[0].modules())
    assert not any(hasattr(m, "sparse_layout") for m in sparse[0].modules())


def test_sparse_backend_resumes_from_a_checkpoint_like_the_uninterrupted_masked_run():
    uninterrupted = short_run("lenet5", "masked", steps=4, epochs=2, capture_at=0)
    resumed = short_run("lenet5", "sparse", steps=4, epochs=2, resume=uninterrupted[2][-1].state)
    assert resumed[1].sparse_layers
    steps = uninterrupted[2][-2]
    steps.losses, steps.steps, steps.masks = steps.losses[4:], steps.steps[4:], steps.masks[4:]  # the resumed epoch
    assert_same_run(uninterrupted, resumed)


def test_lipt_shard_models_train_under_the_configured_backend():
    from raypkg.methods.lipt.config import LiptConfig
    from raypkg.methods.lipt.pretrain import shard_callbacks

    cfg = LiptConfig(sparse_backend="sparse")
    mask = shard_callbacks(cfg, None, 1)[-1]
    assert isinstance(mask, StaticMask) and mask.backend == "sparse"

    def shard_run(backend):
        data = load_dataset("digits", seed=0)
        seed_everything(0)
        model = build_model("lenet5", data.input_shape, data.num_classes)
        static = StaticMask(0.05, "ERK", seed=4, scale_init=True, backend=backend)
        losses = StepLosses()
        fit(model, data.train.subset(torch.arange(256)), None, TrainConfig(precision="fp32", memory_format="contiguous", epochs=1, batch_size=32,
                                                                     progress=False),
            callbacks=[static, losses])
        return model, static, losses.losses

    (a, _, la), (b, static, lb) = shard_run("masked"), shard_run("sparse")
    assert static.sparse_layers and max(abs(x - y) for x, y in zip(la, lb)) < TOL
    assert all(torch.allclose(p, q, atol=TOL) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# --- choosing layers; refusals ------------------------------------------------------------------

def test_auto_never_picks_a_layer_under_80_percent_sparse_and_agrees_with_its_timings():
    _, dst, _ = short_run("resnet20", "auto", steps=2)
    timings = dst.sparse_timings
    assert timings  # every candidate was timed
    densities = {name: float(m.float().mean()) for name, m in dst.masks.items()}
    assert all(densities[f"{name}.weight"] <= 0.2 for name in timings)
    # a layer runs on the kernels only when they beat dense by the execution's margin
    assert set(dst.sparse_layers) == {name for name, t in timings.items() if t["kernels"]}
    assert all(timings[name]["sparse_ms"] < timings[name]["dense_ms"] * (1 - MARGIN) for name in dst.sparse_layers)
    # the choice is this machine's: the same run again takes it from the cache, the same layers
    _, again, _ = short_run("resnet20", "auto", steps=2)
    assert again.sparse_layers == dst.sparse_layers
    assert {t["source"] for t in again.sparse_timings.values()} == {"cache"}


def test_without_sparseprop_auto_runs_masked_with_a_note_and_sparse_is_refused(monkeypatch, capsys):
    import importlib.util

    from raypkg.errors import UsageError
    from raypkg.methods.sparse.config import SparseConfig
    from raypkg.sparsity.backend import note_runs_masked

    monkeypatch.setattr(K, "kernels", lambda: None)
    note_runs_masked.cache_clear()
    for _ in range(2):  # two starts in one process (two LiPT shards): one note
        _, dst, _ = short_run("mlp", "auto", steps=2)
        assert dst.sparse_layers == []
    assert capsys.readouterr().err.count("SparseProp is not installed; --sparse-backend auto runs masked") == 1
    with pytest.raises(UsageError, match="needs SparseProp"):
        short_run("mlp", "sparse", steps=2)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sparseprop" else real(name, *a))
    with pytest.raises(UsageError, match="needs SparseProp's kernels"):
        SparseConfig(sparse_backend="sparse").validate()
    SparseConfig(sparse_backend="auto").validate()  # auto falls back at run time


def test_maskable_weights_of_the_plugin_model_and_which_layers_the_kernels_can_run():
    model = PlugInBNConvNet()
    assert [K.supports(m) for m in (model.conv1, model.conv2, model.conv3, model.head)] == [True, True, False, True]
    assert set(maskable_parameters(model)) == {"conv1.weight", "conv2.weight", "conv3.weight", "head.weight"}


# --- where users see it ---------------------------------------------------------------------------

def test_run_sparse_names_its_execution_then_its_kernel_layers_and_both_in_the_summary(tmp_path):
    import json

    from click.testing import CliRunner

    from raypkg.cli import main
    from raypkg.engine.execution import CPU_COMPILE_REASON
    from raypkg.sparsity.backend import say_once

    say_once.cache_clear()  # the line is said once a process: an earlier test's run may have said it

    result = CliRunner().invoke(main, ["run", "sparse", "--sparse-backend", "sparse", "--precision", "fp32",
                                       "--memory-format", "contiguous", "--epochs", "1", "--out",
                                       str(tmp_path), "--name", "k", "--wandb", "disabled", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        f"execution: fp32, contiguous (as set); compile off ({CPU_COMPILE_REASON})",
        "sparse kernels: 2 of 2 masked layers (features.1, head)"]
    summary = json.loads((tmp_path / "k" / "summary.json").read_text())
    assert (summary["precision"], summary["memory_format"]) == ("fp32", "contiguous")
    assert summary["sparse_backend"] == "sparse" and summary["sparse_layers"] == ["features.1", "head"]
    assert torch.load(tmp_path / "k" / "model.pt", weights_only=True).keys() == \
        build_model("mlp", (64,), 10).state_dict().keys()


def test_the_kernel_layers_are_said_once_a_process(capsys):
    """issue 72: a LiPT frontier printed `sparse kernels: 1 of 2 masked layers` 10 or more
    times a seed, once per start of the masks' execution."""
    from raypkg.sparsity.backend import say_once

    say_once.cache_clear()
    for _ in range(3):  # three starts in one process (LiPT's shards and phases)
        short_run("mlp", "sparse", steps=1)
    assert capsys.readouterr().err.count("sparse kernels: ") == 1


def test_a_run_with_no_layer_on_the_kernels_says_why():
    masks = {"features.1.weight": torch.ones(2), "head.weight": torch.ones(2)}
    model = build_model("mlp", (64,), 10)
    assert SparseExecution(model, {}, {}).describe(masks) == "sparse kernels: none of 2 masked layers (masked backend)"
    timed = {"features.1": {"kernels": False}, "head": {"kernels": False}}
    assert SparseExecution(model, {}, timed).describe(masks) == \
        "sparse kernels: none of 2 masked layers (auto: dense was faster on each of the 2 it timed)"


def test_bench_sparse_gives_a_row_per_backend_with_speed_ups(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from raypkg.cli import main
    from raypkg.tracking.provenance import read_provenance

    result = CliRunner().invoke(main, ["bench", "sparse", "--setups", "digits:mlp", "--methods", "dense,RigL-ITOP",
                                       "--backends", "masked,sparse", "--epochs", "1", "--threads", "1",
                                       "--save", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "b.parquet")
    assert list(table["backend"]) == ["dense", "dense fp32", "masked", "sparse"]
    assert list(table["sparse_layers"]) == [0, 0, 0, 2]
    masked, sparse = table.iloc[2], table.iloc[3]
    assert masked["x_vs_masked"] == 1.0
    assert sparse["x_vs_masked"] == pytest.approx(masked["s_per_epoch"] / sparse["s_per_epoch"])
    assert sparse["x_vs_dense"] == pytest.approx(table.iloc[0]["s_per_epoch"] / sparse["s_per_epoch"])
    assert sparse["x_vs_dense_fp32"] == pytest.approx(table.iloc[1]["s_per_epoch"] / sparse["s_per_epoch"])
    assert sparse["final_acc"] == pytest.approx(masked["final_acc"], abs=0.003)  # the same math
    assert "mlp fp32/contiguous" in read_provenance(tmp_path / "b.parquet")["executions"].split("; ")  # its dense fp32
    bad = CliRunner().invoke(main, ["bench", "sparse", "--backends", "masked,fast"])
    assert bad.exit_code == 2 and "unknown sparse backend 'fast'; choose one of: auto, masked, sparse" in bad.output
