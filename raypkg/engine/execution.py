"""How the engine executes a model: its precision and its memory layout, chosen by measurement.
(Over 400 lines: the measuring policy, its cache and the decision are one contract, tested
together in tests/unit/test_execution.py.)

``--precision auto|fp32|bf16`` and ``--memory-format auto|contiguous|channels_last`` are
one engine setting every method inherits (as Composer's ``precision`` is a trainer
setting, not an algorithm). ``bf16`` is autocast: parameters, optimizer state, batch-norm
statistics and the loss stay fp32; matmuls and convolutions run in bf16.

What ``auto`` chooses belongs to the machine, not to the run (``decide``):

- The candidates: bf16 beside fp32 where the device computes bf16 natively (CUDA, or a CPU
  with ``avx512_bf16`` or ``amx_bf16``; on an AVX2-only CPU bf16 runs 4-500x slower, pytorch
  #146508, #183815: fp32, nothing timed; a flag above an ISA cap set in the environment
  does not count: ``isa_capped``), and channels_last for convolutional models only.
  On CUDA too bf16 is timed, not assumed: a small model is bound by kernel launches there,
  and autocast's casts are more launches (ResNet-20 at batch 128 on an H100: a step 7.3 ms
  in fp32, 8.1-9.1 ms in bf16; docs/operations.md, "GPUs").
- With more than one candidate, ``measure`` times one training step (forward + backward)
  of each on a real batch, by ``raypkg.timing``'s policy with a stop rule: ``WARMUPS``
  untimed steps each first (first-call costs: oneDNN primitives, allocator), then rounds
  that step every candidate once, interleaved (A B C, C B A, ...), until every pair is
  *settled* or the cap is reached.
- Two candidates are *apart* when their medians differ by more than half the sum of their
  interquartile ranges (the middle halves of their samples do not overlap around the
  medians); a pair is *settled* when it is apart or its medians are within ``MARGIN`` of
  each other (a tie, which more rounds would not turn into a 5% gain).
- ``choose``: candidate C *beats* D when C's median is more than ``MARGIN`` below D's and
  they are apart. The choice is the first candidate, in the order fp32/contiguous,
  fp32/channels_last, bf16/contiguous, bf16/channels_last, that no other beats. A pair
  still unsettled at the cap beats nothing, so noise keeps a run on the simpler execution,
  and fp32/contiguous when nothing is clear.
- The choice is stored in a per-user cache (``ExecutionCache``: ``$EFFRAY_CACHE_DIR`` or
  ``~/.cache/effray``, file ``execution.json``), keyed by the CPU model or GPU name, the
  CPU's flags, torch's version and threads, the device, the model, the input shape, the
  batch size and the candidates. Every later run with that key reuses it and says so on
  its first line; ``effray execution`` lists the cache and ``--clear`` empties it. Two
  runs that measure one key at once both run the first choice stored (``keep``).

It is decided once per run, on the driver, before Ray starts (``Recipe.run``;
``resolve_for_data``), and written into the run's config (``config.yaml`` says ``bf16``,
not ``auto``), so ``--config`` repeats the run exactly. The engine takes the decided
config: ``fit`` refuses ``auto``, and Ray Train workers and shard actors get the config
and model as decided.

The execution travels as arguments, never on the model. ``to_memory_format`` lays the
4-D weights out once (``fit``, the Ray Train worker). Every pass that trains or scores takes
the precision explicitly and runs under ``autocast(precision, device)``: the engine loop
and ``evaluate`` (``cfg.precision``), selection's forward and embedding passes
(``select(..., scoring=Scoring(precision=))``, also on shard actors), CREST's checks,
AGC's snapshots, selective backprop's scoring and the proxy's step (``ctx.cfg.precision``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from raypkg.errors import UsageError
from raypkg.timing import iqr, round_order

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")  # environment caps on the kernels' ISA
MARGIN = 0.05  # a candidate must be >= 5% faster (median) than another to beat it
WARMUPS = 2  # untimed steps per candidate before any timing
MIN_ROUNDS = 5  # timed steps per candidate at least ...
MAX_ROUNDS = 40  # ... and at most (the cap) ...
MAX_SECONDS = 30.0  # ... or until the timed rounds have taken this long (the cap)
PLAIN = ("fp32", "contiguous")
CACHE_VERSION = 1  # a change to how choices are measured makes older entries miss
ENTRY_KEYS = ("precision", "memory_format", "medians_ms", "iqr_ms", "rounds", "settled", "measured_at")

Pair = tuple[str, str]

# Every execution a run of this process trained at, "model precision/memory_format": a
# stored result names them in its provenance (``raypkg.tracking.provenance.executions``).
TRAINED_AT: set[str] = set()


def cpu_flags() -> set[str]:
    """The CPU's feature flags the kernels may use: ``/proc/cpuinfo``'s (empty where it cannot
    be read), less those above an ISA cap in the environment (``isa_capped``). A cap the
    kernels ignore is said once, on stderr (``ignored_caps``)."""
    for line in ignored_caps(os.environ):
        _warn_once(line)
    line = _cpuinfo_line(("flags", "Features"))
    return isa_capped(set(line.split()), os.environ)


# The values oneDNN (case-insensitive) and ATen (exact) take, and the CPU flags above each:
# checked with torch 2.14 on an AMX CPU (ONEDNN_VERBOSE's isa line, torch.backends.cpu.
# get_cpu_capability). Any other value is ignored by the kernels (ATen warns, oneDNN is silent).
_AVX2_AND_BELOW = ("avx512", "amx")
ONEDNN_ISAS = {**dict.fromkeys(("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"), _AVX2_AND_BELOW),
               **dict.fromkeys(("AVX512_CORE", "AVX512_CORE_VNNI"), ("avx512_bf16", "amx")),
               **dict.fromkeys(("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"), ("amx",)),
               **dict.fromkeys(("AVX512_CORE_AMX", "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16",
                                "AVX10_1_512_AMX_FP16", "DEFAULT", "ALL"), ())}
ATEN_CAPABILITIES = {"default": _AVX2_AND_BELOW, "avx2": _AVX2_AND_BELOW, "avx512": ()}


def _caps(environ) -> tuple[tuple[str, str], tuple[str, str]]:
    """(name, value) of the oneDNN cap in force (``ONEDNN_MAX_CPU_ISA``, else the older
    ``DNNL_MAX_CPU_ISA``, as oneDNN reads them) and of ATen's; value empty where unset."""
    onednn = next(((n, environ[n]) for n in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA") if environ.get(n)),
                  ("ONEDNN_MAX_CPU_ISA", ""))
    return onednn, ("ATEN_CPU_CAPABILITY", environ.get("ATEN_CPU_CAPABILITY") or "")


def isa_capped(flags: set[str], environ) -> set[str]:
    """``flags`` less those oneDNN (``ONEDNN_MAX_CPU_ISA``, formerly ``DNNL_MAX_CPU_ISA``) or
    ATen (``ATEN_CPU_CAPABILITY``) is told not to use. With ``ONEDNN_MAX_CPU_ISA=AVX2
    ATEN_CPU_CAPABILITY=avx2`` an AVX-512 BF16 CPU computes as an AVX2-only one does (bf16
    4-15x slower than fp32: docs/operations.md), so ``auto`` must treat it as one, and a
    stored result must not name flags its kernels did not use. A value the kernels do not
    know caps nothing, as in the kernels (``ignored_caps``)."""
    (_, onednn), (_, aten) = _caps(environ)
    above = ONEDNN_ISAS.get(onednn.upper(), ()) + ATEN_CAPABILITIES.get(aten, ())
    return {f for f in flags if not f.startswith(above)} if above else set(flags)


def ignored_caps(environ) -> list[str]:
    """One line per ISA cap in ``environ`` that the kernels ignore (a value they do not
    know), saying that effray ignores it too."""
    (onednn_name, onednn), (aten_name, aten) = _caps(environ)
    lines = []
    if onednn and onednn.upper() not in ONEDNN_ISAS:
        lines.append(f"{onednn_name}={onednn!r} is not an ISA oneDNN knows ({', '.join(ONEDNN_ISAS)}): the "
                     "kernels ignore it and use every ISA of this CPU, and so does effray")
    if aten and aten not in ATEN_CAPABILITIES:
        lines.append(f"{aten_name}={aten!r} is not a capability ATen knows ({', '.join(ATEN_CAPABILITIES)}, "
                     "exactly so): the kernels ignore it and use every ISA of this CPU, and so does effray")
    return lines


@functools.cache
def _warn_once(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor where it cannot be read)."""
    import platform

    return _cpuinfo_line(("model name", "Model", "CPU part")).strip() or platform.processor() or "unknown"


def cpu_generation() -> str:
    """The CPU's family and model numbers (``family 25 model 17``: ``/proc/cpuinfo``), which tell
    apart CPUs of one model name (a VM's ``AMD EPYC`` may be any of its generations); ``""`` where
    it cannot be read."""
    first = _cpuinfo().split("\n\n")[0]  # the first processor's block
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first.splitlines())}
    return f"family {fields['cpu family']} model {fields['model']}" if {"cpu family", "model"} <= fields.keys() else ""


def _cpuinfo() -> str:
    """``/proc/cpuinfo``'s text; ``""`` where it cannot be read."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpuinfo_line(keys: tuple[str, ...]) -> str:
    line = next((line for line in _cpuinfo().splitlines() if line.startswith(keys)), "")
    return line.partition(":")[2]


def bf16_native(device_type: str, flags: set[str] | None = None) -> bool:
    """Whether ``device_type`` computes bf16 natively: CUDA, or a CPU with AVX512-BF16 or AMX."""
    if device_type == "cuda":
        return True
    return device_type == "cpu" and bool(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))


def is_convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def check_memory_format(cfg, convolutional: bool | None, where: str = "") -> None:
    """The one check of ``memory_format`` against the model, whatever the entry point (a
    flag, a config file, ``raypkg.run``, a tune space's base or trials): channels_last on a
    model without convolution would lay out nothing, so it is refused, not silently a
    no-op. ``convolutional`` None: not known (a plug-in model not yet built), no check.
    ``where`` says where the value came from, for the line."""
    if cfg.memory_format == "channels_last" and convolutional is False:
        raise UsageError(f"memory-format channels_last{where} lays out convolution weights, and model {cfg.model} has none; use auto or "
                         "contiguous")


@functools.cache
def model_is_convolutional(name: str) -> bool | None:
    """Whether model ``name`` has a convolution, known before any data loads: it is built on
    a 3x32x32 input (a registered model's layers do not depend on the input's size); None
    for a model that does not build so (a plug-in for other inputs)."""
    from raypkg.models.registry import build_model

    try:
        with torch.random.fork_rng(devices=[]):
            return is_convolutional(build_model(name, (3, 32, 32), 10))
    except Exception:  # noqa: BLE001  (a plug-in's own error: the run's own check reports it)
        return None


def label(pair: Pair) -> str:
    return "/".join(pair)


@dataclass(frozen=True)
class CompileChoice:
    """Whether the training step runs compiled (``on``/``off``), and why: ``source`` is
    ``set``, ``measured`` or ``cache`` as for ``Execution``; ``step_ms`` the median step
    eager and compiled, ``compile_s`` what compiling took, ``steps`` the run's steps the
    saving was weighed over."""

    compile: str
    source: str
    reason: str = ""
    step_ms: dict[str, float] = field(default_factory=dict)
    compile_s: float = 0.0
    steps: int = 0

    def describe(self) -> str:
        if self.source == "set":
            return f"compile {self.compile} ({self.reason})"
        timed = "measured by this run" if self.source == "measured" else "from the cache"
        return f"compile {self.compile} ({timed}: {self.reason})"

    def summary(self) -> dict[str, Any]:
        return {"compile": self.compile, "compile_source": self.source, "compile_step_ms": dict(self.step_ms),
                "compile_s": self.compile_s}


@dataclass(frozen=True)
class Execution:
    """What ``auto`` chose, and why. ``source``: ``measured`` (timed in this run),
    ``cache`` (a choice this machine measured before) or ``set`` (nothing to time:
    ``reason`` says why); ``medians_ms`` and ``iqr_ms`` are the measured step times by
    ``precision/memory_format``."""

    precision: str = "fp32"
    memory_format: str = "contiguous"
    source: str = "set"
    reason: str = ""
    medians_ms: dict[str, float] = field(default_factory=dict)
    iqr_ms: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    settled: bool = True
    measure_s: float = 0.0  # the measurement's own seconds (0 when reused from the cache)
    measured_at: str = ""  # when this machine measured it (ISO date)
    cached: bool = True  # measured: whether the cache keeps it (else the next run measures again)
    compile: CompileChoice | None = None  # decided after the precision and memory format (``decide_compile``)

    def describe(self) -> str:
        """The run's first line: ``execution: bf16, channels_last (from the cache: ...)``."""
        times = ", ".join(f"{k} {v:.1f} ms" for k, v in self.medians_ms.items())
        unsettled = "" if self.settled else ", not settled at the cap"
        if self.source == "cache":
            why = f"from the cache, measured {self.measured_at}: median step {times}{unsettled}"
        elif self.source == "measured":
            took = f"{self.measure_s:.2f} s" if self.measure_s >= 0.1 else f"{1000 * self.measure_s:.1f} ms"
            why = f"measured by this run in {took}, {self.rounds} rounds: median step {times}{unsettled}; {'' if self.cached else 'not '}cached"
        else:
            why = self.reason
        compiled = f"; {self.compile.describe()}" if self.compile else ""
        return f"execution: {self.precision}, {self.memory_format}" + (f" ({why})" if why else "") + compiled

    def summary(self) -> dict[str, Any]:
        return {"precision": self.precision, "memory_format": self.memory_format, "execution_source": self.source,
                "execution_medians_ms": dict(self.medians_ms), "execution_measure_s": self.measure_s,
                **(self.compile.summary() if self.compile else {})}


def candidates(precision: str, memory_format: str, device_type: str, convolutional: bool,
               flags: set[str] | None = None) -> tuple[list[Pair], str]:
    """The (precision, memory format) pairs ``auto`` may pick, in ``ORDER`` (simplest
    first), and a reason when the settings leave only one."""
    reasons = []
    precisions = [precision]
    if precision == "auto" and bf16_native(device_type, flags):
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


@dataclass(frozen=True)
class Measurement:
    """Each candidate's timed step seconds, in the order they were taken."""

    samples: dict[Pair, list[float]]
    rounds: int
    seconds: float

    def medians(self) -> dict[Pair, float]:
        return {pair: statistics.median(s) for pair, s in self.samples.items()}

    def iqrs(self) -> dict[Pair, float]:
        return {pair: iqr(s) for pair, s in self.samples.items()}


def apart(a: list[float], b: list[float]) -> bool:
    """Whether the medians differ by more than half the sum of the interquartile ranges."""
    return abs(statistics.median(a) - statistics.median(b)) > (iqr(a) + iqr(b)) / 2


def beats(a: list[float], b: list[float], margin: float = MARGIN) -> bool:
    """Whether samples ``a`` are clearly faster than ``b``: a median more than ``margin``
    below, and apart."""
    return statistics.median(a) < statistics.median(b) * (1 - margin) and apart(a, b)


def settled(samples: dict[Pair, list[float]], margin: float = MARGIN) -> bool:
    """Whether every pair of candidates is apart or tied within ``margin``."""
    pairs = list(samples)
    for i, a in enumerate(pairs):
        for b in pairs[i + 1:]:
            ma, mb = statistics.median(samples[a]), statistics.median(samples[b])
            if not apart(samples[a], samples[b]) and abs(ma - mb) > margin * min(ma, mb):
                return False
    return True


def choose(samples: dict[Pair, list[float]], margin: float = MARGIN) -> Pair:
    """The first candidate (``samples``' order) that no other candidate beats."""
    return next(pair for pair in samples
                if not any(beats(samples[other], samples[pair], margin) for other in samples if other != pair))


def measure(steps: dict[Pair, Callable[[], Any]], *, clock: Callable[[], float] = time.perf_counter,
            warmups: int = WARMUPS, min_rounds: int = MIN_ROUNDS, max_rounds: int = MAX_ROUNDS,
            max_seconds: float = MAX_SECONDS) -> Measurement:
    """Time each candidate's ``step``: ``warmups`` untimed calls each, then interleaved
    rounds (the order reversed every other round, so no candidate always runs after the
    same one) until every pair is settled (after ``min_rounds``) or the cap is reached."""
    pairs = list(steps)
    for pair in pairs:
        for _ in range(warmups):
            steps[pair]()
    samples: dict[Pair, list[float]] = {pair: [] for pair in pairs}
    started = clock()
    rounds = 0
    while rounds < max_rounds:
        for pair in round_order(pairs, rounds):
            t0 = clock()
            steps[pair]()
            samples[pair].append(clock() - t0)
        rounds += 1
        if rounds >= min_rounds and (settled(samples) or clock() - started >= max_seconds):
            break
    return Measurement(samples, rounds, clock() - started)


def to_memory_format(model: nn.Module, memory_format: str) -> nn.Module:
    """Lay ``model``'s 4-D weights out in ``memory_format`` (channels_last or contiguous); in place."""
    model.to(memory_format=torch.channels_last if memory_format == "channels_last" else torch.contiguous_format)
    return model


def autocast(precision: str, device: torch.device | str) -> ContextManager:
    """bf16 autocast on ``device`` at precision ``bf16``; nothing at ``fp32``."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"a pass runs a decided precision (fp32 or bf16), got {precision!r}")
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def reproducible_kernels(device: torch.device) -> None:
    """On a GPU, kernels that a seed repeats: cuDNN's deterministic convolution algorithms,
    chosen without autotuning, and no TF32 inside fp32 (fp32 computes in fp32, as on the
    CPU). The CPU's kernels already repeat."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def compile_module(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` compiled whole (``fullgraph``: a graph break is an error, not a silent
    eager fallback); on CUDA with CUDA graphs (``reduce-overhead``: a forward or backward
    pass is one graph replay, not a few hundred launches). Its forward marks a new step
    for the CUDA graphs first, so each step may overwrite the last step's outputs."""
    mode = COMPILE_MODES.get(device.type) if COMPILE_BACKEND == "inductor" else None
    return CompiledForward(torch.compile(module, fullgraph=True, backend=COMPILE_BACKEND, mode=mode))


