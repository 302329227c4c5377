"""The AVX-512 BF16 EPYC capped to AVX2 against the AVX2-only EPYC, on CIFAR-10's budget curve (seed 0):
each point's accuracy after every epoch, and its seconds (``e2e_s``, timed alone on each machine). Nothing
is trained.

    python docs/results/cifar10-capped-avx2/compare.py

The capped points (``points/``) were run on 2026-11-29 at 2b57617, one at a time, with ``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2`` (the command is in ``curve.parquet``'s provenance); the AVX2 ones are seed 0's
runs timed alone in the CIFAR-10 store (``frontier-cifar10-resnet20-cpu-points/alone/``)."""

import json
from pathlib import Path

HERE = Path(__file__).parent
AVX2 = HERE.parent / "frontier-cifar10-resnet20-cpu-points" / "alone"


def run(path: Path) -> dict:
    record = json.loads(path.read_text())
    return {**record["row"], "epochs": [epoch["test_acc"] for epoch in record["epochs"]]}


for point in sorted((HERE / "points").glob("*.json")):
    capped, avx2 = run(point), run(AVX2 / point.name)
    print(f"{capped['method']} {capped['setting']} ({capped['execution']}): every epoch's accuracy "
          f"{'the same' if capped['epochs'] == avx2['epochs'] else 'different'} ({capped['test_acc']} at the end); "
          f"{capped['e2e_s']:.1f} s capped against {avx2['e2e_s']:.1f} s on AVX2, {capped['e2e_s'] / avx2['e2e_s']:.2f}x")
