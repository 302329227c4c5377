#!/bin/bash
# Seeds until decided against 5 fixed seeds (issue 77, item 4): the fashion-mnist:mlp frontier with
# --seeds 3 --max-seeds 8, every point timed alone (the default), nothing else running, against the
# stored 5-seed run timed alone (frontier-fashion-mnist-mlp-alone: 2537 s, its log's wall time).
#   OUT=/tmp/sud bash docs/results/seeds-until-decided/measure.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-/tmp/seeds-until-decided}
METHODS=rs2,uniform,grand,glister,craig,el2n,grand-ccs,el2n-ccs,lipt-grand,lipt-glister,lipt-grand-ccs,crest,infobatch,rigl-itop,a-rigl-itop,label-smoothing,ema,selective-backprop,layer-freezing,proxy-selection
mkdir -p "$OUT"
t0=$(date +%s)
effray bench frontier --setup fashion-mnist:mlp --methods $METHODS --seeds 3 --max-seeds 8 \
  --save "$OUT/frontier-fashion-mnist-mlp-until-decided" > "$OUT/until-decided.log" 2>&1
t1=$(date +%s)
python docs/results/seeds-until-decided/compare.py docs/results/frontier-fashion-mnist-mlp-alone 2537 \
  "$OUT/frontier-fashion-mnist-mlp-until-decided" $((t1 - t0)) "$OUT/seeds-until-decided"
