#!/bin/bash
# Seeds until decided against fixed seeds (issue 82, part 5), measured: the fashion-mnist:mlp frontier as
# typed (the preset's seeds until decided: 3 seeds, then up to 7) against --seeds 5 --max-seeds 5 (5
# fixed seeds), each with every point timed alone (the default, one at a time), one after the other,
# nothing else running; each run's wall time from the clock around it.
#   OUT=/tmp/sud bash docs/results/seeds-until-decided/measure.sh
# MAX_SEEDS=K measures 3 seeds then up to K instead of the preset's (its files then named -kK):
#   MAX_SEEDS=5 OUT=/tmp/sud bash docs/results/seeds-until-decided/measure.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-/tmp/seeds-until-decided}
rule=() name=""
if [ -n "${MAX_SEEDS:-}" ]; then rule=(--max-seeds "$MAX_SEEDS") name="-k$MAX_SEEDS"; fi
mkdir -p "$OUT"
t0=$(date +%s)
effray bench frontier --setup fashion-mnist:mlp "${rule[@]}" --save "$OUT/frontier-fashion-mnist-mlp$name-until-decided" \
  > "$OUT/until-decided$name.log" 2>&1
t1=$(date +%s)
effray bench frontier --setup fashion-mnist:mlp --seeds 5 --max-seeds 5 --save "$OUT/frontier-fashion-mnist-mlp$name-fixed" \
  > "$OUT/fixed$name.log" 2>&1
t2=$(date +%s)
python docs/results/seeds-until-decided/compare.py "$OUT/frontier-fashion-mnist-mlp$name-fixed" $((t2 - t1)) \
  "$OUT/frontier-fashion-mnist-mlp$name-until-decided" $((t1 - t0)) "$OUT/seeds-until-decided$name"
