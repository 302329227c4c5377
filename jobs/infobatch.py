"""InfoBatch as a Ray Job: `effray run infobatch` with the same flags.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/infobatch.py --dataset digits-aug --model resnet20 --epochs 10 --workers 2 --out /abs/path/runs

Without a cluster, `python jobs/infobatch.py --epochs 5` runs locally.
"""

import sys

from raypkg.jobs_support import run_job

if __name__ == "__main__":
    run_job("run infobatch", sys.argv[1:])
