"""int8 for one encoder: calibrate (calib/), decide which layers stay float by measuring, quantise twice.

The layers kept in float are chosen by measurement, not guessed (shared/DESIGN.md, measured facts):
the candidates below are tried in order on the ONNX Runtime CPU graph against fp32 on held-out
images, and the first meeting the bar (mean cosine >= 0.99, min >= 0.97) is used for both graphs.
Every trial's figures go into the report.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from calib.activations import ActivationRunner
from calib.batches import CalibBatches, Loader, TooFewImagesWarning
from calib.cache import EncoderRanges, RangeCache
from calib.images import CalibImage
from calib.ranges import TensorRange, collect
from runtime.spec import ModelSpec

from .checks import BARS, OrtModel, agreement
from .graph import head_nodes
from .qdq import quantize

__all__ = ["CANDIDATES", "Int8Result", "calibrate", "choose_float_layers"]

#: (label, roles kept in float) tried in order; roles are those of `export.graph.head_nodes`.
CANDIDATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all conv layers int8", ()),
    ("first conv float", ("first_conv",)),
    ("first conv + head fc float", ("first_conv", "fc")),
    ("first conv + last block + head fc float", ("first_conv", "last_block", "fc")),
)


@dataclass
class Int8Result:
    cpu: onnx.ModelProto
    trt: onnx.ModelProto
    float_layers: str
    excluded_nodes: list[str]
    trials: list[dict[str, Any]] = field(default_factory=list)


def calibrate(model: onnx.ModelProto, onnx_sha: str, spec: ModelSpec, images: Sequence[CalibImage], method: str,
              cache: RangeCache, batch_size: int = 16,
              loader: Loader | None = None) -> tuple[dict[str, TensorRange], dict[str, Any]]:
    """Ranges of ``model``'s activations over ``images``; taken from ``cache`` when it fits this graph."""
    hit, why = cache.lookup(spec.modality, onnx_sha, method)
    if hit is not None:
        return hit.ranges, {**hit.images, "from_cache": True}
    batches = CalibBatches(images, spec, batch_size, loader=loader)
    runner = ActivationRunner(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TooFewImagesWarning)
        ranges = collect(runner.outputs(batches), method, cache.bins, cache.percentile)
    summary = {**batches.summary(), "from_cache": False, "cache_miss": why,
               "warnings": [str(w.message) for w in caught if issubclass(w.category, TooFewImagesWarning)]}
    for w in summary["warnings"]:
        print(f"export.onnx: warning: {w}")
    if batches.skipped:
        print(f"export.onnx: {len(batches.skipped)} calibration image(s) skipped (unreadable), e.g. {batches.skipped[0][1]}")
    cache.encoders[spec.modality] = EncoderRanges(onnx_sha, ranges, {k: v for k, v in summary.items()
                                                                      if k in ("requested", "used", "skipped")})
    return ranges, summary


def choose_float_layers(model: onnx.ModelProto, ranges: dict[str, TensorRange], stripes: int,
                        held_out: np.ndarray, reference: np.ndarray) -> Int8Result:
    """Quantise with the first candidate that meets the bar on ``held_out`` (fp32 outputs ``reference``)."""
    roles = head_nodes(model, stripes)
    trials: list[dict[str, Any]] = []
    best: tuple[float, str, list[str], onnx.ModelProto] | None = None
    for label, keep in CANDIDATES:
        exclude = sorted({n for r in keep for n in roles[r]})
        cpu = quantize(model, ranges, "cpu", stripes, exclude)
        figures = agreement(reference, OrtModel(cpu.SerializeToString())(held_out),
                            BARS["int8_mean_cos"], BARS["int8_min_cos"])
        trials.append({"float_layers": label, "excluded_nodes": len(exclude), **figures})
        if best is None or figures["mean_cos"] > best[0]:
            best = (figures["mean_cos"], label, exclude, cpu)
        if figures["passed"]:
            best = (figures["mean_cos"], label, exclude, cpu)
            break
    assert best is not None
    _, label, exclude, cpu = best
    trt = quantize(model, ranges, "trt", stripes, exclude)
    return Int8Result(cpu, trt, label, exclude, trials)
