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
    # the steps trained on the workers' GPUs; the final evaluation ran here, on this CPU
    assert (result.summary["train_device"], result.summary["device"]) == ("cuda", "cpu")


def test_an_in_process_run_still_probes_this_cpu(bf16_cpu, monkeypatch):
    monkeypatch.setattr(P, "cluster_gpus", lambda: pytest.fail("an in-process run asked Ray for GPUs"))
    result = raypkg.run("train", save=False, **TINY)
    assert len(bf16_cpu) == 1  # measured once, here
    assert result.summary["execution_source"] == "measured"
    assert result.summary["precision"] == "bf16"  # the fake measurement's faster candidate
    assert result.summary["train_device"] == result.summary["device"] == "cpu"


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
    decided = TrainConfig(workers=1, precision="fp32", memory_format="contiguous")
    P.check_decided(decided)  # compile auto is off on CPUs, untimed
    if getattr(decided, "compile", None) == "auto":
        with pytest.raises(ValueError, match="compile still auto"):
            P.check_decided(decided, "cuda")
        P.check_decided(dataclasses.replace(decided, compile="off"), "cuda")


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


@pytest.fixture
def one_gpu_ray(monkeypatch):
    """Ray's view of a 2-CPU, 1-GPU node, injected: nothing starts."""
    import ray

    resources = {"CPU": 2.0, "GPU": 1.0}
    monkeypatch.setattr(ray, "cluster_resources", lambda: dict(resources))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": dict(resources)}])
    return resources


@pytest.mark.parametrize("use_gpu, count, share", [(None, 2, 0.5), (True, 3, 0.3333), (None, 1, 1.0), (False, 2, 0.0)])
def test_actors_and_trials_take_a_share_of_the_clusters_gpus(one_gpu_ray, use_gpu, count, share):
    from raypkg.distributed.placement import gpus_for

    assert gpus_for(use_gpu, count, "shard actors") == share


def test_gpu_asked_of_a_cluster_without_one_is_refused(one_gpu_ray):
    from raypkg.distributed.placement import gpus_for

    one_gpu_ray["GPU"] = 0.0
    assert gpus_for(None, 2, "shard actors") == 0.0
    with pytest.raises(UsageError, match="--gpu: the Ray cluster has no GPU for the shard actors"):
        gpus_for(True, 2, "shard actors")


def test_shard_actors_on_a_gpu_share_hold_their_shards_on_cuda(one_gpu_ray, monkeypatch):
    """The pool's resource arithmetic with Ray's calls injected: each of 2 actors asks for
    half the GPU (bundle and actor), is told to hold its shard on cuda, and the pool's
    per-example work computes there (``PerExample.device``)."""
    import sys

    import ray
    import ray.util.placement_group  # noqa: F401  (the module; ray.util's name is its function)

    from raypkg.distributed import shard_pool as SP
    from raypkg.selection.embeddings import PerExample

    pg = sys.modules["ray.util.placement_group"]
    asked = {"bundles": None, "options": [], "devices": []}

    class Group:
        def wait(self, timeout):
            return True

    def placement_group(bundles, strategy):
        asked["bundles"] = bundles
        return Group()

    class Handle:
        def __init__(self, shard, threads, device):
            asked["devices"].append(device)
            self.node = type("M", (), {"remote": staticmethod(lambda: "node-1")})()

    class Remote:
        def options(self, **kw):
            asked["options"].append(kw)
            return type("R", (), {"remote": staticmethod(Handle)})()

    monkeypatch.setattr(pg, "placement_group", placement_group)
    monkeypatch.setattr(pg, "remove_placement_group", lambda group: None)
    monkeypatch.setattr(ray, "remote", lambda cls: Remote())
    monkeypatch.setattr(ray, "get", lambda refs: refs)
    monkeypatch.setattr(ray, "kill", lambda actor: None)
    monkeypatch.setattr("raypkg.distributed.cluster.connect_ray", lambda *a, **k: "local")
    data = load_dataset("digits", seed=0).train
    with SP.open_pool(data, 2, use_gpu=None) as pool:
        assert pool.device == "cuda" and asked["devices"] == ["cuda", "cuda"]
        assert asked["bundles"] == [{"CPU": 0.9, "GPU": 0.5}] * 2
        assert [o["num_gpus"] for o in asked["options"]] == [0.5, 0.5]
        assert PerExample(data, pool).device == "cuda"
    asked.update(options=[], devices=[])
    with SP.open_pool(data, 2, use_gpu=False) as pool:  # --cpu
        assert pool.device == "cpu" and asked["devices"] == ["cpu", "cpu"]
        assert asked["bundles"] == [{"CPU": 0.9}] * 2 and [o["num_gpus"] for o in asked["options"]] == [0.0, 0.0]
        assert PerExample(data, pool).device == "cpu"


def test_a_shard_actor_on_the_cpu_returns_what_the_in_process_path_does():
    from raypkg.distributed.shard_pool import ShardActor, map_in_process
    from raypkg.models.registry import build_model
    from raypkg.selection.embeddings import shard_logits_features

    data = load_dataset("digits", seed=0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    actor = ShardActor(data.train, 1, "cpu")
    out = actor.run(shard_logits_features, model, "cpu", "fp32")
    assert out["z"].device.type == "cpu"
    assert torch.equal(out["z"], map_in_process(shard_logits_features, data.train, model, "cpu", "fp32")["z"])


@pytest.mark.parametrize("base, share", [({}, 0.5), ({"use_gpu": False}, None)])
def test_tune_trials_ask_for_a_gpu_share_when_they_train_in_their_own_process(one_gpu_ray, base, share):
    from raypkg.tuning import trial_resources

    assert trial_resources(base, 2) == {"cpu": 1, **({"gpu": share} if share else {})}


@pytest.mark.parametrize("space, search, samples, most, cpus, concurrent", [
    ({}, "random", 2, None, 2, 2),
    ({}, "random", 4, None, 2, 2),  # one per CPU
    ({"lr": {"grid": [0.1, 0.2, 0.3]}}, "random", 1, None, 8, 3),
    ({"lr": {"choice": [0.1, 0.2]}}, "grid", 2, None, 8, 4),
    ({"lr": {"choice": [0.1, 0.2]}}, "random", 2, 1, 8, 1),
])
def test_concurrent_trials(space, search, samples, most, cpus, concurrent):
    from raypkg.tuning import concurrent_trials

    assert concurrent_trials(space, search, samples, most, cpus) == concurrent
