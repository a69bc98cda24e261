"""A person detector from a YOLO ONNX file the user already has (``watch --detector FILE.onnx``).

Input contract (what Ultralytics, YOLOv5/v7 and YOLOX exports take): one image, NCHW, RGB, values
0-1 (float32, or float16 for an fp16 graph), letterboxed into the graph's static H x W (grey 114
padding, aspect kept); a graph with a dynamic size gets ``size`` x ``size``.

Output layouts of the first output, told apart by shape (or named with ``layout``):

=========  ==================  ==========================================================================
layout     shape               rows
=========  ==================  ==========================================================================
yolov8     (1, 4 + C, A)       cx, cy, w, h, C class scores (YOLOv8, v9, 11, 12: anchors along the last axis)
yolov5     (1, A, 5 + C)       cx, cy, w, h, objectness, C class scores (YOLOv5, YOLOv7, YOLOX decoded)
end2end    (1, K, 6)           x1, y1, x2, y2, score, class, already suppressed (YOLOv10, ``nms=True`` exports)
=========  ==================  ==========================================================================

Boxes are in the letterboxed input's pixels; they are mapped back to the frame, filtered by class
(COCO "person" is class 0) and score, and suppressed (NMS) unless the graph did it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .boxes import empty_detections, nms

__all__ = ["YOLO_LAYOUTS", "YoloOnnxDetector", "decode_yolo", "letterbox"]

YOLO_LAYOUTS = ("auto", "yolov8", "yolov5", "end2end")
_END2END_MAX_ROWS = 1000  # an NMS-included export keeps at most a few hundred boxes; raw heads have thousands


def letterbox(frame_rgb: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float, float, float]:
    """(1, 3, height, width) float32 0-1 of the frame scaled to fit and padded with grey 114, and the
    scale and left/top padding that map input pixels back to frame pixels."""
    import cv2

    h, w = frame_rgb.shape[:2]
    s = min(height / h, width / w)
    nh, nw = round(h * s), round(w * s)
    top, left = (height - nh) // 2, (width - nw) // 2
    canvas = np.full((height, width, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = cv2.resize(frame_rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0  # (1, 3, H, W)
    return x, s, float(left), float(top)


def guess_layout(shape: tuple[int, ...]) -> str:
    """The layout of a (1, a, b) output (module docstring's table); ValueError for anything else."""
    if len(shape) != 3:
        raise ValueError(f"a YOLO output is (1, rows, columns); this graph gives {shape}")
    _, a, b = shape
    if b == 6 and a <= _END2END_MAX_ROWS:
        return "end2end"
    if a < b and a >= 5:
        return "yolov8"
    if b >= 6:
        return "yolov5"
    raise ValueError(f"unrecognised YOLO output shape {shape}; pass --detector-layout "
                     f"({', '.join(YOLO_LAYOUTS[1:])})")


def decode_yolo(out: np.ndarray, layout: str, classes: tuple[int, ...], threshold: float,
                iou: float = 0.45) -> np.ndarray:
    """(N, 5) x1, y1, x2, y2, score in input pixels from one image's raw output ``out`` (1, a, b)."""
    out = np.asarray(out, np.float32)[0]
    if layout == "auto":
        layout = guess_layout((1, *out.shape))
    if layout == "end2end":
        cls = out[:, 5].astype(np.int64)
        keep = np.isin(cls, classes) & (out[:, 4] >= threshold)
        return out[keep, :5].copy()
    if layout == "yolov8":
        rows = out.T  # (A, 4 + C)
        scores = rows[:, 4:]
    elif layout == "yolov5":
        rows = out  # (A, 5 + C)
        scores = rows[:, 5:] * rows[:, 4:5]  # class score x objectness
    else:
        raise ValueError(f"layout {layout!r} is invalid; valid values: {', '.join(YOLO_LAYOUTS)}")
    if max(classes) >= scores.shape[1]:
        raise ValueError(f"class {max(classes)} asked for, but the graph has {scores.shape[1]} classes")
    score = scores[:, list(classes)].max(axis=1)
    keep = score >= threshold
    cx, cy, w, h = (rows[keep, i] for i in range(4))
    dets = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score[keep]]).astype(np.float32)
    return nms(dets, iou)


@dataclass
class YoloOnnxDetector:
    """A YOLO ONNX person detector run by ONNX Runtime on ``backend`` (runtime.backends.ort)."""

    path: Path
    backend: str = "onnxruntime-cpu"
    classes: tuple[int, ...] = (0,)
    threshold: float = 0.1
    layout: str = "auto"
    size: int = 640
    threads: int | None = None
    name: str = "onnx"
    _runner: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from ..backends.ort import OrtRunner

        if self.layout not in YOLO_LAYOUTS:
            raise ValueError(f"--detector-layout {self.layout!r} is invalid; valid values: {', '.join(YOLO_LAYOUTS)}")
        self._runner = OrtRunner(self.path, backend=self.backend, threads=self.threads)
        shape = self._runner.input_shape
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ValueError(f"{self.path}: input {self._runner.input_name} is {shape}; a YOLO detector takes "
                             "(1, 3, H, W) RGB 0-1")
        self.height = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else self.size
        self.width = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else self.size
        self.name = f"onnx:{self.path.name}"

    @property
    def provider(self) -> str:
        return str(self._runner.backend)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(frame[:, :, ::-1])  # BGR -> RGB
        x, s, left, top = letterbox(rgb, self.height, self.width)
        if self._runner.input_type == "tensor(float16)":
            x = x.astype(np.float16)
        try:
            out = self._runner.session.run(None, {self._runner.input_name: x})[0]
        except Exception as e:  # ONNX Runtime's errors derive from Exception only
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{self.path}: the detector refused a {tuple(x.shape)} input ({first}); "
                             "see docs/watch.md for the input contract") from None
        dets = decode_yolo(np.asarray(out, np.float32), self.layout, self.classes, self.threshold)
        if len(dets) == 0:
            return empty_detections()
        dets[:, [0, 2]] = (dets[:, [0, 2]] - left) / s
        dets[:, [1, 3]] = (dets[:, [1, 3]] - top) / s
        h, w = frame.shape[:2]
        dets[:, [0, 2]] = dets[:, [0, 2]].clip(0, w)
        dets[:, [1, 3]] = dets[:, [1, 3]].clip(0, h)
        ok = (dets[:, 2] > dets[:, 0]) & (dets[:, 3] > dets[:, 1])
        return dets[ok]
