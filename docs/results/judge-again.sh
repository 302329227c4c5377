#!/bin/bash
# Every stored frontier judged again from its stored rows on today's clock and statistics (issue 77:
# rows with an unsound clock named and left out, each point's seconds to its accuracy capped at the
# curve's target, words read off the 95% interval with n): each `--merge` reads the rows and replaces
# the frontier's tables in place; nothing is trained. Then the comparisons of timed-alone and packed
# runs from the re-judged summaries (the wall times are the runs' own, from their logs), the three
# candidate statistics side by side (statistic/compare.py), the README's
# verdicts table with its forest plot, and every docs table rendered anew.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=docs/results
for stem in $(ls $R/frontier-*.parquet $R/time-alone/*.parquet | grep -v -e '-summary' -e '-seed[0-9]' -e '-deltagrad' \
              | sed 's/\.parquet$//'); do
  seeds=$(ls ${stem}-seed[0-9].parquet 2>/dev/null || true)  # a frontier stored a seed a file: its seeds
  merged=$(for f in ${seeds:-$stem.parquet}; do echo --merge $f; done)
  effray bench frontier $merged --wandb disabled --save $stem > /dev/null
done
tmp=$(mktemp -d)  # the benches write there: deleting a tracked table first would dirty its provenance
COMPARE="python $R/frontier-slots/compare.py"
$COMPARE $R/frontier-fashion-mnist-mlp-1slot $R/frontier-fashion-mnist-mlp $tmp/slots-fashion-mnist-mlp 2333 1819 > /dev/null
$COMPARE $R/time-alone/serial $R/time-alone/packed-only $tmp/time-alone-digits-mlp-packed 358 243 > /dev/null
$COMPARE $R/time-alone/serial $R/time-alone/packed $tmp/time-alone-digits-mlp-alone 358 640 > /dev/null
$COMPARE $R/frontier-fashion-mnist-mlp-alone $R/frontier-fashion-mnist-mlp $tmp/time-alone-fashion-mnist-mlp 2537 1819 \
  > /dev/null
python $R/statistic/compare.py $tmp/statistic-choice fashion-mnist:mlp=$R/frontier-fashion-mnist-mlp-alone.parquet \
  fashion-mnist:lenet5=$R/frontier-fashion-mnist-lenet5.parquet \
  'fashion-mnist:resnet20 2k=docs/results/frontier-fashion-mnist-resnet20-2k.parquet' \
  'resnet20 2k bf16=docs/results/frontier-resnet20-families.parquet' \
  'resnet20 2k AVX2=docs/results/frontier-resnet20-linear.parquet' > /dev/null
effray bench verdicts fashion-mnist:mlp=$R/frontier-fashion-mnist-mlp-alone-summary.parquet \
  fashion-mnist:lenet5=$R/frontier-fashion-mnist-lenet5-summary.parquet \
  'fashion-mnist:resnet20 2k=docs/results/frontier-fashion-mnist-resnet20-2k-summary.parquet' \
  'resnet20 2k bf16=docs/results/frontier-resnet20-families-summary.parquet' \
  'resnet20 2k AVX2=docs/results/frontier-resnet20-linear-summary.parquet' --wandb disabled --save $tmp/verdicts
cp $tmp/*.parquet $tmp/verdicts.png $R/
python -m raypkg.tracking.markdown README.md docs/*.md docs/methods/*.md
