"""DeltaGrad as a Ray Job: `effray unlearn ...` with the same subcommands and flags.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/deltagrad.py train --dataset digits-aug --model logreg --batch-size 16384 \
        --epochs 20 --lr 0.1 0.05 --lrlen 10 10 --wd 1e-4 --out /abs/path/runs --name dg
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/deltagrad.py delete /abs/path/runs/dg --ratio 0.001 --period 5 --init 20 -m 2 --actors 2

The recipe (raypkg.methods.deltagrad): `train` runs plain SGD and caches w_t, g_t, lr_t and the
minibatch order (memory-mapped); `delete` / `add` replay it with DeltaGrad and with the
baseline retrain side by side, the exact gradients of explicit steps as partial sums on
--actors shard actors of the cluster; `online` serves a stream of requests. Without a
cluster it runs locally (Ray starts only for --actors > 0).
"""

import sys

from raypkg.jobs_support import run_job

if __name__ == "__main__":
    run_job("unlearn", sys.argv[1:])
