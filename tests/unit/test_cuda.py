"""The engine's guarantees on a CUDA device, where the GPU's kernels could break what the
CPU tests check: a run repeats bit for bit, fp32 is fp32, `auto` times bf16 against fp32
once per machine, a compiled step (inductor, CUDA graphs) computes the eager step's
function, AGC at gamma 0 is plain training, masks stay zero, DeltaGrad at period 1
is the retrain, and the closed-form gradient embeddings are autograd's. Skipped where no CUDA device is visible (CI has none);
run on a GPU machine with `pytest tests/unit/test_cuda.py`."""

from __future__ import annotations

import pytest
import torch
from helpers import autograd_last_layer_grads, tiny_problem

from raypkg.data import load_dataset
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.execution import ExecutionCache, compile_module, resolve_for_data
from raypkg.engine.loop import CLOCK_COLUMNS, fit, seed_everything
from raypkg.methods.sparse.agc import AGCorrection
from raypkg.methods.sparse.dst import SparseTraining
from raypkg.models import build_model
from raypkg.sparsity.masks import maskable_parameters

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
CUDA = torch.device("cuda")


class KeepOptimizer(Callback):
    def on_fit_start(self, ctx):
        self.optimizer = ctx.optimizer


def fit_digits(model_name="resnet20", callbacks=(), seed=0, epochs=2, device=CUDA, **cfg_kw):
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(**{"model": model_name, "epochs": epochs, "batch_size": 64, "seed": seed, "progress": False,
                         "precision": "bf16", "memory_format": "channels_last", "compile": "off",
                         **cfg_kw}).resolved().validate()
    seed_everything(seed)
    model = build_model(model_name, data.input_shape, data.num_classes).to(device)
    kept = KeepOptimizer()
    rows = fit(model, data.train.to(device), data.test.to(device), cfg, callbacks=[*callbacks, kept])
    return model, kept.optimizer, [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in rows]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_auto_on_cuda_times_fp32_and_bf16_once_per_machine(tmp_path):
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(model="resnet20", epochs=1, batch_size=64, progress=False, compile="off").resolved().validate()
    cache = ExecutionCache(tmp_path / "execution.json")
    first, execution = resolve_for_data(cfg, data, CUDA, cache=cache)
    again, cached = resolve_for_data(cfg, data, CUDA, cache=cache)
    assert (first.precision, first.memory_format) == (again.precision, again.memory_format)
    assert (execution.source, cached.source) == ("measured", "cache")
    assert set(execution.medians_ms) == {"fp32/contiguous", "fp32/channels_last", "bf16/contiguous",
                                         "bf16/channels_last"}


def test_compile_auto_on_cuda_is_measured_once_per_machine_and_weighed_per_run(tmp_path):
    data = load_dataset("digits", seed=0)
    cache = ExecutionCache(tmp_path / "execution.json")
    cfg = TrainConfig(model="mlp", epochs=1, batch_size=64, progress=False, precision="fp32").resolved().validate()
    long = TrainConfig(model="mlp", epochs=10**6, batch_size=64, progress=False, precision="fp32").resolved().validate()
    short, first = resolve_for_data(cfg, data, CUDA, cache=cache)
    decided, cached = resolve_for_data(long, data, CUDA, cache=cache)
    assert (first.compile.source, cached.compile.source) == ("measured", "cache")
    assert set(first.compile.step_ms) == {"eager", "compiled"} and first.compile.compile_s > 0
    assert short.compile == "off"  # one epoch of digits saves less than compiling costs
    faster = first.compile.step_ms["compiled"] < 0.95 * first.compile.step_ms["eager"]
    assert decided.compile == ("on" if faster else "off"), first.compile.reason


def test_a_compiled_step_computes_the_eager_steps_function():
    """inductor's kernels (fused batch norm, CUDA graphs) are not the eager ones, so not bit
    for bit: one fp32 step's loss and gradients agree to float rounding (no TF32), and two
    epochs train to the same accuracy."""
    data = load_dataset("digits", seed=0)
    x, y = data.train.x[:128].to(CUDA), data.train.y[:128].to(CUDA)

    def grads(compiled: bool):
        seed_everything(0)
        net = build_model("resnet20", data.input_shape, data.num_classes).to(CUDA)
        forward = compile_module(net, CUDA) if compiled else net
        for _ in range(3):  # the third call replays the recorded graphs
            net.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(forward(x), y)
            loss.backward()
        return loss.detach().clone(), [p.grad.clone() for p in net.parameters()]

    (eager_loss, eager), (compiled_loss, compiled) = grads(False), grads(True)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    kw = dict(precision="fp32", memory_format="contiguous")
    _, _, rows_eager = fit_digits(**kw)
    _, _, rows_compiled = fit_digits(**{**kw, "compile": "on"})
    assert rows_compiled[-1]["test_acc"] == pytest.approx(rows_eager[-1]["test_acc"], abs=0.02)


