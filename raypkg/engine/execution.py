"""How the engine executes a model: its precision and its memory layout, chosen by measurement.

``--precision auto|fp32|bf16`` and ``--memory-format auto|contiguous|channels_last`` are
one engine setting every method inherits (as Composer's ``precision`` is a trainer
setting, not an algorithm). ``bf16`` is autocast: parameters, optimizer state, batch-norm
statistics and the loss stay fp32; matmuls and convolutions run in bf16.

``auto`` is decided once per run (``resolve_execution``), before any phase:

- bf16 is a candidate where the device computes it natively: CUDA (always chosen there,
  as the GPU path always has), or a CPU with ``avx512_bf16`` or ``amx_bf16``. On an
  AVX2-only CPU bf16 runs 4-500x slower (pytorch #146508, #183815): fp32, with no probe.
- channels_last is a candidate for convolutional models only.
- With more than one candidate, a timed forward + backward on one real training batch
  (``probe``) picks the fastest; a candidate other than fp32/contiguous must beat it by
  ``MARGIN``, so timing noise never moves a run off the plain path.

The choice is written into the run's config (``config.yaml`` says ``bf16``, not ``auto``),
so ``--config`` repeats the run exactly, and the probe's times go into summary.json.

A model prepared for an execution (``prepare``) carries it: its 4-D weights in the chosen
layout and ``model.precision``, which every pass that trains or scores reads through
``autocast(model)``: the engine loop and evaluation, selection's forward and embedding
passes (also on shard actors, which receive the model), CREST's checks, AGC's snapshots
and InfoBatch's scores.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from raypkg.errors import UsageError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MARGIN = 0.05  # a candidate other than fp32/contiguous must be >= 5% faster to be chosen
PROBE_REPEATS = 1  # timed steps per candidate, after one warm-up (ResNet-20 presets: ~1.9 s in all)
PLAIN = ("fp32", "contiguous")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def bf16_native(device_type: str, flags: set[str] | None = None) -> bool:
    """Whether ``device_type`` computes bf16 natively: CUDA, or a CPU with AVX512-BF16 or AMX."""
    if device_type == "cuda":
        return True
    return device_type == "cpu" and bool(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))


def is_convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass(frozen=True)
class Execution:
    """What ``auto`` chose, and why: ``probe_ms`` is each timed candidate's forward +
    backward in ms, by ``precision/memory_format`` (empty: nothing was timed)."""

    precision: str = "fp32"
    memory_format: str = "contiguous"
    probe_ms: dict[str, float] = field(default_factory=dict)
    probe_s: float = 0.0  # the probe's own seconds
    reason: str = ""

    def describe(self) -> str:
        """The run's first line: ``execution: bf16, channels_last (probe: ...)``."""
        times = ", ".join(f"{k} {v:.1f} ms" for k, v in self.probe_ms.items())
        why = f"probe {self.probe_s:.2f} s: {times}" if times else self.reason
        return f"execution: {self.precision}, {self.memory_format}" + (f" ({why})" if why else "")

    def summary(self) -> dict[str, Any]:
        return {"precision": self.precision, "memory_format": self.memory_format,
                "execution_probe_ms": dict(self.probe_ms), "execution_probe_s": self.probe_s}


def candidates(precision: str, memory_format: str, device_type: str, convolutional: bool,
               flags: set[str] | None = None) -> tuple[list[tuple[str, str]], str]:
    """The (precision, memory format) pairs ``auto`` may pick, fp32/contiguous first when
    it is one, and a reason when the settings leave only one."""
    reasons = []
    precisions = [precision]
    if precision == "auto" and device_type == "cuda":
        precisions = ["bf16"]
        reasons.append("bf16 on CUDA")
    elif precision == "auto" and bf16_native(device_type, flags):
        precisions = ["fp32", "bf16"]
    elif precision == "auto":
        precisions = ["fp32"]
        reasons.append("this CPU has no avx512_bf16/amx_bf16")
    formats = [memory_format]
    if memory_format == "auto" and convolutional:
        formats = ["contiguous", "channels_last"]
    elif memory_format == "auto":
        formats = ["contiguous"]
        reasons.append("no convolution")
    return [(p, m) for p in precisions for m in formats], "; ".join(reasons)


