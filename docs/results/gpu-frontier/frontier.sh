#!/bin/bash
# The fashion-mnist:resnet20 frontier at full size on a lent GPU (issue 71, item 5), resumed across device
# calls: each call runs the points not yet stored until TIME_S, then copies the store to $OUT. Bring the
# store back between calls (copy $OUT/store to .device/store here and carry it: carry [".device", ".data"]);
# the next call goes on from it. One GPU: --slots 1 runs the points one after another in this process, each
# alone on the card (timed alone), so neither Ray nor W&B is needed on the GPU machine. The data comes from
# .data/fmnist/*.gz (Debian's four files).
#   device:    OUT=$OUT bash docs/results/gpu-frontier/frontier.sh
#   rehearse:  OUT=/tmp/gf ARGS="--train-size 2000 --test-size 500 --epochs 2 --seeds 1 --methods infobatch,rs2 \
#              --fractions 0.3 --budgets 0.5" bash docs/results/gpu-frontier/frontier.sh
# With every point stored, the tables are written here from the carried store, at a clean commit:
#   effray bench frontier --setup fashion-mnist:resnet20 --slots 1 --threads 4 --storage .device/store --render \
#     --wandb disabled --save docs/results/frontier-fashion-mnist-resnet20
# (the device's git metadata can be stale, so its own tables are drafts: EFFRAY_DRAFT).
set -o pipefail
export PYTHONUNBUFFERED=1 EFFRAY_CACHE_DIR=/tmp/effray-cache EFFRAY_DRAFT=${EFFRAY_DRAFT:-1}
OUT=${OUT:-/tmp/gf}; STORE=${STORE:-.device/store}; TIME_S=${TIME_S:-480}; ARGS=${ARGS:-}; THREADS=${THREADS:-4}
mkdir -p "$OUT" "$STORE" /usr/share/datasets/fashion-mnist && cp -n .data/fmnist/*.gz /usr/share/datasets/fashion-mnist/
{ date -u; git log -1 --format='HEAD %H' 2>/dev/null; nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
} 2>&1 | tee -a "$OUT/provenance.txt"
timeout "$TIME_S" python3 -m raypkg.cli bench frontier --setup fashion-mnist:resnet20 --slots 1 --threads "$THREADS" \
  --storage "$STORE" --wandb disabled --save "$OUT/frontier-fashion-mnist-resnet20" $ARGS 2>&1 | tee "$OUT/frontier.log" \
  | grep -E "^frontier:|^# frontier|^error|Error" | tail -5
rc=${PIPESTATUS[0]}; echo "rc $rc$([ "$rc" = 124 ] && echo ': TIME_S ran out; the next call goes on from the store')"
cp -r "$STORE" "$OUT/store"
