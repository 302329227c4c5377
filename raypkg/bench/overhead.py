"""`effray bench overhead`: what the engine and Ray Train cost over a plain PyTorch loop.

The same job several ways in one process, on the CPU or the GPU: a plain loop written here,
the engine without and with a callback on every event, Ray Train with 1 and 2 workers (each
per ``--placements`` value), each eager and, per ``--compile``, compiled
(``raypkg.engine.execution.compile_module``: on a GPU, CUDA graphs). On a GPU, also the
plain loop with cuDNN's autotuned algorithms (the engine runs its deterministic ones). Start-up:
wall time outside training epochs (compiling included); steady state: the median epoch
after the first (the warm-up); ``step_ms`` its mean step; ``steady_vs_plain`` against the plain
loop's of the same compile setting; ``floor_ms`` the step's FLOPs (3x the forward's:
``raypkg.models.flops``) at ``--peak-tflops``. First, the CLI's own start-up (`effray --help`,
`effray run lipt --help`, `python -c pass`; each run once untimed, then the median of N,
interleaved: ``raypkg.timing.measure``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import click
import pandas as pd
import torch
import torch.nn.functional as F

from raypkg.bench.harness import BenchRunner, bench_options
from raypkg.cli_options import address_option, check_bench_numbers, list_option, name_list, number_list
from raypkg.distributed.cluster import connect_ray
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import PLACEMENTS, TrainConfig
from raypkg.engine.execution import autocast, compile_module, reproducible_kernels, to_memory_format
from raypkg.engine.loop import evaluate, fit, pick_device, seed_everything
from raypkg.engine.ray_train import fit_on_ray_train
from raypkg.errors import UsageError
from raypkg.models.flops import TRAIN_STEP_FACTOR, flops_per_example
from raypkg.models.registry import build_model
from raypkg.plots import hbar
from raypkg.recipe import load_data
from raypkg.storage import check_storage, join, remove
from raypkg.timing import measure, steady_epoch_s, timed

CLI_COMMANDS = (["--help"], ["run", "lipt", "--help"])


def plain_loop(model, x, y, epochs: int, batch_size: int, lr: float, seed: int, compiled: bool = False,
               precision: str = "fp32", memory_format: str = "contiguous") -> list[float]:
    """The reference: the shortest honest PyTorch loop over tensors on the model's device
    (each epoch's order moved there once, full batches only, as the engine's default); its
    epoch seconds. ``compiled``: its forward through ``compile_module``, as the engine's;
    ``precision`` and ``memory_format`` as the engine runs them."""
    device = next(model.parameters()).device
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    to_memory_format(model, memory_format)
    forward = compile_module(model, device) if compiled else model

    def epoch(epoch_seed: int) -> None:
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch_seed)).to(device)
        for i in range(0, len(y) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            with autocast(precision, device):
                logits = forward(x[idx])
            loss = F.cross_entropy(logits.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return [timed(epoch, seed + e)[1] for e in range(epochs)]


def cli_startup(runs: int) -> list[tuple[str, float]]:
    """(command, median seconds as a new process over ``runs`` interleaved rounds, after an
    untimed run) for `python -c pass` and each of CLI_COMMANDS, run as a user runs them: the
    `effray` console script (else ``python -m``)."""
    script = Path(sys.executable).with_name("effray")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "raypkg.cli"]
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                **{" ".join(["effray", *args]): head + args for args in CLI_COMMANDS}}
    _, timings = measure({name: functools.partial(subprocess.run, command, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL, check=True)
                          for name, command in commands.items()}, runs)
    return [(name, timing.seconds) for name, timing in timings.items()]


class CountEvents(Callback):
    """Counts every event of the loop: the cheapest callback that still runs on each step."""

    def __init__(self):
        self.counts = {"after_backward": 0, "step_end": 0, "epoch": 0}

    def on_after_backward(self, ctx) -> None:
        self.counts["after_backward"] += 1

    def on_step_end(self, ctx) -> None:
        self.counts["step_end"] += 1

    def on_epoch_end(self, ctx, row: dict) -> None:
        self.counts["epoch"] += 1


@click.command()
@click.option("--dataset", default="digits-aug", show_default=True)
@click.option("--data-dir", default=None, help="Where a file dataset lies (e.g. fashion-mnist's FashionMNIST/raw/).")
@click.option("--model", default="mlp", show_default=True)
@click.option("--epochs", default=4, show_default=True, help="Epochs per variant (>= 2: the first is excluded).")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--train-size", type=int, default=None, help="Shrink digits-aug (default 60,000).")
@click.option("--gpu/--cpu", "use_gpu", default=None, help="Time on the GPU or the CPU (default: the GPU if present).")
@list_option("--compile", "compile_settings", default=None,
             help="Compile settings to time each variant at, comma-separated: off, on (default: off,on on a "
                  "GPU; off on a CPU, where compiling takes a minute).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Every variant's arithmetic (bf16: autocast).")
@click.option("--memory-format", type=click.Choice(["contiguous", "channels_last"]), default="contiguous",
              show_default=True, help="Every variant's layout (channels_last: convolutional models only).")
@click.option("--peak-tflops", type=float, default=None,
              help="The device's dense fp32 rate, for floor_ms (default: 67 on an H100, none elsewhere).")
@list_option("--workers", "worker_counts", default="1,2", show_default=True,
             help="Ray Train worker counts (0: no Ray Train rows).")
@list_option("--placements", default="pack", show_default=True,
              help="Ray Train placements to time, comma-separated: pack, spread, strict-pack, strict-spread.")
@click.option("--cpus-per-worker", type=float, default=None,
              help="CPUs per Ray Train worker (default: an even share of the cluster's).")
@click.option("--storage", default=None, help="Shared path or URI for the checkpoints (a cluster of several "
                                                 "nodes needs one); removed afterwards.")
@address_option
@click.option("--cli-runs", default=5, show_default=True,
              help="Timed runs of each `effray ... --help` start-up, after an untimed one (the median "
                   "counts; 0: skip them).")
@bench_options(threads=None, threads_help="torch threads of every training process, this one and each Ray Train "
                                          "worker (default: torch's choice here, the CPU share in a worker).")
def overhead(dataset, data_dir, model, epochs, batch_size, train_size, use_gpu, compile_settings, precision,
             memory_format, peak_tflops, worker_counts, threads, placements, cpus_per_worker, storage, cli_runs, save, wandb):
    """Plain PyTorch loop vs effray engine vs Ray Train (1 and 2 workers) on the same job,
    eager and compiled, after the start-up time of `effray --help` and `effray run lipt --help`.

    \b
    Example:
      effray bench overhead --epochs 4
      effray bench overhead --train-size 5000 --epochs 2 --workers 1   # a quick look
      effray bench overhead --gpu --model resnet20 --workers 0 --cli-runs 0   # the GPU step, eager and compiled
    """
    if epochs < 2:
        raise UsageError(f"--epochs must be >= 2 (the first epoch is excluded from the steady state), got {epochs}")
    check_bench_numbers(batch_size=batch_size, train_size=train_size, threads=threads, cli_runs=cli_runs)
    if peak_tflops is not None and not (math.isfinite(peak_tflops) and peak_tflops > 0):
        raise UsageError(f"--peak-tflops must be a rate > 0, got {peak_tflops:g}")
    worker_list = [w for w in number_list(worker_counts, "--workers", "worker counts", int, 0, "1,2") if w]
    placements = name_list(placements, "--placements", PLACEMENTS, "placement")
    device = pick_device(use_gpu)
    default_compile = "off,on" if device.type == "cuda" else "off"
    compile_list = name_list(compile_settings or default_compile, "--compile", ("off", "on"), "compile setting")
    check_storage(storage)
    cfg = TrainConfig(dataset=dataset, data_dir=data_dir, model=model, epochs=epochs, batch_size=batch_size,
                      lr=[0.05], schedule="constant", train_size=train_size,
                      test_size=2000 if train_size else None, use_gpu=device.type == "cuda", progress=False,
                      storage=storage, cpus_per_worker=cpus_per_worker,
                      precision=precision, memory_format=memory_format,  # the plain loop's too: overhead only
                      ).resolved().validate()
    runner = BenchRunner("overhead", save, threads, wandb)
    if cli_runs:  # first, before this process starts Ray and its workers load the machine
        timings = cli_startup(cli_runs)
        click.echo(f"CLI start-up, median of {cli_runs}: " + ", ".join(f"{c} {s:.2f}s" for c, s in timings))
    data = load_data(cfg)
    train, test = data.train.to(device), data.test.to(device)
    steps = len(train) // batch_size
    peak = peak_tflops or (known_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None)
    floor_ms = TRAIN_STEP_FACTOR * batch_size * flops_per_example(model, data)() / (peak * 1e9) if peak else None
    reproducible_kernels(device)  # the engine's kernels for every variant (fit sets them too)
    rows = []

    def add_variant(name: str, compiled: str, train_fn) -> None:
        """A row: ``train_fn(net)`` (-> its epoch seconds) on a fresh model, timed from the seed."""
        def seeded_run() -> tuple[torch.nn.Module, list[float]]:
            seed_everything(cfg.seed)
            net = build_model(model, data.input_shape, data.num_classes).to(device)
            return net, train_fn(net)

        (net, times), wall = timed(seeded_run)
        rows.append({"variant": name, "compile": compiled, "startup_s": wall - sum(times), "first_epoch_s": times[0],
                     "steady_epoch_s": steady_epoch_s(times), "step_ms": 1000 * steady_epoch_s(times) / steps,
                     "test_acc": evaluate(net, test, device, precision=precision)["acc"]})

    # One untimed step first: process-wide first-use costs (thread pools, allocator) go to no variant.
    plain_loop(build_model(model, data.input_shape, data.num_classes).to(device), train.x[:batch_size],
               train.y[:batch_size], 1, batch_size, cfg.lr[0], cfg.seed)
    connect_s = None
    for compiled in compile_list:
        on = compiled == "on"
        cfg.compile = compiled
        def plain(net):
            return plain_loop(net, train.x, train.y, epochs, batch_size, cfg.lr[0], cfg.seed, on, precision,
                              memory_format)

        add_variant("plain PyTorch loop", compiled, plain)
        if device.type == "cuda":
            with autotuned_cudnn():
                add_variant("plain PyTorch loop, cuDNN autotuned", compiled, plain)
        for name, callbacks in (("effray engine, in-process", []), ("effray engine + callback", [CountEvents()])):
            add_variant(name, compiled, lambda net: [r["epoch_s"] for r in fit(net, train, None, cfg,
                                                                               callbacks=callbacks)])
        if worker_list and connect_s is None:
            _, connect_s = timed(connect_ray)
        for workers in worker_list:
            for placement in placements:
                cfg.workers, cfg.placement, cfg.max_failures, nodes = workers, placement, 0, []  # no restart: timed

                def on_ray_train(net) -> list[float]:
                    with tempfile.TemporaryDirectory() as tmp:
                        where = join(storage, f"bench-overhead-{uuid.uuid4().hex[:8]}") if storage else Path(tmp)
                        try:
                            outcome = fit_on_ray_train(cfg, data, storage=where, threads=threads)
                        finally:
                            if storage:
                                remove(where)
                    net.load_state_dict(outcome.model_state)
                    nodes.extend(outcome.nodes)
                    return [r["epoch_s"] for r in outcome.history]

                add_variant(f"Ray Train, {workers} worker(s)", compiled, on_ray_train)
                if placements != ["pack"]:
                    rows[-1]["variant"] += f", {placement} ({len(set(nodes))} node(s))"
            cfg.workers = 0
    table = pd.DataFrame(rows)
    plain = table[table["variant"] == "plain PyTorch loop"].set_index("compile")["steady_epoch_s"]
    table["steady_vs_plain"] = table["steady_epoch_s"] / table["compile"].map(plain)
    if floor_ms is not None:
        table["floor_ms"] = floor_ms
        table["x_floor"] = table["step_ms"] / floor_ms
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    ray_note = f"; ray.init took {connect_s:.1f}s (not counted)" if connect_s is not None else ""
    floor_note = f"; floor {floor_ms:.3f} ms a step at {peak:g} TFLOP/s fp32" if floor_ms is not None else ""
    click.echo(f"{dataset} ({len(data.train)} train, {steps} steps an epoch), {model}, batch {batch_size}, "
               f"{epochs} epochs, {precision}/{memory_format}, on {where}; torch threads {runner.threads}{ray_note}"
               f"{floor_note}")
    table["label"] = table["variant"] + ", compile " + table["compile"]
    runner.finish(table.drop(columns="label"), [c for c in table.columns if c != "label"],
                  {c: ".3f" for c in table.columns},
                  title="steady-state epoch time / plain PyTorch loop",
                  plot=lambda frame, ax: hbar(table, ax, "label", ["steady_vs_plain"], "x plain loop"))


# Dense fp32 rates (no tensor cores, TF32 off: the engine's fp32), by a word of the device's
# name: NVIDIA's datasheets (H100 SXM 67, H200 67, A100 19.5).
PEAK_FP32_TFLOPS = {"H100": 67.0, "H200": 67.0, "A100": 19.5}


def known_peak(device_name: str) -> float | None:
    """The dense fp32 TFLOP/s of a GPU named ``device_name`` ("NVIDIA H100 80GB HBM3"), None
    for one not in ``PEAK_FP32_TFLOPS`` (then --peak-tflops gives it)."""
    words = {word.split("-")[0] for word in device_name.split()}  # "A100-SXM4-80GB" names an A100
    return next((rate for gpu, rate in PEAK_FP32_TFLOPS.items() if gpu in words), None)


@contextlib.contextmanager
def autotuned_cudnn():
    """cuDNN's fastest algorithms, autotuned, inside the block (the engine's deterministic
    ones after)."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