COMPILE_MODES = {"cuda": "reduce-overhead"}  # elsewhere inductor's default mode
# torch.compile's backend. The CPU tests use "aot_eager" (Dynamo's graph and AOTAutograd's
# joint graph, run by the eager kernels: the same arithmetic in seconds, not inductor's minute).
COMPILE_BACKEND = "inductor"


class CompiledForward(nn.Module):
    """The forward pass through ``compiled`` (``torch.compile``'s wrapper of the module):
    what ``fit`` runs when ``compile`` is on. Train/eval mode reaches the module through it."""

    def __init__(self, compiled: nn.Module):
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def step_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pair: Pair, compiled: bool = False,
            ) -> Callable[[], None]:
    """One forward + backward of a copy of ``model`` on the batch (x, y) at ``pair``'s
    precision and memory format, through ``compile_module`` when ``compiled``."""
    precision, memory_format = pair
    net = to_memory_format(copy.deepcopy(model), memory_format)
    forward = compile_module(net, x.device) if compiled else net
    cuda = x.device.type == "cuda"

    def step():
        with autocast(precision, x.device):
            loss = F.cross_entropy(forward(x).float(), y)
        loss.backward()
        net.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
    return step


@contextmanager
def training_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   pairs: list[Pair]) -> Iterator[dict[Pair, Callable[[], None]]]:
    """``step_of`` each candidate (``probing``: ``model`` and the RNG left as they were)."""
    with probing(x.device):
        yield {pair: step_of(model, x, y, pair) for pair in pairs}


