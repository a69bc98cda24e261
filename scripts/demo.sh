#!/usr/bin/env bash
# The whole chain on the built-in default, on a CPU, with nothing downloaded:
#   1. train the demo preset on the synthetic cross-modal dataset (generated on first use),
#   2. export ONNX encoders (fp32, fp16, int8) with their verification report,
#   3. match infrared probes of unseen people against a colour gallery.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
. .venv/bin/activate
export IRREID_RUNS="${IRREID_RUNS:-runs}"

echo "== 1/3 train: python -m train.fit (demo preset)"
python -m train.fit
echo "== 2/3 export: python -m export.onnx --fp16 --int8"
python -m export.onnx --fp16 --int8
echo "== 3/3 match: IR probes -> colour gallery of identities never seen in training"
python -m train.demo_assets --run "$IRREID_RUNS/demo"
irreid-edge match --probe "$IRREID_RUNS/demo/probes" --gallery "$IRREID_RUNS/demo/gallery" --top-k 5 \
  --show "$IRREID_RUNS/demo/match.png"
echo "rank-list picture: $IRREID_RUNS/demo/match.png"
