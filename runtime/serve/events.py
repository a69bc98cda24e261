"""`serve --events DIR`: the recent events of `irreid-edge watch` runs, read from their output folders.

Each folder is one feed: serve reads ``DIR/events.jsonl`` (read-only, never created) from where it
left off whenever ``GET /events`` is asked, and keeps only the newest ``keep`` events of each feed
(bounded memory whatever the file's size; a file larger than ``_START_WINDOW`` when first read is read
from its last ``_START_WINDOW`` bytes). Only whole lines are taken: a line still being written (no
newline yet) waits for the next read, a line that is not a JSON object with an ``event`` name, holds a
non-finite number or is longer than ``_MAX_LINE`` is skipped and counted. A file that does not exist
yet is a feed with no events; a file that shrank or was replaced (a new `watch` run into the same
folder) is read again from its start, the events already kept staying until newer ones push them out.

Thumbnails are served by ``thumbnail(feed, name)`` only for names of the form ``track_<id>.jpg``, only
as regular files directly inside ``DIR/thumbs`` (neither it nor the file a symlink), opened
with ``O_NOFOLLOW`` step by step from the folder: no client path is ever joined to anything else.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["THUMB_NAME", "EventFeeds"]

THUMB_NAME = re.compile(r"track_[0-9]{1,18}\.jpg")
_MAX_LINE = 1 << 20  # one event line; a longer one is skipped
_START_WINDOW = 8 << 20  # a big file met for the first time: only its tail is read
_CHUNK = 1 << 20
_MAX_THUMB = 8 << 20
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _redact(source: Any) -> Any:
    """A stream URL without its ``user:password@`` part (a camera's credentials stay off the page)."""
    return _USERINFO.sub(r"\1", source) if isinstance(source, str) else source


class _Feed:
    def __init__(self, index: int, folder: Path, keep: int) -> None:
        self.index, self.folder = index, folder
        self.path = folder / "events.jsonl"
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.offset = 0
        self.ident: tuple[int, int] | None = None  # (device, inode) of the file being read
        self.run: dict[str, Any] = {}  # the newest start event's context (source, started_utc, ...)
        self.read = 0
        self.skipped = 0
        self.mid_line = False  # the read stopped inside a line being skipped
        self.error: str | None = None  # why the file could not be read, the last time

    def refresh(self, seq: Callable[[], int]) -> None:
        self.error = None
        try:
            f = os.fdopen(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK), "rb")  # a FIFO must not block
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            self.error = f"{self.path}: {e.strerror or e}"
            return
        with f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                self.error = f"{self.path}: not a regular file"
                return
            ident = (st.st_dev, st.st_ino)
            if ident != self.ident or st.st_size < self.offset:  # first read, or a new run replaced it
                self.ident, self.offset, self.mid_line = ident, 0, False
                if st.st_size > _START_WINDOW:
                    self.offset = st.st_size - _START_WINDOW - 1  # a newline just before the window keeps its first line
                    self._skip_partial(f)
            if self.mid_line:
                self._skip_partial(f)
            f.seek(self.offset)
            pending = b""
            while chunk := f.read(_CHUNK):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.offset += len(line) + 1
                    self._take(line, seq)
                if len(pending) > _MAX_LINE:  # no newline in sight: skip to the next one
                    self.offset += len(pending)
                    self.skipped += 1
                    pending = b""
                    self._skip_partial(f)
                    f.seek(self.offset)
            # ``pending``: a line still being written, read again from its start next time

    def _skip_partial(self, f: Any) -> None:
        """Move ``offset`` past the next newline (the rest of a line entered in its middle or skipped);
        with none yet, ``mid_line`` says to go on skipping at the next read."""
        f.seek(self.offset)
        self.mid_line = True
        while chunk := f.read(_CHUNK):
            cut = chunk.find(b"\n")
            if cut >= 0:
                self.offset += cut + 1
                self.mid_line = False
                return
            self.offset += len(chunk)

    def _take(self, line: bytes, seq: Callable[[], int]) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line, parse_constant=_no_constant)
        except ValueError:  # also UnicodeDecodeError
            self.skipped += 1
            return
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            self.skipped += 1
            return
        if event["event"] == "start":
            event["source"] = _redact(event.get("source"))
            self.run = {k: event.get(k) for k in ("source", "source_kind", "modality", "camera", "started_utc")
                        if event.get(k) is not None}
        thumb = event.get("thumbnail")
        name = os.path.basename(thumb) if isinstance(thumb, str) else ""
        event["thumbnail_url"] = f"/events/{self.index}/thumbs/{name}" if THUMB_NAME.fullmatch(name) else None
        self.read += 1
        self.events.append({**event, "feed": self.index, "seq": seq(), "run": self.run})

    def describe(self) -> dict[str, Any]:
        return {"feed": self.index, "folder": str(self.folder), "exists": self.path.is_file(), "read": self.read,
                "skipped": self.skipped, "error": self.error, "run": self.run}


class EventFeeds:
    def __init__(self, folders: Iterable[str | os.PathLike[str]], keep: int = 500) -> None:
        self.keep = keep
        self.feeds = [_Feed(i, Path(f), keep) for i, f in enumerate(folders)]
        self._seq = itertools.count(1).__next__
        self._lock = threading.Lock()  # one reader at a time: offsets and the sequence stay consistent

    def __len__(self) -> int:
        return len(self.feeds)

    def recent(self, limit: int) -> dict[str, Any]:
        """The newest ``limit`` events of all feeds, oldest first (each with ``feed``, ``seq``, ``run``
        and ``thumbnail_url``), and each feed's state."""
        merged: list[dict[str, Any]] = []
        with self._lock:
            for feed in self.feeds:
                feed.refresh(self._seq)
                merged += list(feed.events)[-limit:] if limit else []
            feeds = [f.describe() for f in self.feeds]
        merged.sort(key=lambda e: e["seq"])
        return {"feeds": feeds, "events": merged[-limit:] if limit else []}

    def thumbnail(self, feed: int, name: str) -> bytes | None:
        """The bytes of ``DIR/thumbs/<name>`` of feed ``feed``, or None (unknown feed, a name that is not
        ``track_<id>.jpg``, a missing file, a symlink, anything that resolves outside the folder)."""
        if not 0 <= feed < len(self.feeds) or not THUMB_NAME.fullmatch(name):
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
        fds: list[int] = []
        try:  # each step relative to the last, none following a link: thumbs/ and the file are the folder's own
            fds.append(os.open(self.feeds[feed].folder, os.O_RDONLY | os.O_DIRECTORY))
            fds.append(os.open("thumbs", flags | os.O_DIRECTORY, dir_fd=fds[-1]))
            fds.append(os.open(name, flags, dir_fd=fds[-1]))
            st = os.fstat(fds[-1])
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_THUMB:
                return None
            with os.fdopen(fds.pop(), "rb") as f:
                return f.read(_MAX_THUMB)
        except OSError:
            return None
        finally:
            for fd in fds:
                os.close(fd)
