"""Frames from a video file, a network stream, a camera device or a folder of images (``watch --source``).

Video is decoded by PyAV (FFmpeg). Every source but a folder is read by a background thread that hands
frames over through a queue; the consumer waits at most ``read_timeout`` seconds for the next one, so a
stream that stops sending ends the run with an error instead of hanging it, whatever FFmpeg does.
A live source (camera, RTSP/RTMP/UDP/SRT, or an HTTP stream without a duration) keeps only the newest
frame: when detection is slower than the camera, old frames are dropped and counted rather than
queued, so the answers stay current. ``fps`` thins the frames further to at most that many per second
of source time, for files too.

Failures are ``SourceError`` (a ValueError with a one-line message naming the source): cannot open,
damaged or truncated (fewer frames decoded than the header announces), stalled.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Frame", "FrameSource", "SourceError", "open_source", "source_kind"]

_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "udp", "srt", "tcp")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
_END = object()  # the reader thread's "no more frames"


class SourceError(ValueError):
    """A source that cannot be opened or read: one line, naming the source and what to do."""


@dataclass
class Frame:
    index: int  # frame number in the source (decoded order), counting the skipped ones
    time: float  # seconds from the start of the source (presentation time; image index / fps for a folder)
    image: np.ndarray  # (H, W, 3) uint8, BGR (OpenCV's order)


def source_kind(source: str) -> str:
    """"folder", "device", "stream" or "file" for a ``--source`` value."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        return "stream"
    if source.isdigit() or source.startswith("/dev/video"):
        return "device"
    if Path(source).is_dir():
        return "folder"
    return "file"


def _av_message(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text).strip().splitlines()[0]


