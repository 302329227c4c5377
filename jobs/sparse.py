"""Sparse training (dense / SET-ITOP / RigL-ITOP, optionally with AGC) as a Ray Job: the
same run as `effray run sparse`, same flags.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/sparse.py --agc --dataset digits-aug --model lenet5 \
        --epochs 20 --workers 2 --out /abs/path/runs

Without a cluster, `python jobs/sparse.py --epochs 5` runs locally (RigL-ITOP; `--dense` for the baseline).
"""

import sys

from raypkg.jobs_support import run_job

if __name__ == "__main__":
    run_job("run", ["sparse", *sys.argv[1:]])
