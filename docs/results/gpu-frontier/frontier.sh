#!/bin/bash
# The fashion-mnist:resnet20 frontier at full size on a lent GPU (issue 71, item 5), resumed across device
# calls: each call runs the points not yet stored until TIME_S, then copies the store to $OUT. Bring the
# store back between calls (copy $OUT/store to .device/store here and carry it: `carry: [".device", ".whl",
# ".data"]`); the next call goes on from it. Ray comes from the slimmed wheels in .whl/
# (docs/results/gpu-checks), the data from .data/fmnist/*.gz (Debian's four files).
#   device:    OUT=$OUT bash docs/results/gpu-frontier/frontier.sh
#   rehearse:  OUT=/tmp/gf ARGS="--train-size 2000 --test-size 500 --epochs 2 --seeds 1 --methods infobatch,rs2 \
#              --budgets 0.5" bash docs/results/gpu-frontier/frontier.sh
# With every point stored, `--render` (no Ray, no GPU) writes the tables from the store here.
set -o pipefail
export PYTHONUNBUFFERED=1 EFFRAY_CACHE_DIR=/tmp/effray-cache
OUT=${OUT:-/tmp/gf}; STORE=${STORE:-.device/store}; TIME_S=${TIME_S:-480}; ARGS=${ARGS:-}
mkdir -p "$OUT" "$STORE" /usr/share/datasets/fashion-mnist && cp -n .data/fmnist/*.gz /usr/share/datasets/fashion-mnist/
if ! python3 -c "import ray" 2>/dev/null; then  # the GPU machine: Ray from the carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
fi
{ date -u; git log -1 --format='HEAD %H' 2>/dev/null; nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
  python3 -c "import torch, ray; print('torch', torch.__version__, 'ray', ray.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
} 2>&1 | tee -a "$OUT/provenance.txt"
# One point a GPU (--points-per-gpu 1): each is timed alone on its card; the frontier's W&B runs stay off here.
timeout "$TIME_S" python3 -m raypkg.cli bench frontier --setup fashion-mnist:resnet20 --points-per-gpu 1 \
  --storage "$STORE" --wandb disabled --save "$OUT/frontier-fashion-mnist-resnet20" $ARGS 2>&1 | tee "$OUT/frontier.log" \
  | grep -E "^frontier:|^# frontier|^error|Error" | tail -5
echo "rc ${PIPESTATUS[0]} (124: TIME_S ran out; the next call goes on from the store)"
cp -r "$STORE" "$OUT/store"