@dataclass
class FrameSource:
    """Iterate ``Frame`` objects; after (or during) iteration ``decoded``, ``dropped`` and ``skipped``
    say what happened to the frames that were not handed over."""

    source: str
    fps: float | None = None
    open_timeout: float = 10.0
    read_timeout: float = 10.0
    folder_fps: float = 10.0
    live: bool | None = None
    kind: str = ""
    native_fps: float | None = None
    announced_frames: int | None = None
    decoded: int = 0
    dropped: int = 0  # a live source's frames replaced by a newer one before they were taken
    skipped: int = 0  # thinned by ``fps``
    notes: list[str] = field(default_factory=list)
    _container: Any = field(default=None, repr=False)
    _files: list[Path] = field(default_factory=list, repr=False)
    #: the decoder thread of a video source and its stop flag (close() stops and joins it)
    _reading: tuple[threading.Thread, threading.Event] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.kind = source_kind(self.source)
        if self.fps is not None and not self.fps > 0:
            raise SourceError(f"--fps must be a positive number, got {self.fps}")
        if self.kind == "folder":
            self._files = sorted(p for p in Path(self.source).iterdir()
                                 if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))
            if not self._files:
                raise SourceError(f"{self.source}: no images (.jpg, .png, ...) in this folder")
            self.native_fps, self.announced_frames, self.live = self.folder_fps, len(self._files), False
            return
        self._open()

    def _open(self) -> None:
        try:
            import av
        except ImportError:
            raise SourceError("decoding video needs PyAV: pip install 'irreid-edge[watch]'") from None
        if self.kind == "file" and not Path(self.source).is_file():
            raise SourceError(f"{self.source}: no such video file (or folder); check the path")
        url, fmt, options = self.source, None, {}
        if self.kind == "device":
            url = f"/dev/video{self.source}" if self.source.isdigit() else self.source
            fmt = "v4l2"
        elif self.source.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"  # UDP loses packets on busy networks and smears frames
        try:
            self._container = av.open(url, format=fmt, options=options,
                                      timeout=(self.open_timeout, self.read_timeout))
        except Exception as e:  # av.error.* (FFmpegError and its OSError/ValueError kin)
            what = "cannot connect to the stream" if self.kind == "stream" else "cannot open"
            hint = {"stream": "check the URL, that the camera is on and reachable, and credentials",
                    "device": "check the device exists and no other program holds it",
                    "file": "not a video FFmpeg can read, or damaged/truncated"}[self.kind]
            raise SourceError(f"{self.source}: {what} ({_av_message(e)}); {hint}") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{self.source}: no video stream in it")
        vs = self._container.streams.video[0]
        vs.thread_type = "AUTO"
        self.native_fps = float(vs.average_rate) if vs.average_rate else None
        self.announced_frames = int(vs.frames) if vs.frames else None
        if self.live is None:
            self.live = self.kind == "device" or (
                self.kind == "stream" and (self.source.split(":", 1)[0].lower() in _LIVE_SCHEMES
                                           or self._container.duration is None))

    # -- reading -------------------------------------------------------------------------------------
    def _decode(self) -> Iterator[tuple[float, np.ndarray]]:
        vs = self._container.streams.video[0]
        base = None
        for frame in self._container.decode(vs):
            t = float(frame.time) if frame.time is not None else (self.decoded / (self.native_fps or 25.0))
            base = t if base is None else base
            self.decoded += 1
            yield t - base, frame.to_ndarray(format="bgr24")

    def _reader(self, q: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            for item in self._decode():
                if stop.is_set():
                    return
                if self.live:
                    try:  # keep only the newest frame: drop what the consumer has not taken yet
                        q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
                    q.put(item)
                else:
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.2)
                            break
                        except queue.Full:
                            continue
            q.put(_END)
        except Exception as e:
            q.put(e)

    def _video_items(self) -> Iterator[tuple[float, np.ndarray]]:
        q: queue.Queue[Any] = queue.Queue(maxsize=1 if self.live else 8)
        stop = threading.Event()
        thread = threading.Thread(target=self._reader, args=(q, stop), name="watch-source", daemon=True)
        self._reading = (thread, stop)  # close() stops and joins it before the container goes
        thread.start()
        try:
            while True:
                try:
                    item = q.get(timeout=self.read_timeout + 1.0)
                except queue.Empty:
                    raise SourceError(f"{self.source}: stalled: no frame for {self.read_timeout:g} s after "
                                      f"{self.decoded} frame(s); check the camera and the network "
                                      "(--read-timeout sets the wait)") from None
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise self._read_error(item)
                yield item
        finally:
            stop.set()
        self._check_complete()

    def _read_error(self, e: BaseException) -> SourceError:
        msg = _av_message(e)
        if "exit" in msg.lower() or isinstance(e, TimeoutError):  # FFmpeg's interrupt after read_timeout
            return SourceError(f"{self.source}: stalled: no data for {self.read_timeout:g} s after "
                               f"{self.decoded} frame(s); check the camera and the network")
        return SourceError(f"{self.source}: damaged after {self.decoded} frame(s) ({msg}); the frames before "
                           "were used")

    def _check_complete(self) -> None:
        """A file whose header announces more frames than could be decoded was cut short."""
        n = self.announced_frames
        if self.kind == "file" and n and self.decoded < n - max(2, n // 50):
            raise SourceError(f"{self.source}: truncated or damaged: decoded {self.decoded} of the {n} frames "
                              "its header announces; the frames before were used")

    def _folder_items(self) -> Iterator[tuple[float, np.ndarray]]:
        from ..preprocess import ImageDecodeError, decode_image

        for i, path in enumerate(self._files):
            try:
                rgb = np.asarray(decode_image(path).convert("RGB"))
            except (ImageDecodeError, OSError) as e:
                self.notes.append(f"{path}: skipped ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
                continue
            self.decoded += 1
            yield i / self.folder_fps, np.ascontiguousarray(rgb[:, :, ::-1])

    def __iter__(self) -> Iterator[Frame]:
        items = self._folder_items() if self.kind == "folder" else self._video_items()
        next_due = 0.0
        index = -1
        for t, image in items:
            index += 1
            if self.fps is not None:
                if t + 1e-6 < next_due:
                    self.skipped += 1
                    continue
                next_due = max(next_due + 1.0 / self.fps, t + 0.5 / self.fps)
            yield Frame(index, t, image)

    def close(self) -> None:
        reading = self._reading
        if reading is not None:  # a reader still inside the decoder while its container closes crashes FFmpeg
            thread, stop = reading
            stop.set()
            thread.join(timeout=self.read_timeout + 1.0)
            self._reading = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # closing a stream that already failed must not mask that failure
                pass
            self._container = None

    def describe(self) -> str:
        size = f", {self.announced_frames} frames" if self.announced_frames else ""
        rate = f", {self.native_fps:.3g} fps" if self.native_fps else ""
        return f"{self.kind}{' (live)' if self.live else ''}{rate}{size}"


def open_source(source: str, fps: float | None = None, open_timeout: float = 10.0, read_timeout: float = 10.0,
                folder_fps: float = 10.0, live: bool | None = None) -> FrameSource:
    return FrameSource(str(source), fps=fps, open_timeout=open_timeout, read_timeout=read_timeout,
                       folder_fps=folder_fps, live=live)
