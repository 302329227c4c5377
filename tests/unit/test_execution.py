"""Precision and memory format (``raypkg.engine.execution``): the decision with the CPU's
flags and the probe's times injected, what a prepared model runs, and that fp32 is the
engine's arithmetic of before, bit for bit."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import bare_env, without_env_settings

from raypkg.cli import main
from raypkg.config import resolve_config
from raypkg.data import load_dataset
from raypkg.engine import execution as E
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import CLOCK_COLUMNS, evaluate, fit, seed_everything
from raypkg.errors import UsageError
from raypkg.models.registry import build_model
from raypkg.tracking.provenance import executions, provenance

AVX2 = {"avx", "avx2", "fma"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16"}
AMX = AVX2 | {"amx_bf16", "amx_tile"}


@pytest.mark.parametrize("flags, native", [(AVX2, False), (AVX512_BF16, True), (AMX, True), (set(), False)])
def test_bf16_is_native_only_on_cpus_with_avx512_bf16_or_amx(flags, native):
    assert E.bf16_native("cpu", flags) is native
    assert E.bf16_native("cuda", flags) is True


@pytest.mark.parametrize("environ, kept", [
    ({}, AMX | AVX512_BF16),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, AVX2),
    ({"DNNL_MAX_CPU_ISA": "avx2_vnni"}, AVX2),
    ({"ATEN_CPU_CAPABILITY": "avx2"}, AVX2),
    ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "ALL"}, AVX2),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, AVX2 | {"avx512f"}),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, AVX512_BF16),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "ATEN_CPU_CAPABILITY": "avx512"}, AMX | AVX512_BF16),
])
def test_an_isa_cap_in_the_environment_removes_the_flags_above_it(environ, kept):
    assert E.isa_capped(AMX | AVX512_BF16, environ) == kept
    assert E.bf16_native("cpu", E.isa_capped(AMX | AVX512_BF16, environ)) is bool(kept & set(E.BF16_CPU_FLAGS))


@pytest.mark.parametrize("environ, kept", [
    ({"ONEDNN_MAX_CPU_ISA": "DEFAULT"}, AMX | AVX512_BF16),  # oneDNN's word for no cap, not AVX2
    ({"ONEDNN_MAX_CPU_ISA": "AVX10_1_512"}, AVX512_BF16),  # = AVX512_CORE_FP16: no AMX
    ({"ONEDNN_MAX_CPU_ISA": "avx10_1_512_amx"}, AMX | AVX512_BF16),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI_2"}, AVX2),
])
def test_every_isa_onednn_knows_caps_as_onednn_does(environ, kept):
    assert E.isa_capped(AMX | AVX512_BF16, environ) == kept
    assert E.ignored_caps(environ) == []


@pytest.mark.parametrize("environ, ignored", [
    ({"ONEDNN_MAX_CPU_ISA": "BOGUS"}, ["ONEDNN_MAX_CPU_ISA='BOGUS' is not an ISA oneDNN knows"]),
    ({"DNNL_MAX_CPU_ISA": "avx3"}, ["DNNL_MAX_CPU_ISA='avx3' is not an ISA oneDNN knows"]),
    ({"ATEN_CPU_CAPABILITY": "bogus"}, ["ATEN_CPU_CAPABILITY='bogus' is not a capability ATen knows"]),
    ({"ATEN_CPU_CAPABILITY": "AVX2"}, ["ATEN_CPU_CAPABILITY='AVX2' is not a capability ATen knows"]),  # exact case
    # oneDNN reads ONEDNN_ before DNNL_: an invalid ONEDNN_ value hides a valid DNNL_ one
    ({"ONEDNN_MAX_CPU_ISA": "BOGUS", "DNNL_MAX_CPU_ISA": "AVX2"}, ["ONEDNN_MAX_CPU_ISA='BOGUS'"]),
    ({"ONEDNN_MAX_CPU_ISA": "bogus", "ATEN_CPU_CAPABILITY": "x"}, ["ONEDNN_MAX_CPU_ISA='bogus'",
                                                                   "ATEN_CPU_CAPABILITY='x'"]),
])
def test_a_cap_value_the_kernels_ignore_caps_nothing_and_is_said_once(environ, ignored, monkeypatch, capsys):
    """issue 65: ONEDNN_MAX_CPU_ISA=BOGUS made an AMX CPU drop bf16 and share the AVX2 cache
    key, while torch ignores the value (ATen warns, oneDNN is silent) and runs AMX kernels."""
    assert E.isa_capped(AMX | AVX512_BF16, environ) == AMX | AVX512_BF16
    assert E.bf16_native("cpu", E.isa_capped(AMX | AVX512_BF16, environ))
    lines = E.ignored_caps(environ)
    assert len(lines) == len(ignored) and all(line.startswith(start) for line, start in zip(lines, ignored))
    assert all(line.endswith("the kernels ignore it and use every ISA of this CPU, and so does effray")
               for line in lines)
    E._warn_once.cache_clear()
    for name in E.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    E.cpu_flags()
    E.cpu_flags()
    assert capsys.readouterr().err.splitlines() == [f"warning: {line}" for line in lines]


def test_an_avx512_cpu_capped_to_avx2_runs_auto_as_an_avx2_cpu_and_its_results_say_so(tmp_path, monkeypatch):
    """oneDNN and ATen read their caps when torch loads, so the run is a fresh process: it
    measures fp32's two layouts only, as on an AVX2-only CPU. A result written under a cap
    names it first in its command, and no flag above it."""
    caps = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    run = subprocess.run([sys.executable, "-m", "raypkg.cli", "train", "--model", "lenet5", "--epochs", "1",
                          "--out", str(tmp_path), "--wandb", "disabled", "--no-progress"], capture_output=True,
                         text=True, env=bare_env(EFFRAY_CACHE_DIR=str(tmp_path), **caps), timeout=300)
    assert run.returncode == 0, run.stderr
    first = run.stdout.splitlines()[0]
    assert first.startswith("execution: fp32, ") and "fp32/channels_last" in first and "bf16" not in first, first
    for name, value in caps.items():
        monkeypatch.setenv(name, value)
    stored = provenance(threads=1)
    assert stored["command"].split()[:3] == ["ONEDNN_MAX_CPU_ISA=AVX2", "ATEN_CPU_CAPABILITY=avx2", "effray"]
    assert without_env_settings(stored["command"]).startswith("effray")
    assert not {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"} & set(stored["cpu_flags"].split(","))


def test_an_avx2_only_cpu_means_fp32_unprobed():
    pairs, reason = E.candidates("auto", "auto", "cpu", convolutional=False, flags=AVX2)
    assert pairs == [("fp32", "contiguous")] and "avx512_bf16" in reason


def test_cuda_probes_bf16_against_fp32_and_channels_last_for_conv_models_only():
    """bf16 is timed on a GPU too: a small model is launch-bound there, where autocast's casts
    cost more than bf16 saves (ResNet-20 at batch 128 on an H100)."""
    assert E.candidates("auto", "auto", "cuda", convolutional=False)[0] == [("fp32", "contiguous"),
                                                                           ("bf16", "contiguous")]
    assert E.candidates("auto", "auto", "cuda", convolutional=True)[0] == [
        ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), ("bf16", "channels_last")]
    assert E.candidates("auto", "auto", "cuda", convolutional=True, flags=AVX2)[0][-1] == ("bf16", "channels_last")


def test_a_bf16_cpu_probes_fp32_first_and_set_values_are_kept():
    assert E.candidates("auto", "auto", "cpu", True, AVX512_BF16)[0] == [
        ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), ("bf16", "channels_last")]
    assert E.candidates("fp32", "auto", "cpu", True, AVX512_BF16)[0] == [("fp32", "contiguous"),
                                                                        ("fp32", "channels_last")]
    assert E.candidates("bf16", "contiguous", "cpu", True, AVX2)[0] == [("bf16", "contiguous")]  # asked for


FP32, FP32_CL, BF16, BF16_CL = ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), \
    ("bf16", "channels_last")


def scripted(times: dict, clock: list) -> dict:
    """Candidate steps that advance a fake clock by the scripted seconds, one per call
    (the last one repeats): injected timings for ``measure``."""
    def step_of(seq):
        calls = iter(seq)

        def step():
            clock[0] += next(calls, seq[-1])
        return step
    return {pair: step_of(seq) for pair, seq in times.items()}


def measured(times: dict, **kw) -> E.Measurement:
    clock = [0.0]
    return E.measure(scripted(times, clock), clock=lambda: clock[0], **kw)


@pytest.mark.parametrize("samples, chosen", [
    ({FP32: [10.0] * 5, BF16: [12.0] * 5}, FP32),  # slower: fp32
    ({FP32: [10.0] * 5, BF16: [6.0] * 5}, BF16),
    ({FP32: [10.0] * 5, BF16: [9.6] * 5}, FP32),  # within the margin: the simpler one
    ({FP32: [10.0] * 5, FP32_CL: [8.0] * 5, BF16_CL: [5.0] * 5}, BF16_CL),
    ({FP32: [10.0] * 5, FP32_CL: [8.0] * 5, BF16: [5.0] * 5, BF16_CL: [5.1] * 5}, BF16),  # a bf16 tie: contiguous
    ({FP32: [10, 4, 16, 6, 14], BF16: [7, 8, 7, 8, 7]}, FP32),  # faster median, but inside fp32's spread
    ({BF16: [3.0] * 5, BF16_CL: [2.0] * 5}, BF16_CL),  # CUDA: no fp32
])
def test_a_candidate_is_chosen_only_when_it_beats_every_simpler_one_clearly(samples, chosen):
    assert E.choose(samples) == chosen


def test_apart_means_the_medians_differ_by_more_than_half_the_summed_spreads():
    assert E.apart([1, 2, 3, 4, 5], [7, 8, 9, 10, 11])  # medians 3 and 9, IQRs 2 and 2
    assert not E.apart([1, 2, 3, 4, 5], [2, 4, 5, 6, 8])  # medians 3 and 5, IQRs 2 and 2


def test_the_measurement_interleaves_and_skips_the_cold_first_calls():
    """Warm-ups are never timed (a 100 s first call counts for nothing); each round steps
    every candidate once, in turn, the order reversed every other round."""
    order = []
    clock = [0.0]
    steps = scripted({FP32: [100.0, 100.0, 2.0], BF16: [50.0, 50.0, 1.0]}, clock)
    logged = {pair: (lambda step, pair: lambda: (order.append(pair), step()))(step, pair)
              for pair, step in steps.items()}
    result = E.measure(logged, clock=lambda: clock[0])
    assert result.samples == {FP32: [2.0] * 5, BF16: [1.0] * 5} and result.rounds == 5
    assert order[:4] == [FP32, FP32, BF16, BF16]  # the warm-ups
    assert order[4:10] == [FP32, BF16, BF16, FP32, FP32, BF16]


def test_noisy_timings_measure_until_the_cap_and_keep_fp32():
    """Medians 10% apart inside a 50% spread never settle: the cap ends it, fp32 stays."""
    noisy = measured({FP32: [10, 15, 5] * 20, BF16: [9, 14, 4] * 20}, max_rounds=12, max_seconds=1e9)
    assert noisy.rounds == 12 and not E.settled(noisy.samples) and E.choose(noisy.samples) == FP32
    capped = measured({FP32: [10, 15, 5] * 20, BF16: [9, 14, 4] * 20}, max_seconds=100.0)
    assert capped.rounds < E.MAX_ROUNDS and capped.seconds >= 100.0


def test_a_clear_difference_or_a_tie_settles_after_the_fewest_rounds():
    assert measured({FP32: [10.0], BF16: [5.0]}).rounds == E.MIN_ROUNDS
    assert measured({FP32: [10.0], BF16: [9.9]}).rounds == E.MIN_ROUNDS
    assert E.choose(measured({FP32: [10.0], BF16: [9.9]}).samples) == FP32


def digits_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 64, "progress": False, **kw}).resolved().validate()


def test_resolving_an_avx2_machine_times_nothing_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "TRAINED_AT", set())
    data = load_dataset("digits", seed=0)
    cache = E.ExecutionCache(tmp_path / "execution.json")
    cfg, execution = E.resolve_for_data(digits_cfg(), data, torch.device("cpu"), flags=AVX2, cache=cache)
    assert (cfg.precision, cfg.memory_format) == ("fp32", "contiguous") and execution.source == "set"
    assert execution.medians_ms == {} and not cache.path.exists()
    assert executions() == "mlp fp32/contiguous"  # a result this process writes names it (its provenance)


def test_a_choice_is_measured_once_per_machine_and_every_later_run_reuses_it(tmp_path, monkeypatch):
    """bf16 claimed native (whatever this CPU is): LeNet-5's four candidates are measured,
    the choice follows the samples, the RNG is untouched, and a second resolve (another
    process would read the same file) takes the cached choice without measuring."""
    monkeypatch.setattr(E, "TRAINED_AT", set())
    data = load_dataset("digits", seed=0)
    cache = E.ExecutionCache(tmp_path / "execution.json")
    samples = {}

    def measurer(steps):
        assert set(steps) == {FP32, FP32_CL, BF16, BF16_CL}
        for step in steps.values():
            step()  # real forward + backward passes of copies of the model
        samples.update({FP32: [10.0] * 5, FP32_CL: [9.0] * 5, BF16: [6.0] * 5, BF16_CL: [6.1] * 5})
        return E.Measurement(samples, 5, 0.5)

    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    cfg, first = E.resolve_for_data(digits_cfg(model="lenet5"), data, torch.device("cpu"), flags=AVX512_BF16,
                                    cache=cache, measurer=measurer)
    assert torch.equal(torch.rand(3), before)
    assert (cfg.precision, cfg.memory_format) == ("bf16", "contiguous") and first.source == "measured"
    assert executions() == "lenet5 bf16/contiguous"
    assert first.medians_ms == {"fp32/contiguous": 10000.0, "fp32/channels_last": 9000.0,
                                "bf16/contiguous": 6000.0, "bf16/channels_last": 6100.0}

    def never(steps):
        raise AssertionError("measured again")

    cfg2, again = E.resolve_for_data(digits_cfg(model="lenet5"), data, torch.device("cpu"), flags=AVX512_BF16,
                                     cache=E.ExecutionCache(cache.path), measurer=never)
    assert (cfg2, again.source, again.medians_ms) == (cfg, "cache", first.medians_ms)
    assert again.describe().startswith("execution: bf16, contiguous (from the cache, measured ")
    assert E.ExecutionCache(cache.path).clear() == 1 and E.ExecutionCache(cache.path).entries() == {}


def test_two_runs_measuring_one_key_at_once_both_run_the_first_stored_choice(tmp_path):
    """Run B measures while run A stores its choice for the same key: B runs A's choice
    (from the cache), and the cache keeps A's, so a third run agrees with both."""
    cache = E.ExecutionCache(tmp_path / "execution.json")
    stored_by_a = {"precision": "bf16", "memory_format": "contiguous", "medians_ms": {"fp32/contiguous": 2.0},
                   "iqr_ms": {}, "rounds": 3, "settled": True, "measured_at": "2026-11-27"}

    def b_measures_while_a_stores(steps):
        E.ExecutionCache(cache.path).keep("k", stored_by_a)
        return E.Measurement({FP32: [1.0] * 5, BF16: [3.0] * 5}, 5, 0.1)  # B alone would choose fp32

    b = E.decide("k", lambda: contextlib.nullcontext({}), cache, b_measures_while_a_stores)
    assert (b.precision, b.source, b.medians_ms) == ("bf16", "cache", {"fp32/contiguous": 2.0})
    assert cache.entries() == {"k": stored_by_a}


