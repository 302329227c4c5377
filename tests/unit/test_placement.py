"""Execution decided once, where the placement is known (``raypkg.engine.placement``), and
the GPU shares of Ray Train workers, shard actors and Tune trials, all with the cluster's
GPUs and the CPU's flags injected: nothing here needs a GPU or starts Ray."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

import raypkg
from raypkg.data import load_dataset
from raypkg.engine import execution as E
from raypkg.engine import placement as P
from raypkg.engine.config import TrainConfig
from raypkg.errors import UsageError
from raypkg.tracking.provenance import executions

AVX512_BF16 = {"avx", "avx2", "fma", "avx512f", "avx512_bf16"}
TINY = dict(dataset="digits", model="lenet5", epochs=1, batch_size=64, progress=False,
            wandb="disabled")


class Stop(Exception):
    """Raised where Ray Train would start."""


@pytest.fixture
def bf16_cpu(monkeypatch, tmp_path):
    """This CPU has bf16 (so ``auto`` would measure it), an empty execution cache, no CUDA,
    and a record of every measurement (a fake one: fp32 and bf16 timed, bf16 faster)."""
    monkeypatch.setattr(E, "cpu_flags", lambda: set(AVX512_BF16))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("EFFRAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(E, "TRAINED_AT", set())
    probed = []
    real_decide = E.decide

    def fake_measure(steps, **_):
        times = {pair: [2e-3 if pair[0] == "bf16" else 4e-3] * 5 for pair in steps}
        return E.Measurement(times, 5, 0.01)

    def decide(key, steps, cache=None, measurer=None):
        probed.append(key)
        return real_decide(key, steps, cache, fake_measure)

    monkeypatch.setattr(E, "decide", decide)
    return probed


@pytest.fixture
def gpu_cluster(monkeypatch):
    """A Ray cluster with one GPU (injected), and Ray Train stopped before it starts: the
    config the ranks would run is kept in ``seen``."""
    import raypkg.engine.ray_train as RT

    seen = {}
    monkeypatch.setattr(P, "cluster_gpus", lambda: 1.0)

    def fit_on_ray_train(cfg, data, **kw):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(RT, "fit_on_ray_train", fit_on_ray_train)
    return seen


@pytest.mark.parametrize("use_gpu", [None, True])
def test_gpu_workers_from_a_driver_without_a_gpu_train_fp32_contiguous_unprobed(bf16_cpu, gpu_cluster, use_gpu,
                                                                                   tmp_path):
    """issue 63/64: Recipe.run decided auto for the driver's CPU (bf16 here) before Ray
    Train learnt that its workers have GPUs. Decided where the placement is known, the GPU
    workers train at fp32/contiguous, nothing probed, and config.yaml records it."""
    with pytest.raises(Stop):
        raypkg.run("train", workers=1, use_gpu=use_gpu, out=str(tmp_path / "runs"), **TINY)
    cfg = gpu_cluster["cfg"]
    assert (cfg.precision, cfg.memory_format) == ("fp32", "contiguous")
    assert getattr(cfg, "compile", "off") == "off"
    assert bf16_cpu == []  # nothing was timed on this CPU
    assert executions() == "lenet5 fp32/contiguous"


def test_the_decided_execution_is_what_config_yaml_records(bf16_cpu, gpu_cluster, monkeypatch, tmp_path):
    import raypkg.engine.ray_train as RT
    from raypkg.models.registry import build_model

    def fit_on_ray_train(cfg, data, **kw):
        gpu_cluster["cfg"] = cfg
        state = build_model(cfg.model, data.input_shape, data.num_classes).state_dict()
        return RT.RayTrainOutcome(state, [], [], 0, [], cfg.precision, cfg.memory_format)

    monkeypatch.setattr(RT, "fit_on_ray_train", fit_on_ray_train)
    result = raypkg.run("train", workers=1, out=str(tmp_path / "runs"), **TINY)
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (saved["precision"], saved["memory_format"]) == ("fp32", "contiguous")
    assert result.summary["execution_source"] == "set" and bf16_cpu == []


def test_an_in_process_run_still_probes_this_cpu(bf16_cpu, monkeypatch):
    monkeypatch.setattr(P, "cluster_gpus", lambda: pytest.fail("an in-process run asked Ray for GPUs"))
    result = raypkg.run("train", save=False, **TINY)
    assert len(bf16_cpu) == 1  # measured once, here
    assert result.summary["execution_source"] == "measured"
    assert result.summary["precision"] == "bf16"  # the fake measurement's faster candidate


def test_cpu_workers_probe_this_cpu_as_the_in_process_run_does(bf16_cpu, monkeypatch):
    monkeypatch.setattr(P, "cluster_gpus", lambda: 0.0)
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(**{**TINY, "workers": 1}).resolved().validate()
    placement = P.place(cfg)
    assert placement == P.Placement(1, "cpu", 0.0)
    decided, execution = P.decide_execution(cfg, data, placement)
    assert execution.source == "measured" and decided.precision == "bf16" and len(bf16_cpu) == 1


def test_set_values_are_kept_on_gpu_workers(bf16_cpu, monkeypatch):
    data = load_dataset("digits", seed=0)
    cfg = TrainConfig(**{**TINY, "precision": "bf16", "memory_format": "channels_last"})
    decided, execution = P.decide_execution(cfg, data, P.Placement(1, "cuda", 1.0))
    assert (decided.precision, decided.memory_format, execution.reason) == ("bf16", "channels_last", "as set")
    assert bf16_cpu == []


def test_cpu_flag_keeps_workers_off_the_gpus_without_asking_ray(monkeypatch):
    monkeypatch.setattr(P, "cluster_gpus", lambda: pytest.fail("--cpu asked Ray for GPUs"))
    assert P.place(TrainConfig(workers=2, use_gpu=False)) == P.Placement(2, "cpu", 0.0)


def test_ray_train_refuses_an_undecided_execution():
    with pytest.raises(ValueError, match="Ray Train runs a decided execution: precision, memory_format"):
        P.check_decided(TrainConfig(workers=1))
    P.check_decided(TrainConfig(workers=1, precision="fp32", memory_format="contiguous", compile="off")
                    if "compile" in {f.name for f in dataclasses.fields(TrainConfig)} else
                    TrainConfig(workers=1, precision="fp32", memory_format="contiguous"))


@pytest.mark.parametrize("count, gpus, share", [
    (1, 1, 1.0), (2, 1, 0.5), (3, 1, 0.3333), (4, 1, 0.25), (4, 2, 0.5), (3, 2, 0.5), (2, 2, 1.0),
    (5, 8, 1.0), (2, 0, 0.0), (2, 0.5, 0.0), (0, 1, 0.0)])
def test_gpu_shares_fit_every_worker_on_whole_gpus(count, gpus, share):
    got = P.gpu_share(count, gpus)
    assert got == pytest.approx(share)
    if got:
        assert int(1 / got + 1e-9) * int(gpus) >= count  # they all fit
        assert got == round(got, 4)  # Ray's resolution


def test_ddp_ranks_sharing_a_gpu_are_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(P, "cluster_gpus", lambda: 1.0)
    placement = P.place(TrainConfig(workers=2))
    assert (placement.device, placement.ddp_workers, placement.ensemble_gpu_share) == ("cuda", 1, 0.5)
    with pytest.raises(UsageError, match="NCCL refuses two ranks on one device") as e:
        P.refuse_shared_ddp(placement)
    assert "\n" not in str(e.value) and "--workers 1" in str(e.value)
    P.refuse_shared_ddp(P.Placement(2, "cuda", 2.0))  # a GPU each
    P.refuse_shared_ddp(P.Placement(2, "cpu", 1.0))  # gloo on CPUs
    P.refuse_shared_ddp(P.Placement(2, "cuda", 0.0))  # no GPU at all: check_placement says so


def test_a_train_run_with_ddp_ranks_sharing_a_gpu_stops_before_any_work(bf16_cpu, gpu_cluster, tmp_path):
    with pytest.raises(UsageError, match="DDP ranks need a GPU each"):
        raypkg.run("train", workers=2, out=str(tmp_path / "runs"), **TINY)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert "cfg" not in gpu_cluster and bf16_cpu == []


def test_the_driver_device_beside_gpu_workers_is_its_own(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert P.driver_device(TrainConfig(workers=1, use_gpu=True), P.Placement(1, "cuda", 1.0)).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert P.driver_device(TrainConfig(workers=1), P.Placement(1, "cuda", 1.0)).type == "cuda"
    assert P.driver_device(TrainConfig(workers=1, use_gpu=False), P.Placement(1, "cpu", 0.0)).type == "cpu"