def test_a_resnet20_run_repeats_bit_for_bit():
    """The trust guarantee on the GPU: BatchNorm, convolutions' backward passes and bf16
    autocast, with the same seed, give the same metrics and weights."""
    model_a, _, rows_a = fit_digits()
    model_b, _, rows_b = fit_digits()
    assert rows_a == rows_b
    assert_same_weights(model_a, model_b)
    _, _, other_seed = fit_digits(seed=1)
    assert other_seed != rows_a  # the check above can fail


def test_fp32_on_cuda_trains_as_on_the_cpu():
    """fp32 means fp32 on the GPU too (no TF32): the MLP's weights after two epochs agree
    with the CPU's to float rounding."""
    kw = dict(model_name="mlp", precision="fp32", memory_format="contiguous")
    on_gpu, _, rows_gpu = fit_digits(**kw)
    on_cpu, _, rows_cpu = fit_digits(device=torch.device("cpu"), **kw)
    for (name, a), b in zip(on_gpu.state_dict().items(), on_cpu.state_dict().values()):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5, msg=name)
    assert rows_gpu[-1]["test_acc"] == pytest.approx(rows_cpu[-1]["test_acc"], abs=0.005)


def test_agc_at_gamma_zero_is_plain_rigl_and_masked_weights_stay_zero():
    def rigl():
        return SparseTraining(0.1, "ERK", seed=1, growth="gradient", update_frequency=9)

    dst = rigl()
    plain, optimizer, _ = fit_digits(callbacks=[dst])
    corrected, _, _ = fit_digits(callbacks=[rigl(), AGCorrection(gamma=0.0, sample=300)])
    assert_same_weights(plain, corrected)
    params = maskable_parameters(plain)
    for name, mask in dst.masks.items():
        assert mask.device.type == CUDA.type
        assert torch.all(params[name][~mask] == 0), name
        assert torch.all(optimizer.state[params[name]]["momentum_buffer"][~mask] == 0), name


def test_closed_form_gradient_embedding_equals_autograd():
    from raypkg.selection.embeddings import FactoredEmbedding, logit_gradients, logits_and_features

    model, data = tiny_problem()
    model, data = model.to(CUDA), data.to(CUDA)
    z, h = logits_and_features(model, data.x)
    emb = FactoredEmbedding(logit_gradients(z, data.y), h)
    torch.testing.assert_close(emb.materialize(), autograd_last_layer_grads(model, data), rtol=1e-10, atol=1e-12)


def test_deltagrad_at_period_one_is_the_retrain(tmp_path):
    from raypkg.methods.deltagrad.config import RequestSettings
    from raypkg.methods.deltagrad.exact import ExactGradients
    from raypkg.methods.deltagrad.replay import Request, baseline, deltagrad
    from raypkg.methods.deltagrad.trajectory import Trajectory
    from raypkg.methods.deltagrad.workload import DeltaGradConfig, load_workload, train_trajectory

    wl = load_workload("digits", "logreg", {"seed": 0}, 0, "float64", CUDA)
    cfg = DeltaGradConfig(dataset="digits", model="logreg", epochs=4, batch_size=128, lr=[0.1, 0.05], lrlen=[2, 2],
                          weight_decay=1e-3, holdout=0.02).validate()
    train_trajectory(cfg, wl, tmp_path / "run", ExactGradients(wl.net, wl.x, wl.y)).finish()
    traj = Trajectory.open(tmp_path / "run")
    plan = traj.plan()
    members = plan.members()
    deleted = members[torch.randperm(len(members), generator=torch.Generator().manual_seed(0))[:12]].sort().values
    grads = ExactGradients(wl.net, wl.x, wl.y)
    w_u, _ = baseline(traj, plan, Request("delete", deleted), grads, device=CUDA)
    w_i, info = deltagrad(traj, plan, Request("delete", deleted), grads, RequestSettings(period=1, init=0, m=2),
                          device=CUDA)
    assert info.approx_steps == 0 and w_i.device.type == CUDA.type
    assert float((w_i - w_u).abs().max()) <= 1e-13
