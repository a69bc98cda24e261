"""Multi-object tracking with Roboflow's ``trackers`` package (ByteTrack, OC-SORT, SORT): detections
in, the same boxes out with a track id each. Not a tracker of our own: this module only adapts the
package to (N, 5) numpy detections and source timestamps (frames may be skipped or dropped, so the
tracker is told the time of each frame instead of assuming a fixed rate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TRACKERS", "Tracker"]

#: --tracker value -> class name in the ``trackers`` package
TRACKERS = {"bytetrack": "ByteTrackTracker", "ocsort": "OCSORTTracker", "sort": "SORTTracker"}


@dataclass
class Tracker:
    """``update(dets (N, 5), t seconds) -> (boxes (M, 4), scores (M,), ids (M,))`` for the confirmed tracks.

    ``lost_seconds``: how long a track may go unseen and still be continued; ``min_frames``: frames a
    new track must be seen before it gets an id (fewer false tracks from one-frame detections).
    """

    kind: str = "bytetrack"
    fps: float = 30.0
    lost_seconds: float = 1.5
    min_frames: int = 2
    high_threshold: float = 0.5
    min_iou: float = 0.1
    _impl: Any = field(default=None, repr=False)
    _sv: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in TRACKERS:
            raise ValueError(f"--tracker {self.kind!r} is invalid; valid values: {', '.join(TRACKERS)}")
        try:
            import supervision as sv
            import trackers
        except ImportError:
            raise ValueError("tracking needs the `trackers` package: pip install 'irreid-edge[watch]'") from None
        self._sv = sv
        cls = getattr(trackers, TRACKERS[self.kind])
        # lost_track_buffer counts frames of a 30 fps video whatever frame_rate says (trackers' docs)
        kw: dict[str, Any] = {"lost_track_buffer": max(1, round(self.lost_seconds * 30)), "frame_rate": self.fps,
                              "minimum_consecutive_frames": self.min_frames, "minimum_iou_threshold": self.min_iou}
        if self.kind in ("bytetrack", "ocsort"):
            kw["high_conf_det_threshold"] = self.high_threshold
        if self.kind in ("bytetrack", "sort"):
            kw["track_activation_threshold"] = self.high_threshold
        self._impl = cls(**kw)

    def update(self, dets: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sv = self._sv
        d = sv.Detections(xyxy=dets[:, :4].astype(np.float32).reshape(-1, 4),
                          confidence=dets[:, 4].astype(np.float32)) if len(dets) else sv.Detections.empty()
        out = self._impl.update(d, timestamp=t)
        ids = np.asarray(out.tracker_id if out.tracker_id is not None else [], np.int64)
        keep = ids >= 0  # -1: a detection no confirmed track owns (yet)
        boxes = np.asarray(out.xyxy, np.float32).reshape(-1, 4)[keep]
        conf = out.confidence if out.confidence is not None else np.ones(len(ids), np.float32)
        return boxes, np.asarray(conf, np.float32)[keep], ids[keep]
