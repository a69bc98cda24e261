"""The range cache: a JSON file of per-tensor ranges, reusable across exports of the same graph.

    {"format": "irreid-edge-calib-cache", "format_version": 1,
     "method": "entropy", "percentile": 99.99, "bins": 2048,
     "encoders": {"rgb": {"onnx_sha256": "...", "images": {"used": 256, ...},
                          "ranges": {"<tensor>": {"lo": .., "hi": .., "min": .., "max": ..}}}, "ir": {...}}}

An encoder's entry is reused only when its fp32 graph's sha256 and the method match (tensor names
belong to one graph); otherwise it is recomputed and the caller says why. Plain JSON: readable,
diffable, no pickle; written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.base.fileio import atomic_write_text, read_json

from .ranges import TensorRange

__all__ = ["CACHE_FORMAT", "CalibCacheError", "EncoderRanges", "RangeCache", "read_cache", "write_cache"]

CACHE_FORMAT = "irreid-edge-calib-cache"
CACHE_VERSION = 1


class CalibCacheError(ValueError):
    pass


@dataclass
class EncoderRanges:
    onnx_sha256: str
    ranges: dict[str, TensorRange]
    images: dict[str, Any] = field(default_factory=dict)


@dataclass
class RangeCache:
    method: str
    percentile: float
    bins: int
    encoders: dict[str, EncoderRanges] = field(default_factory=dict)

    def lookup(self, modality: str, onnx_sha256: str, method: str) -> tuple[EncoderRanges | None, str]:
        """(entry, why-not): the entry when it fits this graph and method, else None and the reason."""
        e = self.encoders.get(modality)
        if e is None:
            return None, f"no {modality} entry"
        if method != self.method:
            return None, f"cache made with method {self.method}, asked for {method}"
        if e.onnx_sha256 != onnx_sha256:
            return None, "cache made for another graph (fp32 ONNX sha256 differs)"
        return e, ""

    def to_json(self) -> str:
        enc = {m: {"onnx_sha256": e.onnx_sha256, "images": e.images,
                   "ranges": {k: r.as_dict() for k, r in sorted(e.ranges.items())}}
               for m, e in sorted(self.encoders.items())}
        return json.dumps({"format": CACHE_FORMAT, "format_version": CACHE_VERSION, "method": self.method,
                           "percentile": self.percentile, "bins": self.bins, "encoders": enc}, indent=1)


def read_cache(path: str | os.PathLike[str]) -> RangeCache:
    p = Path(path)
    d = read_json(p, missing="range cache not found", malformed="delete it to recalibrate", error=CalibCacheError)
    if not isinstance(d, dict) or d.get("format") != CACHE_FORMAT or d.get("format_version") != CACHE_VERSION:
        raise CalibCacheError(f"{p}: not an irreid-edge range cache (format {CACHE_FORMAT} v{CACHE_VERSION}); "
                              f"delete it or pass another --calib-cache")
    try:
        encoders = {m: EncoderRanges(str(e["onnx_sha256"]),
                                     {k: TensorRange(float(r["lo"]), float(r["hi"]), float(r["min"]), float(r["max"]))
                                      for k, r in e["ranges"].items()},
                                     dict(e.get("images", {})))
                    for m, e in d["encoders"].items()}
        return RangeCache(str(d["method"]), float(d["percentile"]), int(d["bins"]), encoders)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CalibCacheError(f"{p}: malformed range cache ({type(e).__name__}: {e}); delete it to recalibrate") from None


def write_cache(cache: RangeCache, path: str | os.PathLike[str]) -> Path:
    atomic_write_text(path, cache.to_json() + "\n")
    return Path(path)