def test_the_cache_key_names_the_machine_the_model_the_input_and_the_batch():
    key = E.cache_key("resnet20", (1, 28, 28), 128, torch.device("cpu"), [FP32, BF16], AVX512_BF16)
    for part in ("device=cpu", f"hardware={E.cpu_model()}", f"torch={torch.__version__}",
                 f"threads={torch.get_num_threads()}", "model=resnet20", "input=1x28x28", "batch=128",
                 "candidates=fp32/contiguous,bf16/contiguous"):
        assert part in key.split("|"), part
    assert key != E.cache_key("resnet20", (1, 28, 28), 128, torch.device("cpu"), [FP32, BF16], AVX2)  # other flags
    assert key != E.cache_key("resnet20", (1, 28, 28), 64, torch.device("cpu"), [FP32, BF16], AVX512_BF16)


def test_an_unreadable_cache_is_an_empty_one_and_an_unwritable_one_warns(tmp_path, capsys):
    broken = tmp_path / "execution.json"
    broken.write_text("{not json")
    E._warn_once.cache_clear()
    for _ in range(2):  # said once, however often it is read
        assert E.ExecutionCache(broken).entries() == {}
    assert capsys.readouterr().err.splitlines() == [
        f"warning: the execution cache {str(broken)!r} could not be read (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1)); this run measures again and replaces it"]
    assert E.ExecutionCache(broken).keep("k", STORED) == STORED  # the run's choice replaces it
    assert E.ExecutionCache(broken).entries(strict=True) == {"k": STORED}
    assert E.ExecutionCache(tmp_path / "missing.json").entries() == {}  # no cache yet: nothing to say
    assert capsys.readouterr().err == ""
    (tmp_path / "file").write_text("")
    E._warn_once.cache_clear()
    assert E.ExecutionCache(tmp_path / "file" / "execution.json").keep("k", {"precision": "bf16"}) is None
    assert "the execution choice is not cached" in capsys.readouterr().err


