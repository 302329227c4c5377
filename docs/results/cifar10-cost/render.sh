#!/bin/bash
# CIFAR-10's CPU frontier (issue 80) brought in from the store its driver writes: the store's points (not its
# driver.json lock, its empty failed/ folders nor its warm-ups' cache/), its rows, summary, epochs and plots
# rendered at this clean checkout's commit (`--render`: every family planned, so the summary shows the points
# still missing), and the cost table from them. Nothing is trained; it takes about 30 s of both cores, so run
# it with the driver stopped or in an untimed phase. Then commit, and judge the verdicts again from the new
# summary at that clean commit (`bash docs/results/judge-again.sh verdicts`).
#   bash docs/results/cifar10-cost/render.sh /tmp/wt-c10/docs/results/frontier-cifar10-resnet20-cpu-points
set -euo pipefail
live=$(realpath "${1:?usage: bash docs/results/cifar10-cost/render.sh LIVE_STORE (the -points folder its driver writes)}")
cd "$(dirname "$0")/../../.."
R=docs/results
STEM=frontier-cifar10-resnet20-cpu
[ -f "$live/frontier.json" ] || { echo "error: $live holds no frontier.json: not a frontier's store" >&2; exit 2; }
[ -z "$(git status --porcelain)" ] || { echo "error: the checkout is not clean: a render names a clean commit" >&2
                                        exit 2; }
# Its points (run at 2b57617) record no machine, but the host each ran on (`node`): seed 0's `vm`, an AVX2-only AMD
# EPYC (2026-11-28 and 29); the later seeds' `epyc-f25m17-capped-avx2`, an AVX-512 BF16 EPYC capped to AVX2
# (docs/results.md, "One seed, one clock"). The tables name those hosts (`point_machines`), so it renders anywhere.
# every method the store holds (seed 0 has them all), so that the summary plans each one's missing seeds
M=$(python -c "import json, pathlib, sys
rows = (json.loads(p.read_text())['row'] for p in pathlib.Path(sys.argv[1], 'points').glob('*.json'))
print(','.join(sorted({row['method'] for row in rows} - {'full', 'full-fp32'})))" "$live")
tmp=$(mktemp -d)  # written aside, copied in at the end: nothing half-written in docs/results
store() { cp -r "$live/." "$1/" && rm -rf "$1/driver.json" "$1"/failed* "$1/cache"; }  # not the warm-ups' cache
mkdir "$tmp/store" "$tmp/points" && store "$tmp/store" && store "$tmp/points"  # the render may write in its copy
effray bench frontier --setup cifar10:resnet20-cpu --methods $M --seeds 3 --max-seeds 7 --render \
  --storage "$tmp/store" --save "$tmp/$STEM" --wandb disabled > /dev/null
python $R/cifar10-cost/cost.py "$tmp/$STEM.parquet" "$tmp/$STEM-summary.parquet" "$tmp/cifar10-cpu-cost.parquet" \
  > /dev/null
cp -r "$tmp/points/." "$R/$STEM-points/"
cp "$tmp"/$STEM*.parquet "$tmp"/$STEM*.png "$tmp/cifar10-cpu-cost.parquet" $R/
python -m raypkg.tracking.markdown README.md docs/*.md docs/methods/*.md $R/curve-bracket.md
git status --short
