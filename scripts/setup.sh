#!/usr/bin/env bash
# Create ./.venv (if absent) and install irreid-edge with everything the demo and the tests need.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only adds what is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1

# PyTorch pinned to the release this project is tested with (a CUDA build that also runs on a CPU).
if ! "$VPY" -c "import torch, torchvision" 2>/dev/null; then
  echo "setup: installing torch 2.14.1 + torchvision 0.29.1"
  "$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
echo "setup: installing irreid-edge[cpu,train,pretrained,export,search,serve,milvus,watch,dev]"
"$VPY" -m pip install -q -e ".[cpu,train,pretrained,export,search,serve,milvus,watch,dev]"
# Type stubs for TensorRT only: their dependency `tensorrt` cannot install off NVIDIA hardware.
"$VPY" -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1

# System packages: libraries for the native runtime (runtime/cpp) and chromium for the operator-page test;
# those tests skip with a reason without them.
if [ -f scripts/apt-packages.txt ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=$(while read -r pkg; do [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 && echo "$pkg"; done < scripts/apt-packages.txt || true)
  if [ -n "$missing" ]; then
    echo "setup: apt-get install $(echo $missing)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi
echo "setup: done ($("$VPY" -c 'import torch, onnxruntime; print("torch", torch.__version__, "| onnxruntime", onnxruntime.__version__)'))"
