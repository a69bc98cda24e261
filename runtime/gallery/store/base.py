"""The contract every gallery store implements (local index file, Milvus Lite, Milvus server).

Embeddings handed to a store are (N, D) float32, L2-normalised (the encoders' output); distances are
1 - cosine, smaller is closer, and ties are broken by the entry id so that every store ranks alike.
An entry's ``id`` is the sha256 of the image file's bytes (the content hash): adding the same image
twice adds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["MAX_LABEL_BYTES", "MAX_PATH_BYTES", "MAX_TIME", "Entry", "Filters", "GalleryStore", "Hit",
           "check_entry", "check_label", "check_time"]

MAX_PATH_BYTES = 4096
MAX_LABEL_BYTES = 256  # camera, device, modality
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: what ISO 8601 and every store can hold


def check_time(value: float, what: str) -> float:
    """A timestamp every store can hold and every filter compares: finite, 1970 to 9999 (ValueError)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{what} {value!r} is not a finite number of seconds since the epoch")
    if not 0.0 <= value <= MAX_TIME:
        raise ValueError(f"{what} {value!r} is outside 1970-01-01 .. 9999-12-31 (seconds since the epoch)")
    return float(value)


def check_label(text: str, what: str, max_bytes: int = MAX_LABEL_BYTES) -> str:
    """Camera, device and path values: printable text of bounded size (ValueError otherwise)."""
    if not isinstance(text, str):
        raise ValueError(f"{what} {text!r} must be a string")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError(f"{what} {text!r} contains control characters; use printable text")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} is not valid UTF-8 text") from None
    if size > max_bytes:
        raise ValueError(f"{what} {text[:40]!r}... is longer than {max_bytes} bytes; shorten it")
    return text


@dataclass(frozen=True)
class Entry:
    """One gallery item and what is known about it (all but ``id`` optional)."""

    id: str  # sha256 hex of the image bytes (primary key)
    path: str = ""  # path relative to the gallery root, or an external id when there is no file
    camera: str = ""
    timestamp: float | None = None  # seconds since the epoch, UTC
    modality: str = ""  # "rgb" | "ir" | "" (unknown)
    device: str = ""  # the source device that added it (a fleet of Jetsons writes to one store)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_entry(e: Entry) -> Entry:
    """What every store accepts, checked before anything is written (ValueError naming the field)."""
    check_label(e.path, "path", MAX_PATH_BYTES)
    for what in ("camera", "modality", "device"):
        check_label(getattr(e, what), what)
    if e.timestamp is not None:
        check_time(e.timestamp, "timestamp")
    return e


@dataclass(frozen=True)
class Filters:
    """Restrict a search to some cameras, a time window and/or some devices (None = no restriction)."""

    cameras: tuple[str, ...] | None = None
    since: float | None = None  # inclusive, seconds since the epoch
    until: float | None = None  # inclusive
    devices: tuple[str, ...] | None = None

    def is_empty(self) -> bool:
        return self.cameras is None and self.since is None and self.until is None and self.devices is None


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    distance: float  # 1 - cosine
    entry: Entry

    def to_dict(self) -> dict[str, Any]:
        """The result object of ``match --json`` and ``POST /match``: rank, distance, path, metadata."""
        d = {"rank": self.rank, "distance": self.distance, "path": self.entry.path}
        d.update({k: v for k, v in self.entry.to_dict().items() if k != "path"})
        return d


@runtime_checkable
class GalleryStore(Protocol):
    """A searchable set of gallery embeddings tied to one model (its spec fingerprint)."""

    def __len__(self) -> int: ...

    def add(self, embeddings: np.ndarray, entries: Sequence[Entry]) -> int:
        """Add rows (N, D) float32 with their entries; returns how many were new (idempotent by id)."""
        ...

    def remove(self, ids: Sequence[str]) -> int:
        """Remove entries by id; returns how many existed."""
        ...

    def search(self, queries: np.ndarray, top_k: int, filters: Filters | None = None) -> list[list[Hit]]:
        """Exact top-k per query row (Q, D), nearest first; ties by entry id."""
        ...

    def close(self) -> None:
        """Flush and release (a graceful shutdown loses no accepted write)."""
        ...
