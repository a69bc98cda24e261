"""What ``irreid-edge serve`` does, without HTTP: encoders and gallery loaded once, micro-batched
embedding, searches on the in-memory store, and gallery writes committed by one writer thread.

Gallery writes: each request checks its values and embeds its image (nothing written yet), then
hands the write to the one writer thread, which commits everything queued at that moment through
``Gallery.commit_each`` (files and rows together, one durable index write for many uploads) and
only then answers the requests, so every 2xx means the entry's file and row are on disk. Shutdown stops accepting, lets accepted requests finish, drains the writer
and closes the store: no accepted write is lost.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..api import ImageEncoder
from ..gallery.store.base import Filters
from ..gallery.store.fill import parse_time as fill_parse_time
from ..gallery.store.folder import Gallery
from ..images import decode_bytes
from ..preprocess import preprocess_image
from .batcher import MicroBatcher

__all__ = ["Limits", "Service", "parse_time"]


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 8 << 20  # one uploaded image
    max_pixels: int = 16_000_000  # decoded size (a 4K frame is 8.3 M pixels)
    max_top_k: int = 1000
    max_body_bytes_in_flight: int = 64 << 20  # all uploads being received at once (slow senders hold it)
    body_idle_s: float = 10.0  # longest wait for the next piece of a request body
    body_total_s: float = 60.0  # longest time to receive one request body


def parse_time(value: str | None, name: str) -> float | None:
    """Seconds since the epoch from a number or an ISO 8601 time (no zone = UTC); finite, 1970-9999."""
    if value is None or value == "":
        return None
    return fill_parse_time(value, name)


class _Writer:
    """The one thread that writes the gallery: it takes every write queued at that moment and
    commits them together (``Gallery.commit_each``: one index write for all), then answers each.
    ``seq`` numbers the writes in the order they took effect (per process)."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.commits = 0
        self.seq = 0
        self._q: queue.Queue[tuple[tuple[str, Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="irreid-gallery-writer", daemon=True)
        self._thread.start()

    def submit(self, op: tuple[str, Any]) -> Future[Any]:
        fut: Future[Any] = Future()
        self._q.put((op, fut))
        return fut

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                return
            todo = [first]
            while True:  # everything already waiting goes into the same write
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                todo.append(item)
            self._commit(todo)

    def _commit(self, todo: list[tuple[tuple[str, Any], Future[Any]]]) -> None:
        try:
            results = self.gallery.commit_each([op for op, _ in todo])
        except Exception as e:  # not expected (commit_each returns errors): answer everyone anyway
            results = [e] * len(todo)
        self.commits += 1
        for (_, fut), res in zip(todo, results):
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                self.seq += 1
                fut.set_result((res, self.seq))

    def close(self, timeout: float = 60.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)


class Service:
    def __init__(self, encoders: dict[str, ImageEncoder], gallery: Gallery, limits: Limits | None = None,
                 max_batch: int = 16, window_s: float = 0.002, model: str = "") -> None:
        self.encoders, self.gallery = encoders, gallery
        self.limits = limits or Limits()
        self.model = model
        self.batchers = {m: MicroBatcher(e.embed_pixels, max_batch, window_s, name=m) for m, e in encoders.items()}
        self.writer = _Writer(gallery)  # every gallery write goes through it, files and rows together

    def encoder(self, modality: str) -> ImageEncoder:
        if modality not in self.encoders:
            raise KeyError(f"modality={modality!r} is invalid; valid values: {', '.join(sorted(self.encoders))}")
        return self.encoders[modality]

    def info(self) -> dict[str, Any]:
        any_enc = next(iter(self.encoders.values()))
        return {
            "model": self.model, "backend": any_enc.backend, "precision": any_enc.spec.precision,
            "encoders": {m: {"spec": e.spec.to_dict(), "spec_fingerprint": e.spec.fingerprint(),
                             "backend": e.backend, "precision": e.spec.precision} for m, e in self.encoders.items()},
            "gallery": {"size": len(self.gallery), "modality": self.gallery.modality,
                        "store": type(self.gallery.store).__name__,
                        "search": getattr(self.gallery.store, "search_backend", None)},
            "limits": {"max_bytes": self.limits.max_bytes, "max_pixels": self.limits.max_pixels,
                       "max_top_k": self.limits.max_top_k},
            "batching": {m: {"batches": b.batches, "images": b.images} for m, b in self.batchers.items()},
        }

    def pixels(self, data: bytes, modality: str) -> np.ndarray:
        """(3, H, W) raw pixels of one uploaded image (ImageDecodeError when it cannot be used)."""
        spec = self.encoder(modality).spec
        im = decode_bytes(data, "upload", self.limits.max_pixels, target=(spec.input_height, spec.input_width))
        return preprocess_image(im, spec.input_height, spec.input_width, spec.channel_order)

    def embed(self, pixels: np.ndarray, modality: str) -> Future[np.ndarray]:
        return self.batchers[modality].submit(pixels)

    def search(self, embedding: np.ndarray, top_k: int, filters: Filters | None) -> list[dict[str, Any]]:
        return [h.to_dict() for h in self.gallery.search(embedding[None, :], top_k, filters)[0]]

    def add(self, data: bytes, camera: str, timestamp: float | None, device: str) -> Future[Any]:
        """Check and embed (raises ValueError / ImageDecodeError; nothing written), then queue the
        write. The future gives (WriteResult, seq) once files and row are durable."""
        decode_bytes(data, "upload", self.limits.max_pixels)  # the pixel limit before anything is decoded again
        pending = self.gallery.prepare(data, camera=camera, timestamp=timestamp, device=device)
        return self.writer.submit(("add", pending))

    def remove(self, ids: Sequence[str]) -> Future[Any]:
        return self.writer.submit(("remove", list(ids)))

    def image_file(self, entry_id: str) -> Path | None:
        """The entry's file inside the gallery root (looked up by id: no client path is ever opened)."""
        get = getattr(self.gallery.store, "get", None)
        entry = get(entry_id) if get is not None else None
        return self.gallery.file_of(entry) if entry is not None else None

    def close(self) -> None:
        for b in self.batchers.values():
            b.close()
        self.writer.close()
        self.gallery.close()
