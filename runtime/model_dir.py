"""The exported model folder: file names, the spec sidecar, and where the newest export is.

Layout written by ``python -m export.onnx`` (shared/DESIGN.md "The three user journeys"):

    <dir>/rgb.onnx, ir.onnx                 fp32, one self-contained encoder per modality
    <dir>/rgb.fp16.onnx, ir.fp16.onnx       fp16 (reductions and the L2 norm in fp32)
    <dir>/rgb.int8.onnx, ir.int8.onnx       explicit Q/DQ, symmetric int8, fp16 around: for TensorRT
    <dir>/rgb.int8-cpu.onnx, ...            Q/DQ with uint8 activations, fp32 around: for ONNX Runtime on a CPU
    <dir>/spec.json                         {"format_version": 1, "encoders": {"rgb": spec, "ir": spec}}
    <dir>/report.json, report.md            the export's checks and their figures
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .base.fileio import atomic_write_text, read_json
from .spec import MODALITIES, PRECISIONS, SPEC_FORMAT_VERSION, ModelSpec, SpecError

__all__ = [
    "DEFAULT_RUNS_DIR",
    "TARGETS",
    "default_model_dir",
    "model_file",
    "read_model_dir_specs",
    "runs_root",
    "write_model_dir_specs",
]

DEFAULT_RUNS_DIR = "runs"
#: "cpu": the graph ONNX Runtime runs fastest on a CPU; "trt": the graph TensorRT builds.
TARGETS = ("cpu", "trt")
SPEC_FILE = "spec.json"


def runs_root() -> Path:
    """Where training runs (and their exports) live: $IRREID_RUNS, else ./runs."""
    return Path(os.environ.get("IRREID_RUNS", DEFAULT_RUNS_DIR))


def model_file(model_dir: str | os.PathLike[str], modality: str, precision: str = "fp32", target: str = "cpu") -> Path:
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is invalid; valid values: {', '.join(MODALITIES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is invalid; valid values: {', '.join(PRECISIONS)}")
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is invalid; valid values: {', '.join(TARGETS)}")
    suffix = {"fp32": "", "fp16": ".fp16", "int8": ".int8-cpu" if target == "cpu" else ".int8"}[precision]
    return Path(model_dir) / f"{modality}{suffix}.onnx"


def write_model_dir_specs(model_dir: str | os.PathLike[str], specs: dict[str, ModelSpec]) -> Path:
    path = Path(model_dir) / SPEC_FILE
    payload: dict[str, Any] = {"format_version": SPEC_FORMAT_VERSION,
                               "encoders": {m: s.to_dict() for m, s in specs.items()}}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_model_dir_specs(model_dir: str | os.PathLike[str]) -> dict[str, ModelSpec]:
    path = Path(model_dir) / SPEC_FILE
    if not Path(model_dir).is_dir():
        raise SpecError(f"{model_dir}: model folder not found; export one with `python -m export.onnx`")
    payload = read_json(path, missing="missing; this is not an irreid-edge export (run `python -m export.onnx`)",
                        malformed="re-export the model", error=SpecError)
    if payload.get("format_version") != SPEC_FORMAT_VERSION:
        raise SpecError(f"{path}: format_version {payload.get('format_version')!r} is not {SPEC_FORMAT_VERSION}; "
                        f"re-export the model with this irreid-edge")
    try:
        return {m: ModelSpec.from_dict(d) for m, d in payload["encoders"].items()}
    except (KeyError, TypeError, AttributeError):
        raise SpecError(f"{path}: no 'encoders' object; re-export the model") from None
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None


def default_model_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The newest export under the runs folder (the one the demo writes), by spec.json mtime."""
    base = Path(root) if root is not None else runs_root()
    candidates = sorted(base.glob(f"*/export/{SPEC_FILE}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise SpecError(f"no exported model under {base}/*/export; run `python -m train.fit` then "
                        f"`python -m export.onnx`, or pass --model DIR")
    return candidates[-1].parent
