"""Assemble report.json's content from an export's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.fileio import file_sha256

from .pipeline import ExportConfig, Exported
from .quantize import RECIPES
from .source import Source

__all__ = ["build_report"]

EXPORTER = ("torch.onnx.export(dynamo=False) (TorchScript exporter: emits the requested opset; the dynamo "
            "exporter in torch 2.14 only emits opset 18+ here and is ~5x slower)")


def _file_entry(path: Path) -> dict[str, Any]:
    name = path.name
    if name.endswith(".int8-cpu.onnx"):
        precision, target = "int8", RECIPES["cpu"].purpose
    elif name.endswith(".int8.onnx"):
        precision, target = "int8", RECIPES["trt"].purpose
    elif name.endswith(".fp16.onnx"):
        precision, target = "fp16", "ONNX Runtime / TensorRT fp16 (reductions and L2 norm fp32)"
    elif name.endswith(".onnx"):
        precision, target = "fp32", "reference; ONNX Runtime CPU/GPU, TensorRT fp32"
    else:
        precision, target = "-", "model folder spec (one ModelSpec per modality)"
    return {"precision": precision, "for": target, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def build_report(src: Source, cfg: ExportConfig, result: Exported, written: list[Path], seconds: float) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    failures = [*result.hard_failures, *result.soft_failures]
    return {
        "export": {**src.info, "exporter": EXPORTER, "opset": cfg.opset, "torch": torch.__version__,
                   "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "out": str(cfg.out),
                   "fp16": cfg.fp16, "int8": cfg.int8, "calib_method": cfg.calib_method if cfg.int8 else None,
                   "calib_folders": cfg.calib or ([src.train_root] if cfg.int8 else []),
                   "calib_cache": str(cfg.calib_cache) if cfg.calib_cache else None, "seconds": round(seconds, 1)},
        "passed": not failures,
        "contract_passed": not result.hard_failures,
        "failures": failures,
        "files": {p.name: _file_entry(p) for p in written},
        **result.report,
    }
