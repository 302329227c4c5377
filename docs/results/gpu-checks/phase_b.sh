#!/bin/bash
# Device phase B: Ray (carried as wheels, .whl) on the GPU, then the engine's cost re-measured.
set -o pipefail
export PYTHONUNBUFFERED=1 EFFRAY_WANDB_MODE=disabled
OUT=${OUT:-/tmp/outB}; mkdir -p "$OUT"
if [ -d .whl ] && [ -z "${SKIP_RAY:-}" ]; then python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3; fi
export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/bin; printf '#!/bin/sh\nexec python3 -m raypkg.cli "$@"\n' > /tmp/bin/effray; chmod +x /tmp/bin/effray
command -v python >/dev/null || ln -sf "$(command -v python3)" /tmp/bin/python
export PATH=/tmp/bin:$PATH
{ date -u; git log -1 --format='HEAD %H' 2>/dev/null; python3 -c "import torch, ray; print('torch', torch.__version__, 'ray', ray.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"; } 2>&1 | tee "$OUT/provenance-b.txt"
[ -z "${SKIP_RAY:-}" ] && echo "== Ray checks" && CHECK_TIMEOUT=${CHECK_TIMEOUT:-100} timeout 330 bash docs/results/gpu-checks/ray_gpu_checks.sh
[ -d "$OUT/ray-gpu-checks" ] && (cd "$OUT" && tar czf ray-logs.tgz ray-gpu-checks && rm -rf ray-gpu-checks)
echo "== overhead mlp (fp32) and resnet20 (bf16, channels_last)"
timeout 100 effray bench overhead ${GPU:---gpu} --model mlp --workers 0 --cli-runs 0 --epochs 3 --save "$OUT/overhead-h100-mlp-b" 2>&1 | grep -v "^W1\|warn\|TensorFloat32" | tail -11
timeout 150 effray bench overhead ${GPU:---gpu} --model resnet20 --precision bf16 --memory-format channels_last --workers 0 --cli-runs 0 --epochs 3 --save "$OUT/overhead-h100-resnet20-bf16cl" 2>&1 | grep -v "^W1\|warn\|TensorFloat32" | tail -11
echo "== done $(date -u)"