def choose(times: dict[tuple[str, str], float], margin: float = MARGIN) -> tuple[str, str]:
    """The fastest candidate, where one other than fp32/contiguous must beat fp32/contiguous
    (when timed) by ``margin``; ties go to the first."""
    plain = times.get(PLAIN)
    best = min(times, key=times.get)
    if plain is not None and best != PLAIN and times[best] > plain * (1 - margin):
        return PLAIN
    return best


def prepare(model: nn.Module, precision: str, memory_format: str) -> nn.Module:
    """Put ``model`` in ``memory_format`` and have it carry ``precision`` (``autocast``); in place."""
    if memory_format == "channels_last":
        model.to(memory_format=torch.channels_last)
    elif memory_format == "contiguous" and getattr(model, "memory_format", "contiguous") != "contiguous":
        model.to(memory_format=torch.contiguous_format)
    model.precision, model.memory_format = precision, memory_format
    return model


def autocast(model: nn.Module) -> ContextManager:
    """bf16 autocast on the model's device when it was prepared for bf16, else nothing."""
    if getattr(model, "precision", "fp32") != "bf16":
        return nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16)


def time_ms(step: Callable[[], Any], repeats: int = PROBE_REPEATS, pick=min) -> float:
    """``step``'s milliseconds, ``pick`` of ``repeats`` timed calls after one warm-up."""
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return 1000 * pick(seconds[1:])


def median_ms(step: Callable[[], Any], repeats: int) -> float:
    return time_ms(step, repeats, statistics.median)


def probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
          pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Forward + backward ms of a copy of ``model`` on the batch (x, y), per candidate
    (``model`` itself and the RNG are left as they were)."""
    cuda = x.device.type == "cuda"
    times = {}
    with torch.random.fork_rng(devices=[x.device] if cuda else []):
        for precision, memory_format in pairs:
            net = prepare(copy.deepcopy(model), precision, memory_format)

            def step():
                with autocast(net):
                    loss = F.cross_entropy(net(x).float(), y)
                loss.backward()
                net.zero_grad(set_to_none=True)
                if cuda:
                    torch.cuda.synchronize()
            times[(precision, memory_format)] = time_ms(step)
    return times


_CHOSEN: dict[tuple, Execution] = {}  # one probe per model, batch shape and machine setting in a process


def resolve_execution(cfg, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                      flags: set[str] | None = None) -> tuple[Any, Execution]:
    """``cfg`` with ``precision`` and ``memory_format`` decided (``auto`` replaced by the
    choice) for ``model`` training on batches like (x, y), and that ``Execution``."""
    convolutional = is_convolutional(model)
    if cfg.memory_format == "channels_last" and not convolutional:  # it would lay out nothing: no silent no-op
        raise UsageError(f"--memory-format channels_last lays out convolution weights, and model {cfg.model} has "
                         "none; use auto or contiguous")
    pairs, reason = candidates(cfg.precision, cfg.memory_format, x.device.type, convolutional, flags)
    if len(pairs) == 1:
        execution = Execution(*pairs[0], reason=reason or "as set")
    else:
        key = (cfg.model, tuple(x.shape), x.device.type, torch.get_num_threads(), tuple(pairs))
        if key not in _CHOSEN:
            started = time.perf_counter()
            times = probe(model, x, y, pairs)
            _CHOSEN[key] = Execution(*choose(times), {"/".join(k): v for k, v in times.items()},
                                     time.perf_counter() - started)
        execution = _CHOSEN[key]
    return dataclasses.replace(cfg, precision=execution.precision, memory_format=execution.memory_format), execution


def resolve_for_data(cfg, data, device: torch.device, *, flags: set[str] | None = None) -> tuple[Any, Execution]:
    """``resolve_execution`` for a fresh ``cfg.model`` on the first batch of ``data.train``
    (the RNG left as it was); configs without these settings pass through."""
    if not hasattr(cfg, "precision"):
        return cfg, Execution(reason="not a training config")
    from raypkg.models.registry import build_model

    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    batch = min(cfg.batch_size, len(data.train))
    return resolve_execution(cfg, model, data.train.x[:batch].to(device), data.train.y[:batch].to(device),
                             flags=flags)