@contextmanager
def probing(device: torch.device) -> Iterator[None]:
    """Where a probe times steps: the kernels ``fit`` will run (``reproducible_kernels``), and
    the RNG as it was after."""
    reproducible_kernels(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield


def cache_dir() -> Path:
    """effray's per-user cache: ``$EFFRAY_CACHE_DIR``, else ``$XDG_CACHE_HOME/effray``, else ``~/.cache/effray``."""
    if os.environ.get("EFFRAY_CACHE_DIR"):
        return Path(os.environ["EFFRAY_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "effray"


class ExecutionCache:
    """This machine's execution choices, one JSON file shared by every process of the user
    (read and written under an exclusive lock, replaced atomically)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else cache_dir() / "execution.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def unusable(self) -> str | None:
        """Why no cache can be kept at ``path`` (its directory is a file or not writable, or a
        directory stands where the file belongs), else None."""
        from raypkg.paths import check_writable_dir

        if self.path.is_dir():
            return f"execution cache {str(self.path)!r} is a directory, not a file"
        try:
            check_writable_dir(self.path.parent, "execution cache", shown=self.path)
        except UsageError as e:
            return str(e)
        return None

    def entries(self, strict: bool = False) -> dict[str, dict]:
        """Every stored choice by its key: empty where there is no cache, and where it cannot
        be read or is damaged (a run then measures again and replaces it, said once on
        stderr), unless ``strict``: then a UsageError that says why (``effray execution``)."""
        try:
            stored = json.loads(self.path.read_text())
            choices = stored.get("choices") if isinstance(stored, dict) else None
            if not isinstance(choices, dict) or not all(isinstance(e, dict) and set(ENTRY_KEYS) <= set(e)
                                                        for e in choices.values()):
                raise ValueError("not the JSON effray writes")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0][:80]
            if not strict:
                if self.path.is_file():  # a directory in its place, or none to hold it: keep says so
                    _warn_once(f"the execution cache {str(self.path)!r} could not be read ({why}); this run "
                               "measures again and replaces it")
                return {}
            fix = "" if isinstance(e, OSError) else "; `effray execution --clear` removes it"
            raise UsageError(f"cannot read the execution cache {str(self.path)!r} ({why}){fix}") from None
        return choices

    def get(self, key: str) -> dict | None:
        return self.entries().get(key)

    def keep(self, key: str, entry: dict) -> dict | None:
        """Store ``entry`` under ``key`` unless a choice is there already (another process
        measured the same key meanwhile: the first choice stays the machine's, so runs that
        started together still agree); the stored choice. Where the cache cannot be written:
        None, nothing left behind, and one warning line (once per process)."""
        problem = self.unusable()
        if problem is None:
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            try:
                with self._locked():
                    choices = self.entries()
                    if key in choices:
                        return choices[key]
                    tmp.write_text(json.dumps({"version": CACHE_VERSION, "choices": {**choices, key: entry}},
                                              indent=1))
                    tmp.replace(self.path)
                    return entry
            except OSError as e:
                with suppress(OSError):
                    tmp.unlink(missing_ok=True)
                problem = f"{self.path}: {e.strerror or e}"
        _warn_once(f"the execution choice is not cached ({problem}); each run measures it again")
        return None

    def clear(self) -> int:
        """Forget every choice; returns how many there were. A cache that cannot be cleared
        is a UsageError, before anything is written."""
        problem = self.unusable()
        if problem:
            raise UsageError(f"{problem}; nothing cleared")
        if not self.path.exists():
            return 0
        with self._locked():
            count = len(self.entries())
            self.path.unlink(missing_ok=True)
        return count


def cache_key(model: str, input_shape: tuple[int, ...], batch_size: int, device: torch.device, pairs: list[Pair],
              flags: set[str] | None = None) -> str:
    """What a choice depends on: the machine (CPU model or GPU name, the CPU's flags,
    torch's version and threads, the device), the model, one example's shape, the batch
    size and the candidates."""
    flags = cpu_flags() if flags is None else flags
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    digest = hashlib.sha1(" ".join(sorted(flags)).encode()).hexdigest()[:12]
    parts = {"v": CACHE_VERSION, "device": device.type, "hardware": hardware, "flags": digest,
             "torch": torch.__version__, "threads": torch.get_num_threads(), "model": model,
             "input": "x".join(map(str, input_shape)), "batch": batch_size, "candidates": ",".join(map(label, pairs))}
    return "|".join(f"{k}={v}" for k, v in parts.items())


def decide(key: str, steps: Callable[[], ContextManager[dict[Pair, Callable[[], None]]]],
           cache: ExecutionCache | None = None, measurer: Callable[..., Measurement] = measure) -> Execution:
    """The cached choice for ``key``, else a new ``measure`` of ``steps()``'s candidates,
    chosen (``choose``) and stored."""
    cache = cache or ExecutionCache()
    entry = cache.get(key)
    if entry is not None:
        return from_cache(entry)
    with steps() as candidate_steps:
        measured = measurer(candidate_steps)
    chosen = choose(measured.samples)
    execution = Execution(*chosen, "measured", medians_ms={label(k): 1000 * v for k, v in measured.medians().items()},
                          iqr_ms={label(k): 1000 * v for k, v in measured.iqrs().items()}, rounds=measured.rounds,
                          settled=settled(measured.samples), measure_s=measured.seconds,
                          measured_at=datetime.date.today().isoformat())
    entry = {"precision": execution.precision, "memory_format": execution.memory_format,
             "medians_ms": execution.medians_ms, "iqr_ms": execution.iqr_ms, "rounds": execution.rounds,
             "settled": execution.settled, "measured_at": execution.measured_at}
    stored = cache.keep(key, entry)
    if stored is None:
        return dataclasses.replace(execution, cached=False)
    return execution if stored == entry else from_cache(stored)


def from_cache(entry: dict) -> Execution:
    return Execution(entry["precision"], entry["memory_format"], "cache", medians_ms=entry["medians_ms"],
                     iqr_ms=entry["iqr_ms"], rounds=entry["rounds"], settled=entry["settled"],
                     measured_at=entry["measured_at"])


# Compiling on a CPU did not pay where it was timed (ResNet-20, bf16 + channels_last, 1 thread:
# a step 1.08x faster after 30-53 s of compiling; fp32 gained nothing), so ``auto`` times it
# on a GPU only.
CPU_COMPILE_REASON = "auto on a CPU: compiling did not pay there (docs/operations.md, \"GPUs\")"


def compiles(cfg, device: torch.device) -> bool:
    """Whether ``fit`` compiles the step: ``on``; ``auto`` only where nothing needs timing (a
    CPU: off); ``auto`` on a GPU must be decided first (``resolve_execution``)."""
    setting = getattr(cfg, "compile", "off")
    if setting == "auto" and device.type == "cuda":
        raise ValueError("fit runs a decided execution: decide compile once, before training "
                         "(raypkg.engine.execution.resolve_for_data), or set it")
    return setting == "on"


def measure_compile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pair: Pair,
                    measurer: Callable[..., Measurement] = measure) -> dict:
    """A cache entry for ``pair``'s step eager and compiled: their medians and interquartile
    ranges, and ``compile_s``, the compiled step's first three calls (compiling, and on CUDA
    recording the graphs); ``breaks`` the error of a model that does not compile whole."""
    with probing(x.device):
        eager, compiled = step_of(model, x, y, pair), step_of(model, x, y, pair, compiled=True)
        started = time.perf_counter()
        try:
            for _ in range(3):
                compiled()
        except Exception as e:  # noqa: BLE001  (any failure to compile keeps the step eager)
            why = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            return {**compile_entry(pair, Measurement({}, 0, 0.0)), "breaks": f"{type(e).__name__}: {why[:160]}"}
        compile_s = time.perf_counter() - started
        measured = measurer({("eager", label(pair)): eager, ("compiled", label(pair)): compiled})
    return {**compile_entry(pair, measured), "compile_s": compile_s, "breaks": ""}


def compile_entry(pair: Pair, measured: Measurement) -> dict:
    return {"precision": pair[0], "memory_format": pair[1], "rounds": measured.rounds,
            "medians_ms": {k[0]: 1000 * v for k, v in measured.medians().items()},
            "iqr_ms": {k[0]: 1000 * v for k, v in measured.iqrs().items()},
            "settled": settled(measured.samples) if measured.samples else True,
            "measured_at": datetime.date.today().isoformat(), "compile_s": 0.0, "breaks": ""}


def weigh_compile(entry: dict, steps: int, source: str) -> CompileChoice:
    """``on`` when the compiled step beats the eager one (``beats``' rule, on the stored
    medians and interquartile ranges) and the time it saves over ``steps`` steps exceeds
    the compile time, which the run pays; else ``off``, saying which failed."""
    if entry["breaks"]:
        return CompileChoice("off", source, f"the model does not compile whole: {entry['breaks']}")
    (eager, compiled), spread = (entry["medians_ms"][k] for k in ("eager", "compiled")), entry["iqr_ms"]
    saving_s = (eager - compiled) * steps / 1000
    faster = compiled < eager * (1 - MARGIN) and abs(eager - compiled) > (spread["eager"] + spread["compiled"]) / 2
    on = faster and saving_s > entry["compile_s"]
    verdict = (f"step {compiled:.2f} ms compiled, {eager:.2f} ms eager; "
               + (f"saves {saving_s:.1f} s over {steps} steps against {entry['compile_s']:.1f} s of compiling"
                  if faster else "not faster by 5%"))
    return CompileChoice("on" if on else "off", source, verdict, {"eager": eager, "compiled": compiled},
                         entry["compile_s"], steps)


# The least a compile of the training step took where it was measured (the MLP on an H100,
# 2026-11-27: 5.9 s; ResNet-20: 16.9 s): a run whose whole eager training is shorter
# cannot repay it, whatever the compiled step's speed.
MIN_COMPILE_S = 5.0


def too_short_to_compile(steps: int, eager_ms: float) -> bool:
    """Whether ``steps`` eager steps of ``eager_ms`` take less than ``MIN_COMPILE_S``: the
    most compiling could save is the whole of that time."""
    return steps * eager_ms / 1000 < MIN_COMPILE_S


def decide_compile(cfg, model: nn.Module, x: torch.Tensor, y: torch.Tensor, pair: Pair, steps: int, *,
                   eager_ms: float | None = None, flags: set[str] | None = None, cache: ExecutionCache | None = None,
                   measurer: Callable[..., Measurement] = measure) -> CompileChoice:
    """``cfg.compile`` for a run of ``steps`` steps of ``model`` at ``pair`` on batches like
    (x, y): as set; ``auto`` off on a CPU, untimed; on a GPU, this machine's measurement
    (``measure_compile``, cached as the other choices are) weighed over the run
    (``weigh_compile``), unless nothing is cached and the whole run, at ``eager_ms`` a step
    (the precision probe's median, where it ran), is too short to repay any compile
    (``too_short_to_compile``): then off, and nothing is compiled to find out."""
    if cfg.compile != "auto":
        return CompileChoice(cfg.compile, "set", "as set")
    if x.device.type != "cuda":
        return CompileChoice("off", "set", CPU_COMPILE_REASON)
    cache = cache or ExecutionCache()
    key = cache_key(str(cfg.model), tuple(x.shape[1:]), len(x), x.device, [pair], flags) + "|compile"
    entry, source = cache.get(key), "cache"
    if entry is None and eager_ms is not None and too_short_to_compile(steps, eager_ms):
        return CompileChoice("off", "set", f"this run's {steps} steps take about {steps * eager_ms / 1000:.1f} s "
                                           f"eager, under the {MIN_COMPILE_S:g} s compiling takes at least")
    if entry is None:
        entry, source = measure_compile(model, x, y, pair, measurer), "measured"
        entry = cache.keep(key, entry) or entry
    return weigh_compile(entry, steps, source)


def resolve_execution(cfg, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 0,
                      flags: set[str] | None = None, cache: ExecutionCache | None = None,
                      measurer: Callable[..., Measurement] = measure) -> tuple[Any, Execution]:
    """``cfg`` with ``precision``, ``memory_format`` and ``compile`` decided (``auto`` replaced
    by the choice) for ``model`` training ``steps`` steps on batches like (x, y), and that
    ``Execution`` (``flags``, ``cache`` and ``measurer``: this machine's, unless a test
    injects them). Compiling is weighed last, at the chosen precision and memory format."""
    convolutional = is_convolutional(model)
    check_memory_format(cfg, convolutional)
    pairs, reason = candidates(cfg.precision, cfg.memory_format, x.device.type, convolutional, flags)
    if len(pairs) == 1:
        execution = Execution(*pairs[0], reason=reason or "as set")
    else:
        key = cache_key(str(cfg.model), tuple(x.shape[1:]), len(x), x.device, pairs, flags)
        execution = decide(key, lambda: training_steps(model, x, y, pairs), cache, measurer)
    pair = (execution.precision, execution.memory_format)
    compiled = decide_compile(cfg, model, x, y, pair, steps, eager_ms=execution.medians_ms.get(label(pair)),
                              flags=flags, cache=cache, measurer=measurer)
    execution = dataclasses.replace(execution, compile=compiled)
    decided = dataclasses.replace(cfg, precision=pair[0], memory_format=pair[1], compile=compiled.compile)
    return note_trained_at(decided), execution


def note_trained_at(cfg):
    """``cfg``, its decided execution noted in ``TRAINED_AT`` (what a stored result names)."""
    compiled = ", compiled" if getattr(cfg, "compile", "off") == "on" else ""
    TRAINED_AT.add(f"{cfg.model} {cfg.precision}/{cfg.memory_format}{compiled}")
    return cfg


def decide_threads(cfg):
    """``cfg`` with its torch threads decided (``threads``), once, on the driver (``Recipe.run``,
    before the run's config is written): the threads that train, in this process (--workers 0,
    ``training_threads``) and in each Ray Train worker alike (``ray_train._run``), so one command
    sums in one order, and gives the same losses, in either placement. Given, as given; else
    this process's count (torch's: its cores, or $OMP_NUM_THREADS; a bench's --threads; a Tune
    trial's 1), shared evenly by N > 1 workers. Configs without the setting pass through."""
    if not hasattr(cfg, "precision") or getattr(cfg, "threads", None):
        return cfg
    return dataclasses.replace(cfg, threads=max(1, torch.get_num_threads() // max(cfg.workers, 1)))


@contextmanager
def training_threads(cfg) -> Iterator[None]:
    """This process computes with ``cfg.threads`` torch threads in the block when it trains
    (--workers 0), as a Ray Train worker does; its own count again after."""
    before = torch.get_num_threads()
    if getattr(cfg, "threads", None) and not getattr(cfg, "workers", 0):
        torch.set_num_threads(cfg.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_for_data(cfg, data, device: torch.device, **injected) -> tuple[Any, Execution]:
    """``resolve_execution`` for a fresh ``cfg.model`` on the first batch of ``data.train``
    (the RNG left as it was); configs without these settings pass through. ``injected``:
    ``resolve_execution``'s flags, cache and measurer."""
    if not hasattr(cfg, "precision"):
        return cfg, Execution(reason="not a training config")
    from raypkg.models.registry import build_model

    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    batch = min(cfg.batch_size, len(data.train))
    steps = cfg.for_training().epochs * max(len(data.train) // cfg.batch_size, 1)  # a subset's run takes fewer
    return resolve_execution(cfg, model, data.train.x[:batch].to(device), data.train.y[:batch].to(device),
                             steps=steps, **injected)
