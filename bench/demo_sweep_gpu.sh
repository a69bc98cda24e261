#!/usr/bin/env bash
# One prepared session on a lent GPU machine (PyTorch CUDA + ONNX Runtime; no TensorRT; no internet):
#   1. bench/train_step.py on CUDA: baseline vs full step time and images/s (dat_resnet50, 288x144);
#   2. bench/gpu_check.sh: encoder latency, PyTorch CUDA fp16 vs ONNX Runtime CPU (short budget);
#   3. a sweep of the demo preset (synthetic data, dat_resnet18 at 64x32), several runs side by side on
#      the one GPU: how far the demo's accuracy is from its bar because of too few steps, too small an
#      input, or a too hard rendering (train/data/synthetic_render.Style), each run's test scores.
# Results (logs, metrics.jsonl, test.json) go to $OUT (default ./sweep_out). Meant to finish in ~8 min.
#   PLAN=2 bash bench/demo_sweep_gpu.sh [--dry-run]   # plan1 / plan2 below; --dry-run: CPU, tiny runs
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/sweep_out}"; mkdir -p "$OUT"
PY="${IRREID_PYTHON:-$(command -v python3 || command -v python)}"
DRY=0; [[ "${1:-}" == "--dry-run" ]] && DRY=1
WORK="${SWEEP_WORK:-/tmp/irreid_sweep}"; rm -rf "$WORK"; mkdir -p "$WORK"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 IRREID_CACHE="$WORK/cache" IRREID_RUNS="$WORK/runs"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/sweep.log"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; "$PY" -c "import torch, torchvision, onnxruntime, sys; print(sys.version.split()[0], torch.__version__, torchvision.__version__, onnxruntime.__version__, torch.cuda.is_available())"; "$PY" -c "import matplotlib" || echo "no matplotlib"; } >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

IDS=300; EP_SHORT=16; EP_LONG=80; DEV=cuda; RUN_LIMIT=400
if (( DRY )); then IDS=30; EP_SHORT=1; EP_LONG=2; DEV=cpu; RUN_LIMIT=300; fi

gen() { # name, extra args
  local name=$1; shift
  nice -n 5 "$PY" -m train.data.synthetic --out "$WORK/data/$name" --ids $IDS --seed 0 "$@" >"$OUT/gen_$name.log" 2>&1
}
run() { # name, data, epochs, extra train.fit args...
  local name=$1 data=$2 ep=$3; shift 3
  local ms=$(( ep * 3 / 4 )); (( ms < 1 )) && ms=1
  timeout $RUN_LIMIT "$PY" -m train.fit --preset demo --root "$WORK/data/$data" --epochs "$ep" --device $DEV \
    --workers 1 --quiet --name "$name" --set "optim.milestones=$ms" --set "eval_every=$(( ep >= 40 ? 8 : 4 ))" "$@" \
    >"$OUT/run_$name.log" 2>&1
  local rc=$?
  mkdir -p "$OUT/$name"; cp "$IRREID_RUNS/$name/"{metrics.jsonl,test.json,config.json} "$OUT/$name/" 2>/dev/null
  log "run $name rc=$rc: $(grep -E 'rank-1|rank1' "$OUT/run_$name.log" | tail -2 | tr '\n' ' ')"
}

plan1() { # 2026-11-26, first sweep: steps, input size or rendering?
  # v1 (the default), S1 big marks + IR partly following dye + half clutter, S2 big marks + half clutter,
  # S3 IR partly following dye.
  gen v1 & gen s1 --mark-scale 2 --ir-dye 0.5 --clutter 0.5 & gen s2 --mark-scale 2 --clutter 0.5 & gen s3 --ir-dye 0.5 &
  if (( ! DRY )); then
    log "train_step bench"
    timeout 120 "$PY" bench/train_step.py --device cuda >"$OUT/train_step_b16.txt" 2>&1; cat "$OUT/train_step_b16.txt"
    timeout 120 "$PY" bench/train_step.py --device cuda --batch 64 >"$OUT/train_step_b64.txt" 2>&1; cat "$OUT/train_step_b64.txt"
    log "gpu_check"
    OMP_NUM_THREADS=4 timeout 150 bash bench/gpu_check.sh --budget-s 100 --iters 10 >"$OUT/gpu_check.txt" 2>&1; tail -25 "$OUT/gpu_check.txt"
  fi
  wait
  log "data generated: $(ls "$WORK/data" | tr '\n' ' ')"
  run r1_v1_e16 v1 $EP_SHORT &
  run r2_v1_e80 v1 $EP_LONG &
  run r3_v1_e16_128x64 v1 $EP_SHORT --set data.height=128 --set data.width=64 &
  run r4_s1_e16 s1 $EP_SHORT &
  run r5_s1_e48 s1 $(( EP_LONG * 3 / 5 )) &
  run r6_v1_e80_baseline v1 $EP_LONG --variant baseline &
  run r7_s2_e16 s2 $EP_SHORT &
  run r8_s3_e16 s3 $EP_SHORT &
  wait
}

