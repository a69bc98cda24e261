#!/usr/bin/env bash
# Install (if needed) and run the project's checks: lint, types, then the test suite (not `slow`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== ruff"
ruff check .
echo "== mypy (runtime, against tensorrt-stubs)"
mypy
echo "== pytest"
python -m pytest -q "$@"