STORED = {"precision": "bf16", "memory_format": "contiguous", "medians_ms": {"fp32/contiguous": 2.0},
          "iqr_ms": {}, "rounds": 3, "settled": True, "measured_at": "2026-11-27"}
# Where no cache can be kept: the directory named is a file, a directory stands where the
# file belongs, the directory cannot be written (root writes through modes: /proc/1).
UNUSABLE = {"a file for the directory": lambda tmp: (tmp / "file", "is a file, not a directory"),
            "a directory for the file": lambda tmp: (tmp, "execution.json' is a directory, not a file"),
            "an unwritable directory": lambda tmp: (Path("/proc/1") if os.geteuid() == 0 else tmp / "ro",
                                                    "is not writable")}


def unusable_cache_dir(tmp_path: Path, kind: str) -> tuple[Path, str]:
    (tmp_path / "file").write_text("")
    (tmp_path / "execution.json").mkdir()
    (tmp_path / "ro").mkdir(mode=0o555)
    return UNUSABLE[kind](tmp_path)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("kind", UNUSABLE)
def test_a_choice_the_cache_cannot_keep_is_said_not_cached_once_and_leaves_nothing(tmp_path, capsys, kind):
    """issue 65: with EFFRAY_CACHE_DIR a file, a directory where execution.json belongs, or
    unwritable, the run's first line said "cached" while stderr said "not cached"."""
    directory, says = unusable_cache_dir(tmp_path, kind)
    before = listing(tmp_path)
    E._warn_once.cache_clear()
    cache = E.ExecutionCache(directory / "execution.json")
    for _ in range(2):  # a second decision (sparse's per-layer choices) says nothing more
        execution = E.decide("k", lambda: contextlib.nullcontext({}), cache,
                             lambda steps: E.Measurement({FP32: [2.0] * 5, BF16: [1.0] * 5}, 5, 0.1))
        assert (execution.precision, execution.source, execution.cached) == ("bf16", "measured", False)
        assert execution.describe().endswith("median step fp32/contiguous 2000.0 ms, bf16/contiguous 1000.0 ms; "
                                              "not cached)")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the execution choice is not cached (") and says in err[0]
    assert listing(tmp_path) == before  # no lock, no temporary file


def test_a_kept_choice_says_cached():
    assert E.Execution("bf16", source="measured", rounds=5).describe().endswith("; cached)")


@pytest.mark.parametrize("kind", UNUSABLE)
def test_clearing_a_cache_that_cannot_be_kept_is_one_line_and_leaves_no_lock(tmp_path, monkeypatch, kind):
    directory, says = unusable_cache_dir(tmp_path, kind)
    monkeypatch.setenv("EFFRAY_CACHE_DIR", str(directory))
    before = listing(tmp_path)
    result = CliRunner().invoke(main, ["execution", "--clear"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith("error: execution cache '") and says in result.stderr
    assert result.stderr.endswith("; nothing cleared\n")
    assert len(result.stderr.splitlines()) == 1
    assert listing(tmp_path) == before


def test_clearing_no_cache_writes_nothing_and_clearing_one_leaves_its_lock_only(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFRAY_CACHE_DIR", str(tmp_path / "new"))
    cleared = CliRunner().invoke(main, ["execution", "--clear"])
    assert cleared.output == f"cleared 0 choice(s) from {tmp_path}/new/execution.json\n"
    assert listing(tmp_path) == []
    E.ExecutionCache().keep("k", STORED)
    assert E.ExecutionCache().clear() == 1 and listing(tmp_path) == ["new", "new/execution.lock"]


@pytest.mark.parametrize("text, says", [
    ("{not json", "(Expecting property name enclosed in double quotes"),
    ("", "(Expecting value"),
    ('{"choices": {"k": {"precision": "bf16"}}}', "(not the JSON effray writes)"),
    ('[1, 2]', "(not the JSON effray writes)"),
    (b"\xff\xfe", "('utf-8' codec can't decode byte 0xff"),
])
def test_effray_execution_says_a_damaged_cache_cannot_be_read(tmp_path, monkeypatch, text, says):
    """issue 65: a damaged cache was listed as "0 choice(s)"; a run measures again and
    replaces it."""
    monkeypatch.setenv("EFFRAY_CACHE_DIR", str(tmp_path))
    path = tmp_path / "execution.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = CliRunner().invoke(main, ["execution"])
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr.startswith(f"error: cannot read the execution cache {str(path)!r} {says}")
    assert result.stderr.endswith("); `effray execution --clear` removes it\n")
    assert len(result.stderr.splitlines()) == 1
    assert E.ExecutionCache().entries() == {}  # a run measures again
    assert E.ExecutionCache().keep("k", STORED) == STORED and E.ExecutionCache().entries() == {"k": STORED}


def test_fit_refuses_an_undecided_execution():
    data = load_dataset("digits", seed=0)
    net = build_model("mlp", data.input_shape, data.num_classes)
    with pytest.raises(ValueError, match="fit runs a decided execution"):
        fit(net, data.train, None, digits_cfg())


def test_the_execution_travels_as_arguments_never_on_the_model():
    """``fit`` lays the weights out and runs its passes at ``cfg.precision``; the module carries
    no execution for a later pass to read, and a pass refuses an undecided precision."""
    net, history, data = train_digits("lenet5", precision="bf16", memory_format="channels_last", epochs=1)
    assert not hasattr(net, "precision") and not hasattr(net, "memory_format")
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    at_bf16 = evaluate(net, data.test, precision="bf16")
    assert at_bf16["acc"] == pytest.approx(history[-1]["test_acc"])
    assert at_bf16["loss"] != evaluate(net, data.test, precision="fp32")["loss"]  # the argument decides
    for undecided in ("auto", "fp16"):
        with pytest.raises(ValueError, match="decided precision"):
            E.autocast(undecided, "cpu")


def test_a_cached_warm_up_is_laid_out_as_a_fresh_one(tmp_path):
    """DeepCore's warm-up from the selection cache is built afresh from its weights: it gets
    the run's layout, as ``fit`` gave the fresh one, so selection scores the same model."""
    from raypkg.selection.cache import SelectionCache
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.pipeline import pretrain_full

    data = load_dataset("digits", seed=0)
    cfg = CoresetConfig(dataset="digits", model="lenet5", selection="grand", pretrain_epochs=1, repeats=1,
                        precision="fp32", memory_format="channels_last", progress=False)
    cache = SelectionCache(tmp_path)
    fresh, cached = (pretrain_full(cfg, data, torch.device("cpu"), None, cache) for _ in range(2))
    assert (fresh.cache_hits, cached.cache_hits) == (0, 1)
    for a, b in zip(fresh.models[0].parameters(), cached.models[0].parameters()):
        assert torch.equal(a, b) and a.stride() == b.stride()


def test_effray_execution_lists_and_clears_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFRAY_CACHE_DIR", str(tmp_path))
    E.ExecutionCache().keep("v=1|model=lenet5", {"precision": "fp32", "memory_format": "channels_last",
                                                 "medians_ms": {"fp32/contiguous": 3.6, "fp32/channels_last": 3.2},
                                                 "iqr_ms": {}, "rounds": 5, "settled": True,
                                                 "measured_at": "2026-11-25"})
    E.ExecutionCache().keep("v=1|model=lenet5|compile", {**compile_entry(3.2, 1.1, 16.9), "measured_at": "2026-11-27"})
    E.ExecutionCache().keep("v=1|model=odd|compile", {**compile_entry(3.2, 1.1, 0.0, breaks="Unsupported: x")})
    listed = CliRunner().invoke(main, ["execution"])
    assert listed.exit_code == 0 and "fp32/channels_last  measured 2026-11-25, 5 rounds" in listed.output
    assert "v=1|model=lenet5" in listed.output
    assert "compile at fp32/contiguous, 16.9 s to compile  measured 2026-11-27" in listed.output
    assert "compile at fp32/contiguous: does not compile (Unsupported: x)" in listed.output
    cleared = CliRunner().invoke(main, ["execution", "--clear"])
    assert cleared.output.startswith("cleared 3 choice(s)") and E.ExecutionCache().entries() == {}


def train_digits(model: str, **kw):
    data = load_dataset("digits", seed=0)
    seed_everything(0)
    net = build_model(model, data.input_shape, data.num_classes)
    history = fit(net, data.train, data.test, digits_cfg(model=model, **{"precision": "fp32",
                                                                            "memory_format": "contiguous", **kw}))
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
        for positions in order.split(cfg.batch_size)[:len(order) // cfg.batch_size]:  # the ragged batch dropped
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
    assert all(p.dtype == torch.float32 for p in net.parameters())
    with E.autocast("bf16", "cpu"):
        assert net(data.test.x[:4]).dtype == torch.bfloat16
    accs = {}
    for precision in ("fp32", "bf16"):
        accs[precision] = sum(train_digits("mlp", precision=precision, seed=s)[1][-1]["test_acc"]
                              for s in range(3)) / 3
    assert abs(accs["bf16"] - accs["fp32"]) < 0.02, accs
    assert evaluate(net, data.test, precision="bf16")["acc"] == pytest.approx(history[-1]["test_acc"])


@pytest.mark.slow
def test_channels_last_puts_conv_weights_in_that_layout_and_computes_the_same_gradients():
    """The layout changes the order of the sums only: one 1x28x28 batch's gradients are as
    close to float64's as contiguous fp32's are (within 5% of each tensor's largest entry:
    batch norm's backward amplifies float32 rounding to ~2% at this size in both layouts),
    and a run keeps the layout."""
    import copy

    import torch.nn.functional as F

    seed_everything(0)
    plain = E.to_memory_format(build_model("resnet20", (1, 28, 28), 10), "contiguous")
    last = E.to_memory_format(copy.deepcopy(plain), "channels_last")
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
    z32, h32 = logits_and_features(net, data.train.x, precision="fp32")
    z16, h16 = logits_and_features(net, data.train.x, precision="bf16")
    assert z16.dtype == h16.dtype == torch.float32 and not torch.equal(z16, z32)
    assert torch.allclose(z16, z32, atol=0.1) and torch.allclose(h16, h32, atol=0.1)


@pytest.mark.parametrize("text, precision", [("amp: false\n", "fp32"), ("amp: true\n", "auto"),
                                             ("amp: false\nprecision: fp32\n", "fp32"),
                                             ("amp: true\nprecision: bf16\n", "bf16")])
def test_old_configs_with_amp_keep_working(tmp_path, text, precision):
    path = tmp_path / "old.yaml"
    path.write_text(text)
    assert resolve_config(TrainConfig, str(path)).precision == precision


@pytest.mark.parametrize("text", ["amp: false\nprecision: bf16\n", "amp: false\nprecision: auto\n",
                                  "amp: true\nprecision: fp32\n"])
def test_amp_and_a_precision_it_contradicts_are_refused(tmp_path, text):
    """issue 48: `amp: false` with `precision: bf16` ran bf16; a contradiction is refused."""
    path = tmp_path / "old.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match="contradict each other"):
        resolve_config(TrainConfig, str(path))


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
    assert saved["compile"] == "off" and "; compile off (auto on a CPU" in first.output.splitlines()[0]
    assert again.output.splitlines()[0] == (f"execution: {saved['precision']}, {saved['memory_format']} (as set); "
                                            "compile off (as set)")
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["test_acc"] == summary["test_acc"]


def test_sparse_kernels_run_fp32_inside_a_bf16_run():
    """SparseProp's kernels are fp32: a bf16 run feeds them fp32 inputs and trains."""
    from raypkg.methods.sparse.dst import SparseTraining

    data = load_dataset("digits", seed=0)
    seed_everything(0)
    net = build_model("mlp", data.input_shape, data.num_classes)
    cfg = digits_cfg(precision="bf16", memory_format="contiguous", epochs=1)
    history = fit(net, data.train, data.test, cfg, callbacks=[SparseTraining(0.1, "ERK", seed=0, backend="sparse")])
    assert history[-1]["test_acc"] > 0.5


def test_bad_precision_values_are_refused():
    for kw in ({"precision": "fp16"}, {"memory_format": "nhwc"}, {"compile": "yes"}):
        with pytest.raises(UsageError):
            dataclasses.replace(digits_cfg(), **kw).validate()


def test_bench_precision_picks_what_its_own_medians_say(tmp_path):
    """The pick is made from the bench's own samples: no candidate of auto's beats it by
    the rule ``choose`` applies (a median more than MARGIN lower, and apart)."""
    import pandas as pd

    result = CliRunner().invoke(main, ["bench", "precision", "--setups", "digits:lenet5,digits:mlp", "--seeds", "0",
                                       "--step-repeats", "5", "--save", str(tmp_path / "p"), "--wandb", "disabled"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "p.parquet")
    bf16_here = E.bf16_native("cpu")
    for row in table.to_dict("records"):
        conv = row["setup"].endswith("lenet5")
        pairs = E.candidates("auto", "auto", "cpu", conv)[0]
        assert row["auto"] in {E.label(p) for p in pairs}
        pick = row["auto"].replace("/", "_")
        for p in pairs:
            name = E.label(p).replace("/", "_")
            faster = row[f"{name}_ms"] < row[f"{pick}_ms"] * (1 - E.MARGIN)
            apart = row[f"{pick}_ms"] - row[f"{name}_ms"] > (row[f"{name}_iqr_ms"] + row[f"{pick}_iqr_ms"]) / 2
            assert not (faster and apart), (row, p)
        assert bf16_here or row["auto"].startswith("fp32")  # an AVX2 CPU never picks bf16


def test_bench_precision_measures_autos_candidates_apart_from_the_steps_auto_never_takes(tmp_path, monkeypatch):
    """On an AVX2 CPU bf16 is timed for the table only, in a measurement of its own: its ~10x
    slower steps must not use up the time cap of the fp32 layouts auto chooses between."""
    import pandas as pd

    import raypkg.bench.precision as bench

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # auto's decision reads it at the call
    measured = []
    fake_ms = {("fp32", "contiguous"): 10.0, ("fp32", "channels_last"): 8.0, ("bf16", "contiguous"): 100.0,
               ("bf16", "channels_last"): 90.0}

    def fake_samples(cfg, data, pairs, repeats):
        measured.append(list(pairs))
        return {pair: [fake_ms[pair] / 1000 * (1 + i / 100) for i in range(5)] for pair in pairs}

    monkeypatch.setattr(bench, "step_samples", fake_samples)
    result = CliRunner().invoke(main, ["bench", "precision", "--setups", "digits:lenet5", "--seeds", "0",
                                       "--save", str(tmp_path / "p"), "--wandb", "disabled"])
    assert result.exit_code == 0, result.output
    assert measured == [[("fp32", "contiguous"), ("fp32", "channels_last")],
                        [("bf16", "contiguous"), ("bf16", "channels_last")]]
    row = pd.read_parquet(tmp_path / "p.parquet").iloc[0]
    assert row["auto"] == "fp32/channels_last" and row["bf16_contiguous_ms"] == pytest.approx(100.0 * 1.02)


# --compile: the policy with timings injected, and the compiled step on the CPU through
# Dynamo and AOTAutograd run by the eager kernels (``aot_eager``: seconds, not inductor's minute).
# The inductor/CUDA-graph step's agreement with the eager one is in tests/unit/test_cuda.py.

def compile_entry(eager_ms, compiled_ms, compile_s, spread=0.0, breaks=""):
    entry = E.compile_entry(FP32, E.Measurement({}, 0, 0.0))
    return {**entry, "medians_ms": {"eager": eager_ms, "compiled": compiled_ms},
            "iqr_ms": {"eager": spread, "compiled": spread}, "compile_s": compile_s, "breaks": breaks}


@pytest.mark.parametrize("entry, steps, on, says", [
    (compile_entry(7.3, 2.0, 40.0), 10_000, True, "saves 53.0 s over 10000 steps against 40.0 s of compiling"),
    (compile_entry(7.3, 2.0, 40.0), 7_000, False, "saves 37.1 s over 7000 steps"),  # a short run: it does not pay
    (compile_entry(7.3, 7.1, 1.0), 10**9, False, "not faster by 5%"),
    (compile_entry(7.3, 5.0, 1.0, spread=5.0), 10**9, False, "not faster by 5%"),  # inside the spread
    (compile_entry(7.3, 2.0, 1.0, breaks="Unsupported: data-dependent branch"), 10**9, False,
     "does not compile whole: Unsupported"),
])
def test_compiling_is_on_only_when_clearly_faster_and_the_run_repays_the_compile(entry, steps, on, says):
    choice = E.weigh_compile(entry, steps, "measured")
    assert choice.compile == ("on" if on else "off") and says in choice.reason


def test_a_run_whose_whole_eager_training_is_shorter_than_any_compile_is_not_compiled_to_find_out():
    assert E.too_short_to_compile(42, 8.6)  # digits, 2 epochs of ResNet-20 on an H100: 0.4 s in all
    assert not E.too_short_to_compile(468 * 10, 8.6)  # 10 epochs of 60,000 images: 40 s
    assert E.too_short_to_compile(999, 5.0) and not E.too_short_to_compile(1000, 5.0)  # the bound: MIN_COMPILE_S


def test_compile_auto_on_a_cpu_is_off_untimed_and_set_values_are_kept():
    data = load_dataset("digits", seed=0)
    net = build_model("mlp", data.input_shape, data.num_classes)
    x, y = data.train.x[:64], data.train.y[:64]

    def no_timing(*_a, **_k):
        raise AssertionError("nothing is timed")

    for setting, decided in (("auto", "off"), ("on", "on"), ("off", "off")):
        choice = E.decide_compile(digits_cfg(compile=setting), net, x, y, FP32, 10**9, measurer=no_timing)
        assert choice.compile == decided and choice.source == "set"
    assert not E.compiles(digits_cfg(compile="auto"), torch.device("cpu"))
    with pytest.raises(ValueError, match="decide compile once"):
        E.compiles(digits_cfg(compile="auto"), torch.device("cuda"))


class BreaksGraph(torch.nn.Module):
    """A model Dynamo cannot capture whole: its forward branches on a tensor's value."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x) if float(x.sum()) > 0 else -self.fc(x)


def test_measuring_compile_times_both_steps_or_says_why_the_model_does_not_compile(monkeypatch):
    monkeypatch.setattr(E, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    clock = [0.0]

    def fake_measurer(steps):
        assert set(steps) == {("eager", "fp32/contiguous"), ("compiled", "fp32/contiguous")}
        for step in steps.values():
            step()  # the real steps run
        return E.measure(scripted({k: [v] for k, v in zip(steps, (0.004, 0.002))}, clock), clock=lambda: clock[0])

    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    entry = E.measure_compile(mlp, x, y, FP32, fake_measurer)
    assert entry["breaks"] == "" and entry["compile_s"] > 0
    assert entry["medians_ms"] == pytest.approx({"eager": 4.0, "compiled": 2.0})
    assert set(E.ENTRY_KEYS) <= set(entry)  # the cache keeps it beside the precision choices
    broken = E.measure_compile(BreaksGraph(), x, y, FP32, fake_measurer)
    assert broken["breaks"] and E.weigh_compile(broken, 10**9, "measured").compile == "off"


def test_a_compiled_step_trains_as_the_eager_one_bit_for_bit_through_the_eager_kernels(monkeypatch):
    """``compile on`` changes how the step is launched, not what it computes: through
    ``aot_eager`` (the same kernels) a run's rows and weights equal the eager run's exactly."""
    monkeypatch.setattr(E, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, rows_eager, _ = train_digits("mlp", epochs=2, compile="off")
    assert not torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled, rows_compiled, _ = train_digits("mlp", epochs=2, compile="on")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # one graph: no break, no recompile
    clock_free = [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in rows_eager]
    assert [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in rows_compiled] == clock_free
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.equal(a, b), name
