"""Which person detector `watch` runs: a built-in one by name, or a YOLO ONNX file (yolo.py).

A detector is anything with ``name`` and ``detect(frame_bgr (H, W, 3) uint8) -> (N, 5) float32``
(x1, y1, x2, y2 in frame pixels, score in [0, 1]); the Python API accepts any such object.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["BUILTIN_DETECTORS", "DEFAULT_DETECTOR", "Detector", "builtin_detector", "open_detector"]


class Detector(Protocol):
    name: str

    def detect(self, frame: np.ndarray) -> np.ndarray: ...


def _hot() -> Any:
    from .builtin_detectors import HotRegionDetector

    return HotRegionDetector()


def _hog() -> Any:
    from .builtin_detectors import HogDetector

    return HogDetector()


def _haar() -> Any:
    from .builtin_detectors import HaarDetector

    return HaarDetector()


#: name -> factory; docs/watch.md has each one's recall and precision on LLVIP's frames
BUILTIN_DETECTORS: dict[str, Callable[[], Any]] = {"hot": _hot, "hog": _hog, "haar": _haar}
#: the default per source modality, chosen by `python bench/watch_detectors.py` (docs/watch.md)
DEFAULT_DETECTOR = {"ir": "hot", "rgb": "hog"}


def builtin_detector(name: str) -> Any:
    if name not in BUILTIN_DETECTORS:
        raise ValueError(f"detector {name!r} is invalid; valid values: {', '.join(BUILTIN_DETECTORS)} "
                         "or a YOLO .onnx file")
    return BUILTIN_DETECTORS[name]()


def _ort_backend(requested: str) -> str:
    """The ONNX Runtime backend for a detector: as asked, or the best provider present for the
    encoders' ``auto`` / ``onnxruntime`` / ``tensorrt`` (a detector has no native engine here)."""
    from ..backends.ort import ORT_BACKENDS, available_providers

    if requested in ORT_BACKENDS:
        return requested
    have = set(available_providers())
    for backend, providers in ORT_BACKENDS.items():  # best first
        if providers[0] in have:
            return backend
    return "onnxruntime-cpu"


def open_detector(spec: str | None, modality: str, backend: str = "auto", threads: int | None = None,
                  classes: tuple[int, ...] = (0,), threshold: float = 0.1, layout: str = "auto") -> Any:
    """``spec``: None (the modality's default), a built-in name, or a path to a YOLO ``.onnx``."""
    if spec is None:
        return builtin_detector(DEFAULT_DETECTOR[modality])
    if spec in BUILTIN_DETECTORS:
        return builtin_detector(spec)
    path = Path(spec)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"--detector {spec!r} is invalid; valid values: {', '.join(BUILTIN_DETECTORS)} "
                         "or a YOLO .onnx file")
    from .yolo import YoloOnnxDetector

    return YoloOnnxDetector(path, backend=_ort_backend(backend), classes=classes, threshold=threshold,
                            layout=layout, threads=threads)
