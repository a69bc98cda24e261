"""Person detectors that need no download: what ships inside OpenCV, and a thermal hot-region finder.

Each takes an (H, W, 3) uint8 BGR frame and returns (N, 5) float32 detections (x1, y1, x2, y2 in frame
pixels, score in [0, 1]). Which is the default for which modality was chosen by measurement on
LLVIP's night frames (docs/watch.md, `python bench/watch_detectors.py`).

- ``hog``: Dalal & Triggs' HOG + linear SVM people detector (OpenCV's ``HOGDescriptor``, trained on
  INRIA colour photographs, 64x128 window).
- ``haar``: OpenCV's Haar full-body cascade (``haarcascade_fullbody.xml``, shipped in ``cv2.data``).
- ``hot``: warm regions of a thermal frame. At night a person is warmer than what surrounds them,
  so a white top-hat (frame minus its grey opening, a local background wider than a person) keeps
  person-sized warm shapes; their connected components, closed vertically so head, body and legs join,
  and of a person's proportions, are the boxes. Side-by-side people that merge are cut into columns
  of a person's width. It sees heat, not shape: a warm car or lamp of a person's size is a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .boxes import empty_detections, nms

__all__ = ["HaarDetector", "HogDetector", "HotRegionDetector"]


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ValueError("the built-in detectors need OpenCV 4: pip install 'irreid-edge[watch]'") from None
    return cv2


def _resized(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame shrunk so its longer side is at most ``max_side``, and the factor back to frame pixels."""
    cv2 = _cv2()
    h, w = frame.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f == 1.0:
        return frame, 1.0
    return cv2.resize(frame, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA), 1.0 / f


def _gray(frame: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


@dataclass
class HogDetector:
    """OpenCV's HOG people detector. ``max_side``: frames are shrunk to this first (a person must be
    about 128 pixels tall there to fill the window; speed grows with the square of it)."""

    max_side: int = 960
    hit_threshold: float = 0.0
    name: str = "hog"
    _hog: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        cv2 = _cv2()
        if not hasattr(cv2, "HOGDescriptor"):  # OpenCV 5 moved it out of the main package
            raise ValueError(f"OpenCV {cv2.__version__} has no HOGDescriptor; install opencv-python < 5 "
                             "(pip install 'irreid-edge[watch]')")
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frame: np.ndarray) -> np.ndarray:
        small, back = _resized(frame, self.max_side)
        rects, weights = self._hog.detectMultiScale(small, hitThreshold=self.hit_threshold, winStride=(8, 8),
                                                    padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return empty_detections()
        r = np.asarray(rects, np.float32).reshape(-1, 4) * back  # (N, 4) x, y, w, h
        score = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))  # SVM margin -> (0, 1)
        dets = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3], score])
        return nms(dets.astype(np.float32), 0.45)


@dataclass
class HaarDetector:
    """OpenCV's Haar full-body cascade; ``min_neighbors`` trades recall for precision."""

    max_side: int = 960
    min_neighbors: int = 3
    name: str = "haar"
    _cascade: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        cv2 = _cv2()
        path = f"{getattr(cv2, 'data', None) and cv2.data.haarcascades}haarcascade_fullbody.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ValueError(f"{path}: OpenCV's full-body cascade is missing; install opencv-python < 5 "
                             "(pip install 'irreid-edge[watch]')")

    def detect(self, frame: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        small, back = _resized(_gray(frame), self.max_side)
        rects, _, weights = self._cascade.detectMultiScale3(cv2.equalizeHist(small), scaleFactor=1.05,
                                                            minNeighbors=self.min_neighbors, minSize=(24, 48),
                                                            outputRejectLevels=True)
        if len(rects) == 0:
            return empty_detections()
        r = np.asarray(rects, np.float32).reshape(-1, 4) * back
        score = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        dets = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3], score])
        return nms(dets.astype(np.float32), 0.45)


@dataclass
class HotRegionDetector:
    """Warm person-shaped regions of a thermal frame (see the module docstring).

    Sizes are fractions of the frame height so that they hold at any resolution: ``min_height`` and
    ``max_height`` bound a person's box, ``background`` is the width of the opening that estimates
    the local background; ``contrast`` is the least warmth over that background (0-255 grey levels).
    """

    max_side: int = 640
    contrast: float = 70.0
    min_height: float = 0.08
    max_height: float = 0.6
    background: float = 0.12
    max_width: float = 0.8
    name: str = "hot"

    def detect(self, frame: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        small, back = _resized(_gray(frame), self.max_side)
        h = small.shape[0]
        k = max(3, int(self.background * h) | 1)  # odd kernel, wider than a person
        g = cv2.GaussianBlur(small, (5, 5), 0)
        tophat = cv2.morphologyEx(g, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        mask = (tophat >= self.contrast).astype(np.uint8)
        vk = max(3, int(0.02 * h) | 1)  # join head, body and legs across thin cool bands
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (3, vk)))
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)  # stats: (n, 5) x, y, w, h, area
        out: list[list[float]] = []
        for x, y, w, bh, area in stats[1:]:  # row 0 is the background
            if not (self.min_height * h <= bh <= self.max_height * h) or area < 0.15 * w * bh:
                continue
            if not (0.2 * bh <= w <= self.max_width * bh):  # a pole, or a warm wall rather than people
                continue
            score = float(np.clip(tophat[y:y + bh, x:x + w].max() / 255.0 * 2.0, 0.05, 1.0))
            parts = max(1, round(w / (0.42 * bh)))  # side-by-side people: columns of a person's width
            for p in range(parts):
                x1 = x + w * p / parts
                out.append([x1, y, x1 + w / parts, y + bh, score])
        if not out:
            return empty_detections()
        dets = np.asarray(out, np.float32)
        dets[:, :4] *= back
        return dets
