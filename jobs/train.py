"""Full-data training as a Ray Job: the same run as `effray train`, same flags.

Submit it to a running cluster from the repository root (the dashboard address is the
one `ray start --head` prints, 8265 by default):

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py --dataset digits --model mlp --epochs 5 --out /abs/path/runs

`--working-dir .` ships this source tree to the job (it is the job's cwd and on its
PYTHONPATH); the packages effray needs come from the Python environment the head was
started from. Add `--workers 2` to train on Ray Train across the cluster. Without a
cluster, `python jobs/train.py --dataset digits --model mlp --epochs 5` runs locally.
"""

import sys

from raypkg.jobs_support import run_job

if __name__ == "__main__":
    run_job("train", sys.argv[1:])
