#!/bin/bash
# Device phase A (torch only: Ray and W&B are not on the GPU machine). GPU=--cpu rehearses it here.
set -o pipefail
export PYTHONUNBUFFERED=1 EFFRAY_WANDB_MODE=disabled EFFRAY_CACHE_DIR=/tmp/effray-cache
OUT=${OUT:-/tmp/outA}; GPU=${GPU:---gpu}; PY=${PY:-python3}
mkdir -p "$OUT" /usr/share/datasets/fashion-mnist && cp -n .data/fmnist/*.gz /usr/share/datasets/fashion-mnist/
{ date -u; git log -1 --format='HEAD %H' 2>/dev/null; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null
  $PY -c "import torch,sys,os; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda', 'python', sys.version.split()[0], 'cpus', os.cpu_count(), 'threads', torch.get_num_threads())"; } 2>&1 | tee "$OUT/gpu.txt"
echo "== test_cuda (compile)"; timeout 180 $PY -m pytest -p no:cacheprovider -p no:randomly -n 0 -q tests/unit/test_cuda.py -k "compile" 2>&1 | tee "$OUT/test_cuda.log" | tail -4
for m in ${MODELS:-mlp resnet20}; do
  echo "== overhead $m"; timeout $([ $m = mlp ] && echo 120 || echo 250) $PY -m raypkg.cli bench overhead $GPU --dataset fashion-mnist --model $m --workers 0 --cli-runs 0 --epochs 3 --save "$OUT/overhead-h100-$m" 2>&1 | tee "$OUT/overhead-$m.log" | grep -v "^W1\|warn" | tail -14
done
echo "== done $(date -u)"
