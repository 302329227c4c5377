#!/bin/bash
# --time-alone against --slots 1 (issue 71): one frontier three ways on this machine, nothing else beside it.
#   serial: --slots 1, every point alone, one after another in one process;
#   packed: --slots 2 (every core, points side by side), its tables kept as packed-only;
#   then the packed frontier again with --time-alone: each packed point timed once more alone.
# compare.py puts the serial run beside each (accuracies bit for bit, each ratio in the other's
# 95% interval, flips); the "all" row's wall times are the serial run's against the packed run's,
# and against the packed run's plus its alone pass.
#   OUT=/tmp/ta bash docs/results/time-alone/measure.sh
set -euo pipefail
OUT=${OUT:-/tmp/time-alone}
ARGS=${ARGS:---seeds 3 --threads 1 --methods infobatch,rs2,uniform,selective-backprop,layer-freezing,label-smoothing,ema,crest,rigl-itop --wandb disabled}
COMPARE="python $(dirname "$0")/../frontier-slots/compare.py"
mkdir -p "$OUT"
t0=$(date +%s); effray bench frontier $ARGS --slots 1 --save "$OUT/serial" > "$OUT/serial.log" 2>&1
t1=$(date +%s); effray bench frontier $ARGS --slots 2 --save "$OUT/packed" > "$OUT/packed.log" 2>&1
t2=$(date +%s)
cp "$OUT/packed.parquet" "$OUT/packed-only.parquet"; cp "$OUT/packed-summary.parquet" "$OUT/packed-only-summary.parquet"
effray bench frontier $ARGS --slots 2 --time-alone --save "$OUT/packed" > "$OUT/alone.log" 2>&1
t3=$(date +%s)
$COMPARE "$OUT/serial" "$OUT/packed-only" "$OUT/vs-packed" $((t1 - t0)) $((t2 - t1))
$COMPARE "$OUT/serial" "$OUT/packed" "$OUT/vs-alone" $((t1 - t0)) $((t3 - t1))
