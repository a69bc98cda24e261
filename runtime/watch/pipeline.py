"""The watch loop: source -> detect -> track -> embed per track -> gallery -> events, video, summary.

Each stage hands its result to the next; the loop only times them and keeps the per-track records.
A source that fails mid-way (truncated file, dead or stalled stream) ends the loop like the end of
the source does: open tracks are closed and written, the video is finalised, and the error is
returned in ``WatchResult.error`` (the command prints it as its one error line and exits non-zero).
"""

from __future__ import annotations

import datetime as _dt
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .identify import Crop, TrackRecord, crop_quality
from .outputs import EventLog, VideoWriter, draw_tracks, summary_table, write_thumbnail
from .source import FrameSource, SourceError

__all__ = ["STAGES", "WatchConfig", "WatchResult", "run_watch"]

#: where the time goes, in the order of the loop (the summary's and the bench's split)
STAGES = ("decode", "detect", "track", "embed", "match", "output")


@dataclass
class WatchConfig:
    out: Path
    modality: str = "ir"  # the source's: which encoder embeds the tracks
    top_k: int = 5
    threshold: float | None = 0.5  # top-1 distance above this = "unknown"; None: always the top-1
    keep_crops: int = 5
    min_frames: int = 3
    requery_seconds: float = 2.0
    lost_seconds: float = 1.5
    min_box: int = 12  # boxes narrower or shorter than this (pixels) are tracked but not embedded
    video: bool = True
    thumbnails: bool = True
    enroll: bool = False
    enroll_crops: int = 3
    camera: str = ""
    device: str = ""
    max_frames: int | None = None
    quiet: bool = False
    progress_seconds: float = 5.0


@dataclass
class WatchResult:
    tracks: list[TrackRecord]
    decoded: int
    processed: int
    dropped: int
    skipped: int
    seconds: dict[str, float]
    events: Path
    video: Path | None
    error: str | None = None
    enrolled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return summary_table(self.tracks, self.seconds, self.processed)


