"""Precision and memory format (``raypkg.engine.execution``): the decision with the CPU's
flags and the probe's times injected, what a prepared model runs, and that fp32 is the
engine's arithmetic of before, bit for bit."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from raypkg.cli import main
from raypkg.data import load_dataset
from raypkg.engine import execution as E
from raypkg.engine.config import TrainConfig, resolve_config
from raypkg.engine.loop import evaluate, fit, seed_everything
from raypkg.errors import UsageError
from raypkg.models.registry import build_model

AVX2 = {"avx", "avx2", "fma"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16"}
AMX = AVX2 | {"amx_bf16", "amx_tile"}


@pytest.mark.parametrize("flags, native", [(AVX2, False), (AVX512_BF16, True), (AMX, True), (set(), False)])
def test_bf16_is_native_only_on_cpus_with_avx512_bf16_or_amx(flags, native):
    assert E.bf16_native("cpu", flags) is native
    assert E.bf16_native("cuda", flags) is True


def test_an_avx2_only_cpu_means_fp32_unprobed():
    pairs, reason = E.candidates("auto", "auto", "cpu", convolutional=False, flags=AVX2)
    assert pairs == [("fp32", "contiguous")] and "avx512_bf16" in reason


def test_cuda_means_bf16_and_channels_last_is_probed_for_conv_models_only():
    assert E.candidates("auto", "auto", "cuda", convolutional=False)[0] == [("bf16", "contiguous")]
    assert E.candidates("auto", "auto", "cuda", convolutional=True)[0] == [("bf16", "contiguous"),
                                                                          ("bf16", "channels_last")]


def test_a_bf16_cpu_probes_fp32_first_and_set_values_are_kept():
    assert E.candidates("auto", "auto", "cpu", True, AVX512_BF16)[0] == [
        ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), ("bf16", "channels_last")]
    assert E.candidates("fp32", "auto", "cpu", True, AVX512_BF16)[0] == [("fp32", "contiguous"),
                                                                        ("fp32", "channels_last")]
    assert E.candidates("bf16", "contiguous", "cpu", True, AVX2)[0] == [("bf16", "contiguous")]  # asked for


@pytest.mark.parametrize("times, chosen", [
    ({("fp32", "contiguous"): 10.0, ("bf16", "contiguous"): 12.0}, ("fp32", "contiguous")),  # slower: fp32
    ({("fp32", "contiguous"): 10.0, ("bf16", "contiguous"): 6.0}, ("bf16", "contiguous")),
    ({("fp32", "contiguous"): 10.0, ("bf16", "contiguous"): 9.6}, ("fp32", "contiguous")),  # within the margin
    ({("fp32", "contiguous"): 10.0, ("fp32", "channels_last"): 8.0, ("bf16", "channels_last"): 5.0},
     ("bf16", "channels_last")),
    ({("bf16", "contiguous"): 3.0, ("bf16", "channels_last"): 2.0}, ("bf16", "channels_last")),  # CUDA: no fp32
])
def test_the_fastest_candidate_wins_by_the_margin(times, chosen):
    assert E.choose(times) == chosen


def digits_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 64, "progress": False, **kw}).resolved().validate()


def test_resolving_an_avx2_machine_probes_nothing_and_writes_the_choice_into_the_config():
    data = load_dataset("digits", seed=0)
    cfg, execution = E.resolve_for_data(digits_cfg(), data, torch.device("cpu"), flags=AVX2)
    assert (cfg.precision, cfg.memory_format) == ("fp32", "contiguous") and execution.probe_ms == {}


def test_a_probe_times_every_candidate_and_its_choice_follows_the_times():
    """bf16 claimed native (whatever this CPU is): both precisions and both layouts of
    LeNet-5 are timed, and the choice is ``choose`` of those times; the RNG is untouched."""
    data = load_dataset("digits", seed=0)
    E._CHOSEN.clear()
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    cfg, execution = E.resolve_for_data(digits_cfg(model="lenet5"), data, torch.device("cpu"), flags=AVX512_BF16)
    assert torch.equal(torch.rand(3), before)
    assert set(execution.probe_ms) == {"fp32/contiguous", "fp32/channels_last", "bf16/contiguous",
                                       "bf16/channels_last"}
    times = {tuple(k.split("/")): v for k, v in execution.probe_ms.items()}
    assert (cfg.precision, cfg.memory_format) == E.choose(times)
    assert E.resolve_for_data(digits_cfg(model="lenet5"), data, torch.device("cpu"),
                              flags=AVX512_BF16)[1] is execution  # decided once per process


def train_digits(model: str, **kw):
    data = load_dataset("digits", seed=0)
    seed_everything(0)
    net = build_model(model, data.input_shape, data.num_classes)
    history = fit(net, data.train, data.test, digits_cfg(model=model, **kw))
    return net, history, data


def test_fp32_contiguous_is_the_engine_of_before_bit_for_bit():
    """A model never prepared (the engine before precision existed) and one run with fp32
    and contiguous set: the same weights, bit for bit (a plain autograd loop is the check)."""
    data = load_dataset("digits", seed=0)
    cfg = digits_cfg(model="lenet5", precision="fp32", memory_format="contiguous", schedule="constant")
    seed_everything(0)
    net = build_model("lenet5", data.input_shape, data.num_classes)
    reference = build_model("lenet5", data.input_shape, data.num_classes)
    reference.load_state_dict(net.state_dict())
    fit(net, data.train, None, cfg)
    from raypkg.engine.loop import weighted_cross_entropy
    from raypkg.engine.optim import make_optimizer
    from raypkg.engine.plans import ShuffledBatches

    optimizer = make_optimizer(reference, cfg)
    plan = ShuffledBatches(len(data.train), cfg.batch_size, cfg.seed)
    for epoch in range(cfg.epochs):
        order = plan.order(epoch, 0, 1)
        for positions in order.split(cfg.batch_size):
            loss = weighted_cross_entropy(reference(data.train.x[positions]), data.train.y[positions])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    for (name, a), b in zip(net.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_bf16_run_computes_in_bf16_keeps_fp32_weights_and_learns_like_fp32():
    """Autocast: logits in bf16, weights and their gradients fp32; test accuracy within 2
    points of fp32 on digits (3 seeds' mean) with the same steps."""
    net, history, data = train_digits("mlp", precision="bf16")
    assert net.precision == "bf16" and all(p.dtype == torch.float32 for p in net.parameters())
    with E.autocast(net):
        assert net(data.test.x[:4]).dtype == torch.bfloat16
    accs = {}
    for precision in ("fp32", "bf16"):
        accs[precision] = sum(train_digits("mlp", precision=precision, seed=s)[1][-1]["test_acc"]
                              for s in range(3)) / 3
    assert abs(accs["bf16"] - accs["fp32"]) < 0.02, accs
    assert evaluate(net, data.test)["acc"] == pytest.approx(history[-1]["test_acc"])


def test_channels_last_puts_conv_weights_in_that_layout_and_computes_the_same_gradients():
    """The layout changes the order of the sums only: one 1x28x28 batch's gradients are as
    close to float64's as contiguous fp32's are (within 5% of each tensor's largest entry:
    batch norm's backward amplifies float32 rounding to ~2% at this size in both layouts),
    and a run keeps the layout."""
    import copy

    import torch.nn.functional as F

    seed_everything(0)
    plain = E.prepare(build_model("resnet20", (1, 28, 28), 10), "fp32", "contiguous")
    last = E.prepare(copy.deepcopy(plain), "fp32", "channels_last")
    exact = copy.deepcopy(plain).double()
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    for net, inputs in ((plain, x), (last, x), (exact, x.double())):
        F.cross_entropy(net(inputs), y).backward()
    for a, b, c in zip(plain.parameters(), last.parameters(), exact.parameters()):
        scale = c.grad.abs().max().item()
        assert (a.grad - c.grad).abs().max() <= 0.05 * scale and (b.grad - c.grad).abs().max() <= 0.05 * scale
    net, history, _ = train_digits("resnet20", memory_format="channels_last", precision="fp32", epochs=1)
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert history[-1]["test_acc"] > 0.5


def test_selection_scores_a_bf16_model_in_bf16_and_returns_fp32_close_to_fp32():
    from raypkg.selection.embeddings import logits_and_features

    data = load_dataset("digits", seed=0)
    seed_everything(0)
    net = build_model("mlp", data.input_shape, data.num_classes)
    z32, h32 = logits_and_features(E.prepare(net, "fp32", "contiguous"), data.train.x)
    z16, h16 = logits_and_features(E.prepare(net, "bf16", "contiguous"), data.train.x)
    assert z16.dtype == h16.dtype == torch.float32 and not torch.equal(z16, z32)
    assert torch.allclose(z16, z32, atol=0.1) and torch.allclose(h16, h32, atol=0.1)


@pytest.mark.parametrize("text, precision", [("amp: false\n", "fp32"), ("amp: true\n", "auto"),
                                             ("amp: false\nprecision: bf16\n", "bf16")])
def test_old_configs_with_amp_keep_working(tmp_path, text, precision):
    path = tmp_path / "old.yaml"
    path.write_text(text)
    assert resolve_config(TrainConfig, str(path)).precision == precision


def test_amp_must_be_a_switch(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("amp: 3\n")
    with pytest.raises(UsageError, match="amp must be true or false"):
        resolve_config(TrainConfig, str(path))


def test_a_run_says_its_execution_first_and_its_config_repeats_it(tmp_path):
    """The run's first line and summary.json say what auto chose; config.yaml holds the
    choice, not auto, so --config with it repeats the run with no probe."""
    args = ["train", "--model", "lenet5", "--epochs", "1", "--out", str(tmp_path), "--wandb", "disabled",
            "--no-progress"]
    first = CliRunner().invoke(main, [*args, "--name", "a"])
    assert first.exit_code == 0, first.output
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert saved["precision"] in ("fp32", "bf16") and saved["memory_format"] in ("contiguous", "channels_last")
    assert (summary["precision"], summary["memory_format"]) == (saved["precision"], saved["memory_format"])
    assert first.output.splitlines()[0].startswith(f"execution: {saved['precision']}, {saved['memory_format']}")
    again = CliRunner().invoke(main, [*args[:1], "--config", str(tmp_path / "a" / "config.yaml"), "--name", "b"])
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[0] == f"execution: {saved['precision']}, {saved['memory_format']} (as set)"
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["test_acc"] == summary["test_acc"]


def test_sparse_kernels_run_fp32_inside_a_bf16_run():
    """SparseProp's kernels are fp32: a bf16 run feeds them fp32 inputs and trains."""
    from raypkg.sparse.dst import SparseTraining

    data = load_dataset("digits", seed=0)
    seed_everything(0)
    net = build_model("mlp", data.input_shape, data.num_classes)
    cfg = digits_cfg(precision="bf16", epochs=1)
    history = fit(net, data.train, data.test, cfg, callbacks=[SparseTraining(0.1, "ERK", seed=0, backend="sparse")])
    assert history[-1]["test_acc"] > 0.5


def test_bad_precision_values_are_refused():
    for kw in ({"precision": "fp16"}, {"memory_format": "nhwc"}):
        with pytest.raises(UsageError):
            dataclasses.replace(digits_cfg(), **kw).validate()
