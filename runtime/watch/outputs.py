"""What `watch` leaves behind: JSON-lines events, crop thumbnails, the annotated video, the summary table.

Every event is one JSON object on its own line, flushed as soon as it is written, so a run that fails
or is interrupted keeps every event written so far (``events.jsonl``)::

    {"event": "start", "source": str, "source_kind": str, "modality": "ir"|"rgb", "detector": str,
     "tracker": str, "model": str, "backend": str, "gallery": str, "started_utc": ISO 8601}
    {"event": "match", "track": int, "first_seen": s, "last_seen": s, "first_frame": int, "last_frame": int,
     "frames": int, "identity": gallery path | null (unknown), "distance": float | null,
     "matches": [{"rank", "distance", "path", "id", "camera"?}], "queries": int, "thumbnail": path}
    {"event": "track_end", ... the same fields ..., "enrolled": [entry ids]?}
    {"event": "end", "frames": int, "processed": int, "tracks": int, "error": str | null, "seconds": {...}}

Times are seconds from the start of the source; ``started_utc`` anchors them to the clock.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["EventLog", "VideoWriter", "draw_tracks", "summary_table", "write_thumbnail"]


class EventLog:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] | None = open(self.path, "w", encoding="utf-8")
        self.count = 0

    def write(self, event: dict[str, Any]) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps(event, allow_nan=False) + "\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def write_thumbnail(folder: Path, track_id: int, crop_bgr: np.ndarray) -> str:
    """Save a track's best crop as ``<folder>/track_<id>.jpg`` (replaced atomically); its path."""
    import io

    from PIL import Image

    from ..base.fileio import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop_bgr[:, :, ::-1])).save(buf, format="JPEG", quality=90)
    path = folder / f"track_{track_id}.jpg"
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def _colour(track_id: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(track_id)
    c = rng.integers(64, 256, 3)
    return int(c[0]), int(c[1]), int(c[2])


def draw_tracks(frame_bgr: np.ndarray, boxes: np.ndarray, ids: np.ndarray, labels: dict[int, str]) -> np.ndarray:
    """A copy of the frame with each tracked box, its track id and its answer drawn on it."""
    import cv2

    out = frame_bgr.copy()
    scale = max(0.4, frame_bgr.shape[0] / 1000)
    for (x1, y1, x2, y2), tid in zip(boxes.astype(int), ids):
        c = _colour(int(tid))
        cv2.rectangle(out, (x1, y1), (x2, y2), c, max(1, round(2 * scale)))
        text = f"#{tid} {labels.get(int(tid), '...')}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, 1)
        top = max(0, y1 - th - 6)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + 6), c, -1)
        cv2.putText(out, text, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


class VideoWriter:
    """An H.264 (else MPEG-4 part 2) video through PyAV, opened on the first frame (its size)."""

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self._container: Any = None
        self._stream: Any = None
        self.frames = 0

    def _open(self, h: int, w: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w")
        rate = Fraction(self.fps).limit_denominator(1001)
        for codec in ("libx264", "h264", "mpeg4"):
            if codec in av.codecs_available:
                try:
                    self._stream = self._container.add_stream(codec, rate=rate)
                    break
                except Exception:  # an encoder listed but not usable in this FFmpeg build
                    continue
        if self._stream is None:
            raise ValueError(f"{self.path}: this FFmpeg (PyAV) has no H.264 or MPEG-4 encoder; pass --no-video")
        self._stream.width, self._stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
        self._stream.pix_fmt = "yuv420p"

    def write(self, frame_bgr: np.ndarray) -> None:
        import av

        if self._container is None:
            self._open(*frame_bgr.shape[:2])
        h, w = self._stream.height, self._stream.width
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr[:h, :w]), format="bgr24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():  # flush the encoder
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None


def summary_table(tracks: list[Any], seconds: dict[str, float], processed: int) -> str:
    """The end-of-run table: one row per track, then where the time went."""
    lines = [f"{'track':>5}  {'frames':>6}  {'seen (s)':>13}  {'distance':>8}  identity"]
    for r in sorted(tracks, key=lambda r: r.track_id):
        dist = f"{r.distance:8.4f}" if r.distance is not None else f"{'-':>8}"
        ident = r.identity if r.identity is not None else ("unknown" if r.queries else "(not asked)")
        lines.append(f"{r.track_id:>5}  {r.frames:>6}  {r.first_time:6.1f}-{r.last_time:6.1f}  {dist}  {ident}")
    if not tracks:
        lines.append("  (no track)")
    total = sum(seconds.values())
    parts = ", ".join(f"{k} {1000 * v / max(1, processed):.1f}" for k, v in seconds.items())
    lines.append(f"{processed} frames in {total:.1f} s ({processed / total if total > 0 else 0:.1f} frames/s); "
                 f"ms per frame: {parts}")
    return "\n".join(lines)
