#!/bin/bash
# Every stored frontier judged again from its stored rows on today's clock and statistics (issue 71:
# per-epoch evaluation out of the seconds, geometric means with 95% t-intervals, Holm): each
# `--merge` reads the rows and replaces the frontier's tables in place; nothing is trained.
# Then the README's verdicts table from the summaries, and every docs table rendered anew.
set -euo pipefail
cd "$(dirname "$0")/../.."
R=docs/results
for stem in $(ls $R/frontier-*.parquet | grep -v -e '-summary' -e '-seed[0-9]' -e '-deltagrad' | sed 's/\.parquet$//'); do
  seeds=$(ls ${stem}-seed[0-9].parquet 2>/dev/null || true)  # a frontier stored a seed a file: its seeds
  merged=$(for f in ${seeds:-$stem.parquet}; do echo --merge $f; done)
  effray bench frontier $merged --wandb disabled --save $stem > /dev/null
done
tmp=$(mktemp -d)  # the verdicts bench writes there: deleting the tracked table first would dirty its provenance
effray bench verdicts fashion-mnist:mlp=$R/frontier-fashion-mnist-mlp-alone-summary.parquet \
  fashion-mnist:lenet5=$R/frontier-fashion-mnist-lenet5-summary.parquet \
  'fashion-mnist:resnet20 2k=docs/results/frontier-fashion-mnist-resnet20-2k-summary.parquet' \
  'resnet20 2k bf16=docs/results/frontier-resnet20-families-summary.parquet' \
  'resnet20 2k AVX2=docs/results/frontier-resnet20-linear-summary.parquet' --wandb disabled --save $tmp/verdicts
cp $tmp/verdicts.parquet $tmp/verdicts.png $R/
python -m raypkg.tracking.markdown README.md docs/*.md docs/methods/*.md
