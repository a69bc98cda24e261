"""Mistakes the export must refuse loudly: a collapsed model, wrong arguments, a missing run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from export.onnx import main
from export.pipeline import ExportConfig, run_export, write_outputs
from export.source import load_source

ROOT = Path(__file__).resolve().parents[2]


def test_collapsed_model_is_refused_and_nothing_written(tiny_run: Path, tmp_path: Path) -> None:
    src = load_source(tiny_run / "best.pt")
    with torch.no_grad():  # every output equal: the head ignores its input
        for fc in src.model.head.fcs:
            fc.weight.zero_()
        for bn in src.model.head.bns:
            bn.bias.fill_(1.0)
    result = run_export(src, ExportConfig(tiny_run / "best.pt", tmp_path))
    assert any("distinct" in f for f in result.hard_failures), result.hard_failures
    assert write_outputs(result, tmp_path) == [] and not list(tmp_path.glob("*.onnx"))


def test_bad_arguments_are_refused(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--calib-method", "kl"]) == 2
    assert "valid: entropy, minmax, mse, percentile" in capsys.readouterr().err
    assert main(["--calib", "x"]) == 2
    assert "need --int8" in capsys.readouterr().err


def test_no_run_found_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "export.onnx"], cwd=ROOT, capture_output=True, text=True,
                          env={"IRREID_RUNS": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "python -m train.fit" in proc.stderr
