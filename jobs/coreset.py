"""DeepCore-style coreset training as a Ray Job: `effray run coreset` with the same flags.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/coreset.py --selection gradmatch --fraction 0.1 --dataset digits-aug \
        --pretrain-epochs 5 --epochs 30 --actors 2 --out /abs/path/runs

The recipe (raypkg.selection.pipeline): full-data warm-up for --pretrain-epochs epochs
(--repeats warm-ups for grand), selection with per-example work on --actors shard
actors of the cluster, then training on the weighted subset for --epochs epochs. The
run directory holds selection.parquet and summary.json with the warmup / selection /
train seconds. Without a cluster it runs locally.
"""

import sys

from raypkg.jobs_support import run_job

if __name__ == "__main__":
    run_job("run coreset", sys.argv[1:])
