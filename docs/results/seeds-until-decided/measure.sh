#!/bin/bash
# Seeds until decided against fixed seeds (issue 82, part 5), measured: the fashion-mnist:mlp frontier as
# typed (the preset's seeds until decided: 3 seeds, then up to 5) against --seeds 5 --max-seeds 5 (5
# fixed seeds), each with every point timed alone (the default, one at a time), one after the other,
# nothing else running; each run's wall time from the clock around it.
#   OUT=/tmp/sud bash docs/results/seeds-until-decided/measure.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-/tmp/seeds-until-decided}
mkdir -p "$OUT"
t0=$(date +%s)
effray bench frontier --setup fashion-mnist:mlp --save "$OUT/frontier-fashion-mnist-mlp-until-decided" \
  > "$OUT/until-decided.log" 2>&1
t1=$(date +%s)
effray bench frontier --setup fashion-mnist:mlp --seeds 5 --max-seeds 5 --save "$OUT/frontier-fashion-mnist-mlp-fixed" \
  > "$OUT/fixed.log" 2>&1
t2=$(date +%s)
python docs/results/seeds-until-decided/compare.py "$OUT/frontier-fashion-mnist-mlp-fixed" $((t2 - t1)) \
  "$OUT/frontier-fashion-mnist-mlp-until-decided" $((t1 - t0)) "$OUT/seeds-until-decided"
