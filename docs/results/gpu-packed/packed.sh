#!/bin/bash
# Packed throughput (issue 71, item 5): K `effray train` processes on one GPU at once, ResNet-20 on
# Fashion-MNIST at batch 128, fp32, each process a seed of its own. Torch only (the GPU machine has no
# Ray or W&B). Carried: .data/fmnist/*.gz (Debian's four files). GPU=--cpu rehearses it on a CPU.
# Each K's epochs go to $OUT/packed-epochs$TAG.csv as soon as its processes end (a timeout keeps them).
# MPS=1 runs them under CUDA's Multi-Process Service (kernels of several processes at once; without it
# the GPU time-slices between the processes' contexts); its epochs go to packed-epochs-mps.csv.
set -o pipefail
export PYTHONUNBUFFERED=1 EFFRAY_WANDB_MODE=disabled EFFRAY_CACHE_DIR=/tmp/effray-cache OMP_NUM_THREADS=1 \
       TORCHINDUCTOR_COMPILE_THREADS=1
OUT=${OUT:-/tmp/outP}; GPU=${GPU:---gpu}; PY=${PY:-python3}; EPOCHS=${EPOCHS:-4}
RUNS=${RUNS:-/tmp/packed-runs}; EXTRA=${EXTRA:-}; TAG=""
if [ "${MPS:-0}" = 1 ]; then
  TAG=-mps RUNS=$RUNS-mps; export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY && nvidia-cuda-mps-control -d || { echo "no MPS"; exit 3; }
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
mkdir -p "$OUT" "$RUNS" /usr/share/datasets/fashion-mnist && cp -n .data/fmnist/*.gz /usr/share/datasets/fashion-mnist/
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null; echo "cores $(nproc --all)"
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
} 2>&1 | tee "$OUT/gpu.txt"
# "COMPILE:K" pairs, in order: compiled first (the faster single point, the harder one to pack)
for pair in ${PAIRS:-on:1 on:4 on:8 on:16 off:1 off:8}; do
  compile=${pair%%:*}; k=${pair##*:}; echo "== compile $compile, K=$k  $(date -u +%T)"
  for ((i = 0; i < k; i++)); do
    $PY -m raypkg.cli train --dataset fashion-mnist --model resnet20 --batch-size 128 --epochs "$EPOCHS" \
      --seed "$i" $GPU --compile "$compile" --precision fp32 --memory-format contiguous --no-progress \
      --wandb disabled --out "$RUNS" --name "c$compile-k$k-p$i" $EXTRA > "$RUNS/c$compile-k$k-p$i.log" 2>&1 &
  done
  wait
  grep -h "^error\|Error" "$RUNS"/c$compile-k$k-p*.log | head -3
  $PY docs/results/gpu-packed/packed.py collect "$RUNS" "$OUT/packed-epochs$TAG.csv" || exit 1
done
cp "$RUNS/con-k1-p0.log" "$OUT/one-run.log" 2>/dev/null
echo "== done $(date -u +%T)"