class _Loop:
    def __init__(self, cfg: WatchConfig, source: FrameSource, detector: Any, tracker: Any, encoder: Any,
                 gallery: Any, say: Callable[[str], None], header: dict[str, Any]) -> None:
        self.cfg, self.source, self.detector, self.tracker = cfg, source, detector, tracker
        self.encoder, self.gallery, self.say = encoder, gallery, say
        self.thumbs = cfg.out / "thumbs"
        self.log = EventLog(cfg.out / "events.jsonl")
        fps = source.fps or source.native_fps or 10.0
        self.video = VideoWriter(cfg.out / "annotated.mp4", fps) if cfg.video else None
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.active: dict[int, TrackRecord] = {}
        self.done: list[TrackRecord] = []
        self.enrolled: list[str] = []
        self.processed = 0
        self.started = time.time()
        self.log.write({"event": "start", **header,
                        "started_utc": _dt.datetime.fromtimestamp(self.started, _dt.timezone.utc).isoformat()})

    # -- one frame ---------------------------------------------------------------------------------------
    def step(self, index: int, t: float, image: np.ndarray) -> None:
        c0 = time.perf_counter()
        dets = self.detector.detect(image)
        c1 = time.perf_counter()
        boxes, scores, ids = self.tracker.update(dets, t)
        c2 = time.perf_counter()
        self._collect(index, t, image, boxes, scores, ids)
        self._embed_pending()
        c3 = time.perf_counter()
        self._ask([r for r in self.active.values() if r.due(t, self.cfg.min_frames, self.cfg.requery_seconds)], t,
                  "match")
        self._end_lost(t)
        c4 = time.perf_counter()
        if self.video is not None:
            labels = {tid: self._label(r) for tid, r in self.active.items()}
            self.video.write(draw_tracks(image, boxes, ids, labels))
        c5 = time.perf_counter()
        for k, v in zip(STAGES[1:], (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4)):
            self.seconds[k] += v
        self.processed += 1

    def _collect(self, index: int, t: float, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                 ids: np.ndarray) -> None:
        h, w = image.shape[:2]
        for box, score, tid in zip(boxes, scores, ids):
            rec = self.active.get(int(tid))
            if rec is None:
                rec = self.active[int(tid)] = TrackRecord(int(tid), t, t, index, index)
            rec.see(t, index)
            x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
            x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
            if x2 - x1 < self.cfg.min_box or y2 - y1 < self.cfg.min_box:
                continue
            crop = image[y1:y2, x1:x2]
            q = crop_quality(crop, box, image.shape, float(score))
            kept = rec.offer(Crop(crop.copy(), q, t, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))),
                             self.cfg.keep_crops)
            if kept and self.cfg.thumbnails and rec.crops[0].time == t:
                rec.thumbnail = write_thumbnail(self.thumbs, rec.track_id, rec.crops[0].image)

    def _embed_pending(self) -> None:
        pending = [c for r in self.active.values() for c in r.pending()]
        if not pending:
            return
        embs = self.encoder.embed([c.image for c in pending], channel_order="bgr")  # (N, D)
        for c, e in zip(pending, embs):
            c.embedding = e

    def _ask(self, due: list[TrackRecord], t: float, kind: str) -> None:
        vecs: list[tuple[TrackRecord, np.ndarray]] = []
        for r in due:
            v = r.aggregate()
            if v is not None:
                vecs.append((r, v))
        if not vecs:
            return
        hits = self.gallery.search(np.stack([v for _, v in vecs]), self.cfg.top_k) if len(self.gallery) else \
            [[] for _ in vecs]
        for (r, _), h in zip(vecs, hits):
            r.answer(h, t, self.cfg.threshold)
            if kind == "match":
                self.log.write(r.to_event("match"))

    def _end_lost(self, t: float) -> None:
        lost = [r for r in self.active.values() if t - r.last_time > self.cfg.lost_seconds]
        self._finish(lost, t)

    def _finish(self, records: list[TrackRecord], t: float) -> None:
        if not records:
            return
        self._embed_pending()
        self._ask([r for r in records if r.due(t, self.cfg.min_frames, 0.0, ended=True)], t, "final")
        for r in records:
            self.active.pop(r.track_id, None)
            event = r.to_event("track_end")
            if self.cfg.enroll and r.frames >= self.cfg.min_frames:
                event["enrolled"] = self._enroll(r)
            self.log.write(event)
            self.done.append(r)

    def _enroll(self, r: TrackRecord) -> list[str]:
        ids = []
        for c in r.crops[:self.cfg.enroll_crops]:
            entry, _ = self.gallery.add(c.image, camera=self.cfg.camera, timestamp=self.started + c.time,
                                        device=self.cfg.device, channel_order="bgr")
            ids.append(entry.id)
        self.enrolled += ids
        return ids

    def _label(self, r: TrackRecord) -> str:
        if r.queries == 0:
            return "..."
        if r.identity is None:
            return "unknown"
        return f"{Path(r.identity).stem} {r.distance:.2f}"

    def close(self, error: str | None) -> WatchResult:
        self._finish(list(self.active.values()), float("inf"))
        video_path = None
        if self.video is not None:
            self.video.close()
            video_path = self.video.path if self.video.frames else None
        self.log.write({"event": "end", "frames": self.source.decoded, "processed": self.processed,
                        "dropped": self.source.dropped, "skipped": self.source.skipped, "tracks": len(self.done),
                        "error": error, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}})
        self.log.close()
        return WatchResult(self.done, self.source.decoded, self.processed, self.source.dropped, self.source.skipped,
                           self.seconds, self.log.path, video_path, error, self.enrolled)


def _stderr(msg: str) -> None:
    print(f"irreid-edge watch: {msg}", file=sys.stderr, flush=True)


def run_watch(cfg: WatchConfig, source: FrameSource, detector: Any, tracker: Any, encoder: Any, gallery: Any,
              header: dict[str, Any] | None = None, say: Callable[[str], None] | None = None) -> WatchResult:
    """Run the loop over ``source`` until it ends, fails or ``cfg.max_frames`` frames were processed.

    ``encoder``: a ``runtime.api.ImageEncoder`` of the source's modality; ``gallery``: anything with
    ``__len__``, ``search(Q x D, top_k)`` and, for ``enroll``, ``add(image, camera, timestamp, device,
    channel_order)`` (``runtime.gallery.store.folder.Gallery``, or ``StoreGallery`` for a --store).
    """
    say = say or ((lambda m: None) if cfg.quiet else _stderr)
    if not cfg.device:
        cfg.device = socket.gethostname()
    cfg.out.mkdir(parents=True, exist_ok=True)
    loop = _Loop(cfg, source, detector, tracker, encoder, gallery, say, header or {})
    error = None
    last_note = time.perf_counter()
    try:
        it = iter(source)
        while cfg.max_frames is None or loop.processed < cfg.max_frames:
            t0 = time.perf_counter()
            frame = next(it, None)
            loop.seconds["decode"] += time.perf_counter() - t0
            if frame is None:
                break
            loop.step(frame.index, frame.time, frame.image)
            if time.perf_counter() - last_note >= cfg.progress_seconds:
                last_note = time.perf_counter()
                say(f"frame {frame.index} (t={frame.time:.1f} s): {loop.processed} processed, "
                    f"{len(loop.active)} active track(s), {len(loop.done)} ended, {source.dropped} dropped")
    except SourceError as e:
        error = str(e)
    finally:
        source.close()
        for note in source.notes:
            say(note)
        result = loop.close(error)
    return result
