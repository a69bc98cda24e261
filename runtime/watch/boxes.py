"""Box arithmetic shared by the detectors, the evaluation and the track bookkeeping (numpy only).

Boxes are (N, 4) float arrays of pixel corners x1, y1, x2, y2; detections are (N, 5): a box and a
score in [0, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = ["empty_detections", "iou_matrix", "match_counts", "nms"]


def empty_detections() -> np.ndarray:
    return np.zeros((0, 5), np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of x1, y1, x2, y2 boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)  # (A, B)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(dets: np.ndarray, iou_threshold: float = 0.45) -> np.ndarray:
    """Greedy non-maximum suppression: the rows of ``dets`` (N, 5) kept, best score first."""
    if len(dets) == 0:
        return dets
    order = np.argsort(-dets[:, 4], kind="stable")
    ious = iou_matrix(dets[:, :4], dets[:, :4])
    keep: list[int] = []
    suppressed = np.zeros(len(dets), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= ious[i] > iou_threshold
    return dets[keep]


def match_counts(dets: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """(true positives, detections, ground-truth boxes): each true box matched at most once, greedily
    by descending score, at IoU >= ``iou_threshold`` (the PASCAL VOC rule)."""
    if len(dets) == 0 or len(truth) == 0:
        return 0, len(dets), len(truth)
    ious = iou_matrix(dets[:, :4], truth)
    used = np.zeros(len(truth), bool)
    tp = 0
    for i in np.argsort(-dets[:, 4], kind="stable"):
        cand = np.where(~used, ious[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            used[j] = True
            tp += 1
    return tp, len(dets), len(truth)
