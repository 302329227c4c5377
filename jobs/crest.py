"""CREST as a Ray Job: `effray run crest` with the same flags.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/crest.py --dataset digits-aug --train-frac 0.1 --epochs 10 --actors 2 --out /abs/path/runs

Coreset selection runs on --actors shard actors of the cluster (or, with --workers N,
on each Ray Train worker for its own rank). Without a cluster it runs locally.
"""

import sys

from raypkg.jobs_support import run_job

if __name__ == "__main__":
    run_job("run crest", sys.argv[1:])