plan2() { # second sweep: how much of the IR intensity must follow the dye (the one lever plan 1 found)
  gen d70 --ir-dye 0.7 & gen d85 --ir-dye 0.85 & gen d100 --ir-dye 1.0 & gen d85m15 --ir-dye 0.85 --mark-scale 1.5 &
  gen d85c05 --ir-dye 0.85 --clutter 0.5 &
  if (( ! DRY )); then  # the data issue's colour-histogram and random-network baselines on the same styles
    (OMP_NUM_THREADS=2 timeout 300 "$PY" bench/synthetic_baselines.py --ir-dye 0.85 >"$OUT/baselines_d85.txt" 2>&1) &
    (OMP_NUM_THREADS=2 timeout 300 "$PY" bench/synthetic_baselines.py --ir-dye 1.0 >"$OUT/baselines_d100.txt" 2>&1) &
  fi
  while (( $(ls "$WORK/data"/*/synthetic.json 2>/dev/null | wc -l) < 5 )); do sleep 2; done
  log "data generated: $(ls "$WORK/data" | tr '\n' ' ')"
  run p_d70_e16 d70 $EP_SHORT &
  run p_d85_e16 d85 $EP_SHORT &
  run p_d100_e16 d100 $EP_SHORT &
  run p_d85m15_e16 d85m15 $EP_SHORT &
  run p_d85c05_e16 d85c05 $EP_SHORT &
  run p_d85_e16_caj d85 $EP_SHORT --set data.channel_aug=0.5 &
  run p_d85_e32 d85 $(( EP_SHORT * 2 )) &
  run p_d85_e16_baseline d85 $EP_SHORT --variant baseline &
  run p_d100_e16_caj d100 $EP_SHORT --set data.channel_aug=0.5 &
  run p_d85_e16_lr02 d85 $EP_SHORT --set optim.lr_new=0.02 --set optim.lr_pretrained=0.02 &
  wait
  cat "$OUT"/baselines_*.txt 2>/dev/null
}

plan3() { # third sweep, on the dye-following rendering: optimiser, adversarial weight, sharing, batch make-up
  gen d85 --ir-dye 0.85 & gen d100 --ir-dye 1.0 &
  wait
  local adam=(--set optim.optimizer=adam --set optim.warmup_epochs=1)
  run q_full_adam1e3 d85 $EP_SHORT "${adam[@]}" --set optim.lr_new=1e-3 --set optim.lr_pretrained=1e-3 --set optim.lr_domain=1e-3 &
  run q_base_adam1e3 d85 $EP_SHORT --variant baseline "${adam[@]}" --set optim.lr_new=1e-3 --set optim.lr_pretrained=1e-3 &
  run q_full_adam3e4 d85 $EP_SHORT "${adam[@]}" --set optim.lr_new=3e-4 --set optim.lr_pretrained=3e-4 --set optim.lr_domain=3e-4 &
  run q_full_sgd01 d85 $EP_SHORT --set optim.lr_new=0.1 --set optim.lr_pretrained=0.1 &
  run q_full_adv03 d85 $EP_SHORT --set loss.adv_weight=0.3 &
  run q_full_grl d85 $EP_SHORT --alternate grl &
  run q_full_share1 d85 $EP_SHORT --set model.share_from=1 &
  run q_base_share1 d85 $EP_SHORT --variant baseline --set model.share_from=1 &
  run q_full_p16k2 d85 $EP_SHORT --set data.p=16 --set data.k=2 &
  run q_full_emb256 d85 $EP_SHORT --set model.embed_dim=256 &
  run q_full_d100caj_adam d100 $EP_SHORT --set data.channel_aug=0.5 "${adam[@]}" --set optim.lr_new=1e-3 --set optim.lr_pretrained=1e-3 --set optim.lr_domain=1e-3 &
  run q_base_e24 d85 24 --variant baseline &
  wait
}

plan4() { # fourth sweep: Adam + a DANN ramp of the adversarial weight (loss.adv_ramp_epochs)
  gen d85 --ir-dye 0.85 & gen d100 --ir-dye 1.0 &
  wait
  local a=(--set optim.optimizer=adam --set optim.warmup_epochs=1)
  local a1=("${a[@]}" --set optim.lr_new=1e-3 --set optim.lr_pretrained=1e-3 --set optim.lr_domain=1e-3)
  run s_full_a1_r8 d85 $EP_SHORT "${a1[@]}" --set loss.adv_ramp_epochs=8 &
  run s_full_a1_r4 d85 $EP_SHORT "${a1[@]}" --set loss.adv_ramp_epochs=4 &
  run s_full_a1_r12 d85 $EP_SHORT "${a1[@]}" --set loss.adv_ramp_epochs=12 &
  run s_full_a1_r8_w03 d85 $EP_SHORT "${a1[@]}" --set loss.adv_ramp_epochs=8 --set loss.adv_weight=0.3 &
  run s_full_sgd_r8 d85 $EP_SHORT --set loss.adv_ramp_epochs=8 &
  run s_full_a1_r8_d100caj d100 $EP_SHORT "${a1[@]}" --set loss.adv_ramp_epochs=8 --set data.channel_aug=0.5 &
  run s_base_a1_d100caj d100 $EP_SHORT --variant baseline "${a1[@]}" --set data.channel_aug=0.5 &
  run s_base_a1_d100 d100 $EP_SHORT --variant baseline "${a1[@]}" &
  run s_full_a05_r8 d85 $EP_SHORT "${a[@]}" --set optim.lr_new=5e-4 --set optim.lr_pretrained=5e-4 --set optim.lr_domain=5e-4 --set loss.adv_ramp_epochs=8 &
  run s_full_a1_r8_dlr1e4 d85 $EP_SHORT "${a[@]}" --set optim.lr_new=1e-3 --set optim.lr_pretrained=1e-3 --set optim.lr_domain=1e-4 --set loss.adv_ramp_epochs=8 &
  run s_base_a2 d85 $EP_SHORT --variant baseline "${a[@]}" --set optim.lr_new=2e-3 --set optim.lr_pretrained=2e-3 &
  run s_full_a1_r8_e20 d85 20 "${a1[@]}" --set loss.adv_ramp_epochs=8 &
  wait
}

plan5() { # fifth: the full method from random init on the dye-following rendering, gentler adversary
  gen d100 --ir-dye 1.0 & gen d85 --ir-dye 0.85 &
  wait
  local a=(--set optim.optimizer=adam --set optim.warmup_epochs=1 --set optim.lr_new=1e-3 --set optim.lr_pretrained=1e-3)
  local c=(--set data.channel_aug=0.5)
  run t_full_d100c_w03_dlr1e4_r8 d100 $EP_SHORT "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-4 --set loss.adv_weight=0.3 --set loss.adv_ramp_epochs=8 &
  run t_full_d100c_w03_r8 d100 $EP_SHORT "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-3 --set loss.adv_weight=0.3 --set loss.adv_ramp_epochs=8 &
  run t_full_d100c_w01_r8 d100 $EP_SHORT "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-3 --set loss.adv_weight=0.1 --set loss.adv_ramp_epochs=8 &
  run t_full_d100c_dlr1e4_r8 d100 $EP_SHORT "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-4 --set loss.adv_ramp_epochs=8 &
  run t_full_d100c_w03_dlr1e4 d100 $EP_SHORT "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-4 --set loss.adv_weight=0.3 &
  run t_full_d100_w03_dlr1e4_r8 d100 $EP_SHORT "${a[@]}" --set optim.lr_domain=1e-4 --set loss.adv_weight=0.3 --set loss.adv_ramp_epochs=8 &
  run t_full_d85c_w03_dlr1e4_r8 d85 $EP_SHORT "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-4 --set loss.adv_weight=0.3 --set loss.adv_ramp_epochs=8 &
  run t_full_d100c_w03_dlr1e4_r8_e12 d100 12 "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-4 --set loss.adv_weight=0.3 --set loss.adv_ramp_epochs=6 &
  run t_base_d100c_e12 d100 12 --variant baseline "${a[@]}" "${c[@]}" &
  run t_shallow_d100c_w03_dlr1e4_r8 d100 $EP_SHORT --variant shallow "${a[@]}" "${c[@]}" --set optim.lr_domain=1e-4 --set loss.adv_weight=0.3 --set loss.adv_ramp_epochs=8 &
  wait
}

PLAN="${PLAN:-5}"
log "plan $PLAN"
"plan$PLAN"
log "done"
# The device tool brings back only a few files: everything goes home as one archive.
tar czf "$WORK/sweep.tgz" -C "$OUT" . && rm -rf "${OUT:?}"/* && mv "$WORK/sweep.tgz" "$OUT/"
