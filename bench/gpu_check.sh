#!/usr/bin/env bash
# The GPU check: batch-1 and batch-32 latency of the exported encoder through ONNX Runtime CPU and
# PyTorch CUDA fp16 (plus ONNX Runtime CUDA / TensorRT where onnxruntime-gpu carries them, on every
# precision the export holds, each with its cosine to fp32), then index + match and serve on the GPU
# provider, printed as a table. For the real-photo model pass its export: --model DIR.
# Meant for a lent GPU machine with PyTorch CUDA + ONNX Runtime and no TensorRT; installs nothing.
#
#   bash bench/gpu_check.sh                 # newest export under ./runs, else a random dat_resnet50
#   bash bench/gpu_check.sh --model DIR     # a given export
#   bash bench/gpu_check.sh --dry-run       # CPU only, tiny sizes: checks the script itself
# Results also go to $OUT/gpu_check.json when $OUT is set. Extra arguments go to bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${IRREID_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]] && .venv/bin/python -c "import torch, onnxruntime" 2>/dev/null; then
    PY=.venv/bin/python
  else
    PY="$(command -v python3 || command -v python)"
  fi
fi
missing="$("$PY" - <<'PYEOF'
import importlib.util
print(" ".join(m for m in ("torch", "onnxruntime", "onnx", "numpy", "PIL") if importlib.util.find_spec(m) is None))
PYEOF
)"
if [[ -n "$missing" ]]; then
  echo "gpu_check: $PY lacks: $missing (pip install -e '.[train,export]')" >&2
  exit 2
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
else
  echo "gpu_check: nvidia-smi not found; PyTorch CUDA rows will be skipped if no GPU is visible" >&2
fi
# ONNX Runtime CPU uses every core unless told otherwise; OMP threads would fight it.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" bench/gpu_check.py "$@"
