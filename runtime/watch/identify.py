"""Per-track embeddings and gallery answers.

A track keeps its ``keep`` best crops, ranked by quality: bigger, sharper (variance of the Laplacian),
confidently detected, and not cut by the frame edge (a crop touching the edge is a partial person and
ranks far below any whole one). Its embedding is the quality-weighted mean of its crops' embeddings,
renormalised. The gallery is asked once the track has been seen ``min_frames`` times, then again
only when a better crop has joined and ``requery_seconds`` have passed, and once at the end of the
track; the answer's top-1 is the identity unless its distance (1 - cosine) is above ``threshold``
("unknown").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Crop", "TrackRecord", "crop_quality"]

_EDGE_PENALTY = 0.1  # a crop cut by the frame edge counts a tenth of a whole one of the same size


@dataclass(eq=False)  # compared by identity: the arrays have no single truth value
class Crop:
    image: np.ndarray  # (h, w, 3) uint8 BGR
    quality: float
    time: float
    box: tuple[float, float, float, float]
    embedding: np.ndarray | None = None  # (D,), filled in batches by the pipeline


def crop_quality(crop_bgr: np.ndarray, box: np.ndarray, frame_shape: tuple[int, ...], score: float,
                 margin: int = 2) -> float:
    """sqrt(area) x sharpness x detection score x shape, a tenth of it for a crop cut by the frame edge.
    shape: 1 for a box at least twice as tall as wide (a standing person), less for a wider one (often
    two people in one box, or a person half hidden)."""
    import cv2

    h, w = frame_shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    gray = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY) if crop_bgr.ndim == 3 else crop_bgr
    lap = float(cv2.Laplacian(gray, cv2.CV_32F).var()) if min(gray.shape[:2]) >= 3 else 0.0
    sharp = lap / (lap + 100.0)  # 0..1: saturates once the crop has clear edges
    cut = x1 <= margin or y1 <= margin or x2 >= w - margin or y2 >= h - margin
    shape = min(1.0, (y2 - y1) / max(1e-6, 2.0 * (x2 - x1))) ** 2
    q = np.sqrt(max(0.0, (x2 - x1) * (y2 - y1))) * (0.2 + sharp) * max(0.05, score) * shape
    return float(q * (_EDGE_PENALTY if cut else 1.0))


@dataclass
class TrackRecord:
    track_id: int
    first_time: float
    last_time: float
    first_frame: int
    last_frame: int
    frames: int = 0
    crops: list[Crop] = field(default_factory=list)
    embedding: np.ndarray | None = None
    matches: list[dict[str, Any]] = field(default_factory=list)
    identity: str | None = None  # the gallery path of the top-1 hit within the threshold, else None
    distance: float | None = None
    queries: int = 0
    last_query_time: float | None = None
    changed: bool = False  # a better crop joined since the last query
    thumbnail: str | None = None
    identities_seen: list[str] = field(default_factory=list)  # every distinct top-1 answered, in order

    def see(self, t: float, frame_index: int) -> None:
        self.last_time, self.last_frame = t, frame_index
        self.frames += 1

    def offer(self, crop: Crop, keep: int) -> bool:
        """Keep ``crop`` if it is among the ``keep`` best so far; True if it was kept."""
        if len(self.crops) >= keep and crop.quality <= min(c.quality for c in self.crops) * 1.05:
            return False
        self.crops.append(crop)
        self.crops.sort(key=lambda c: -c.quality)
        del self.crops[keep:]
        kept = any(c is crop for c in self.crops)
        self.changed = self.changed or kept
        return kept

    def pending(self) -> list[Crop]:
        return [c for c in self.crops if c.embedding is None]

    def aggregate(self) -> np.ndarray | None:
        done = [(c.quality, c.embedding) for c in self.crops if c.embedding is not None]
        if not done:
            return None
        w = np.asarray([q for q, _ in done], np.float64)
        embs = np.stack([e for _, e in done]).astype(np.float64)  # (K, D)
        v = (embs * w[:, None]).sum(axis=0)  # (D,)
        n = float(np.linalg.norm(v))
        self.embedding = (v / n).astype(np.float32) if n > 0 else None
        return self.embedding

    def due(self, t: float, min_frames: int, requery_seconds: float, ended: bool = False) -> bool:
        """Whether the gallery should be asked now (module docstring)."""
        if not self.crops or self.frames < (1 if ended else min_frames):
            return False
        if self.queries == 0:
            return True
        if not self.changed:
            return False
        return ended or self.last_query_time is None or t - self.last_query_time >= requery_seconds

    def answer(self, hits: list[Any], t: float, threshold: float | None) -> None:
        self.queries += 1
        self.last_query_time = t
        self.changed = False
        self.matches = [{"rank": h.rank, "distance": round(max(float(h.distance), 0.0), 6),
                         "path": h.entry.path, **({"camera": h.entry.camera} if h.entry.camera else {}),
                         "id": h.entry.id} for h in hits]
        top = self.matches[0] if self.matches else None
        within = top is not None and (threshold is None or top["distance"] <= threshold)
        self.identity = top["path"] if within and top else None
        self.distance = top["distance"] if top else None
        if self.identity is not None and (not self.identities_seen or self.identities_seen[-1] != self.identity):
            self.identities_seen.append(self.identity)

    def to_event(self, kind: str) -> dict[str, Any]:
        return {"event": kind, "track": self.track_id, "first_seen": round(self.first_time, 3),
                "last_seen": round(self.last_time, 3), "first_frame": self.first_frame,
                "last_frame": self.last_frame, "frames": self.frames, "identity": self.identity,
                "distance": self.distance, "matches": self.matches, "queries": self.queries,
                "thumbnail": self.thumbnail, "identities_seen": self.identities_seen,
                "best_box": [round(v, 1) for v in self.crops[0].box] if self.crops else None,
                "best_time": round(self.crops[0].time, 3) if self.crops else None}
