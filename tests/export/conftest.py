"""Fixtures for the export tests: one tiny synthetic dataset and checkpoint, one CLI export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/tiny/best.pt: a random-weights ResNet-18 DAT model at 64x32 trained on a 12-id synthetic set."""
    from helpers_export import make_checkpoint

    from train.data.synthetic import generate

    base = tmp_path_factory.mktemp("export")
    data = base / "data"
    generate(data, ids=12, seed=1, height=64, width=32, min_per_cam=2, max_per_cam=3)
    return make_checkpoint(base / "runs" / "tiny" / "best.pt", data).parent


@pytest.fixture(scope="session")
def exported(tiny_run: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`python -m export.onnx --fp16 --int8` with no checkpoint argument: it must find the run itself."""
    env = {**os.environ, "IRREID_RUNS": str(tiny_run.parent), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "export.onnx", "--fp16", "--int8", "--calib-images", "48"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return tiny_run / "export", proc


@pytest.fixture(scope="session")
def report(exported: tuple[Path, subprocess.CompletedProcess[str]]) -> dict:
    out, proc = exported
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "report.json").read_text())
