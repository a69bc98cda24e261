#!/usr/bin/env bash
# The whole chain on the built-in default: train the demo preset on synthetic cross-modal data,
# export ONNX (fp32 + int8), and match an IR probe against a colour gallery.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
. .venv/bin/activate
irreid-edge --help
