#!/usr/bin/env bash
# Ray on the GPU (issue 63, item 4): one CUDA GPU, Ray installed, W&B absent.
#   bash docs/results/gpu-checks/ray_gpu_checks.sh                 # on the GPU machine
#   GPU_FLAG=--cpu bash docs/results/gpu-checks/ray_gpu_checks.sh  # rehearsal on a CPU
# One line per check: "CHECK name: ok|FAILED (why)"; logs under $OUT (else a temp dir).
set -u
GPU_FLAG=${GPU_FLAG:---gpu}
USE_GPU=$([ "$GPU_FLAG" = "--gpu" ] && echo true || echo false)
LOGS=${OUT:-$(mktemp -d)}/ray-gpu-checks
WORK=$(mktemp -d)
mkdir -p "$LOGS"
export WANDB_MODE=disabled WANDB_SILENT=true EFFRAY_WANDB_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export EFFRAY_CACHE_DIR="$WORK/cache" TQDM_DISABLE=1
unset RAY_ADDRESS WANDB_API_KEY
[ -x .venv/bin/effray ] && . .venv/bin/activate
{ nvidia-smi -L 2>&1; python -c "import torch, ray; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__)"; git rev-parse HEAD; } > "$LOGS/provenance.txt" 2>&1
FAILED=0
check() {  # check NAME CMD...: runs CMD with set -x into $LOGS/NAME.log, under $CHECK_TIMEOUT (90) s
  local name=$1; shift
  local t0=$SECONDS
  ( set -x; timeout "${CHECK_TIMEOUT:-90}" "$@" ) > "$LOGS/$name.log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then echo "CHECK $name: ok ($((SECONDS - t0)) s)"
  else FAILED=1; echo "CHECK $name: FAILED (exit $rc after $((SECONDS - t0)) s; last line: $(grep -v '^+' "$LOGS/$name.log" | tail -1 | cut -c1-200))"; fi
  return $rc
}
SMALL=(--dataset digits --model resnet20 --epochs 2 --wandb disabled --no-progress)

# 1. --workers 1 on a CUDA worker equals the in-process run, bit for bit (saved model.pt)
check train-inprocess effray train "${SMALL[@]}" $GPU_FLAG --out "$WORK/a"
check train-workers1 effray train "${SMALL[@]}" $GPU_FLAG --workers 1 --out "$WORK/b"
check train-bit-for-bit python - "$WORK/a" "$WORK/b" <<'PY'
import json, pathlib, sys, torch
a, b = (next(pathlib.Path(d).rglob("model.pt")) for d in sys.argv[1:3])
sa, sb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
ea, eb = (json.loads((p.parent / "summary.json").read_text()) for p in (a, b))
print({k: (ea.get(k), eb.get(k)) for k in ("device", "precision", "memory_format", "test_acc")})
diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
assert sa.keys() == sb.keys() and not diff, f"{len(diff)} tensors differ, e.g. {diff[:3]}"
print(f"{len(sa)} tensors equal")
PY

# 2. LiPT: 2 shard-model workers sharing the GPU (0.5 each); the subset on one DDP rank
check lipt-workers2 effray run lipt --dataset digits --model mlp --shards 2 --pre-epochs 1 --epochs 2 \
    --fraction 0.3 --workers 2 $GPU_FLAG --wandb disabled --no-progress --out "$WORK/lipt"
check lipt-summary python -c "
import json, pathlib, sys; s = json.loads(next(pathlib.Path('$WORK/lipt').rglob('summary.json')).read_text())
print({k: s.get(k) for k in ('device', 'train_workers', 'nodes', 'test_acc')}); assert s.get('test_acc') is not None"

# 3. coreset selection whose 2 shard actors compute on CUDA (summary's actor_device)
check coreset-actors effray run coreset --dataset digits --model mlp --selection grand --pretrain-epochs 1 \
    --epochs 1 --fraction 0.3 --actors 2 $GPU_FLAG --wandb disabled --no-progress --out "$WORK/coreset"
check coreset-actor-device python -c "
import json, pathlib; s = json.loads(next(pathlib.Path('$WORK/coreset').rglob('summary.json')).read_text())
want = 'cuda' if '$USE_GPU' == 'true' else 'cpu'; print('actor_device', s.get('actor_device'))
assert s.get('actor_device') == want, s.get('actor_device')"

# 4. effray tune crest: 2 trials, each on a share of the GPU
check tune-crest effray tune crest --num-samples 2 --wandb disabled --out "$WORK/tune" \
    --set epochs=2 --set use_gpu=$USE_GPU --set progress=false

echo "logs: $LOGS"
rm -rf "$WORK"
exit $FAILED
