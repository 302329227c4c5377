#!/bin/bash
# Every stored frontier judged again from its stored rows on today's clock and statistics (issue 77:
# rows with an unsound clock named and left out, each point's seconds to its accuracy capped at the
# curve's target, words read off the 95% interval with n), in two stages, each from a clean commit so
# that every table's provenance names a clean tree:
#   bash docs/results/judge-again.sh frontiers   # each `--merge` of a frontier's rows (nothing is trained),
#                                                # written aside and copied in at the end; then commit
#   bash docs/results/judge-again.sh tables      # from the re-judged summaries: the timed-alone and slots
#                                                # comparisons (the wall times are the runs' own, from their
#                                                # logs), the candidate statistics, the curve's bracket and
#                                                # its budget rules, the README's verdicts with
#                                                # their forest plot; then every docs table rendered anew
#   bash docs/results/judge-again.sh verdicts    # the README's verdicts alone (after a frontier's new points),
#                                                # then every docs table rendered anew
set -euo pipefail
cd "$(dirname "$0")/../.."
R=docs/results
tmp=$(mktemp -d)  # every result is written aside: one written in place would dirty the next one's provenance
verdicts_then_docs() {
  # The README's verdicts: the columns timed alone on a measured clock (issue 82: the MLP; issue 80: CIFAR-10);
  # every column, headed by its data, model and training-set size, in docs/results.md
  MLP="fashion-mnist 60k mlp=$R/frontier-fashion-mnist-mlp-alone-summary.parquet"
  CIFAR10="cifar10 50k resnet20=$R/frontier-cifar10-resnet20-cpu-summary.parquet"
  effray bench verdicts "$MLP" "$CIFAR10" --wandb disabled --save $tmp/verdicts
  effray bench verdicts "$MLP" "$CIFAR10" "fashion-mnist 60k lenet5=$R/frontier-fashion-mnist-lenet5-summary.parquet" \
    "fashion-mnist 2k resnet20=$R/frontier-fashion-mnist-resnet20-2k-summary.parquet" \
    "digits-aug 2k resnet20 bf16=$R/frontier-resnet20-families-summary.parquet" \
    "digits-aug 2k resnet20 AVX2=$R/frontier-resnet20-linear-summary.parquet" --wandb disabled \
    --save $tmp/verdicts-every-setup
  cp $tmp/*.parquet $tmp/verdicts.png $tmp/verdicts-every-setup.png $R/
  python -m raypkg.tracking.markdown README.md docs/*.md docs/methods/*.md $R/curve-bracket.md
}
case "${1:-}" in
frontiers)
  for stem in $(ls $R/frontier-*.parquet $R/time-alone/*.parquet | grep -v -e '-summary' -e '-seed[0-9]' \
                -e '-deltagrad' | sed 's/\.parquet$//'); do
    [ -d "$stem-points" ] && continue  # a stored store: `--render` judges it with its planned cells, a merge would not
    seeds=$(ls ${stem}-seed[0-9].parquet 2>/dev/null || true)  # a frontier stored a seed a file: its seeds
    merged=$(for f in ${seeds:-$stem.parquet}; do echo --merge $f; done)
    mkdir -p $tmp/$(dirname $stem)
    effray bench frontier $merged --wandb disabled --save $tmp/$stem > /dev/null
  done
  cp -r $tmp/$R/. $R/ ;;
tables)
  COMPARE="python $R/frontier-slots/compare.py"
  $COMPARE $R/frontier-fashion-mnist-mlp-1slot $R/frontier-fashion-mnist-mlp $tmp/slots-fashion-mnist-mlp 2333 1819 \
    > /dev/null
  $COMPARE $R/time-alone/serial $R/time-alone/packed-only $tmp/time-alone-digits-mlp-packed 358 243 > /dev/null
  $COMPARE $R/time-alone/serial $R/time-alone/packed $tmp/time-alone-digits-mlp-alone 358 640 > /dev/null
  $COMPARE $R/frontier-fashion-mnist-mlp-alone $R/frontier-fashion-mnist-mlp $tmp/time-alone-fashion-mnist-mlp 2537 \
    1819 > /dev/null
  python $R/statistic/compare.py $tmp/statistic-choice fashion-mnist:mlp=$R/frontier-fashion-mnist-mlp-alone.parquet \
    fashion-mnist:lenet5=$R/frontier-fashion-mnist-lenet5.parquet \
    'fashion-mnist:resnet20 2k=docs/results/frontier-fashion-mnist-resnet20-2k.parquet' \
    'resnet20 2k bf16=docs/results/frontier-resnet20-families.parquet' \
    'resnet20 2k AVX2=docs/results/frontier-resnet20-linear.parquet' > /dev/null
  python $R/statistic/bracket.py $tmp/curve-bracket fashion-mnist:mlp=$R/frontier-fashion-mnist-mlp-alone.parquet \
    fashion-mnist:lenet5=$R/frontier-fashion-mnist-lenet5.parquet \
    'fashion-mnist:resnet20 2k=docs/results/frontier-fashion-mnist-resnet20-2k.parquet' \
    'resnet20 2k bf16=docs/results/frontier-resnet20-families.parquet' \
    'resnet20 2k AVX2=docs/results/frontier-resnet20-linear.parquet' > /dev/null
  verdicts_then_docs ;;
verdicts)
  verdicts_then_docs ;;
*)
  echo "usage: bash docs/results/judge-again.sh frontiers|tables|verdicts (a commit after frontiers)" >&2
  exit 2 ;;
esac
