"""LiPT as a Ray Job: `effray run lipt` with the same flags.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/lipt.py --selection grand --fraction 0.1 --dataset digits-aug \
        --shards 10 --pre-epochs 5 --density 0.05 --epochs 30 --workers 2 --out /abs/path/runs

Stage 1 is one Ray Train job of --workers workers training the --shards sparse shard
models (no gradient sync); stage 2 merges them; stage 3 selects with the merged model;
stage 4 trains the weighted subset with Ray Train DDP on --workers workers. The run
directory holds selection.parquet and summary.json (phases pretrain, merge, selection,
train; shard and merged test accuracies). Without a cluster it runs locally.
"""

import sys

from raypkg.jobs_support import run_job

if __name__ == "__main__":
    run_job("run lipt", sys.argv[1:])
