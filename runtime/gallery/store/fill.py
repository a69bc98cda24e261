"""Filling a store from a gallery folder: hash every file, embed only the content the store lacks.

The content hash is the store's primary key, so a re-run (or another device pushing the same crops)
embeds and adds nothing, and an interrupted run resumes for free: rows are added every few hundred
images, and the next run skips them.

Metadata of each entry (docs/fleet.md "What each entry carries"):
- path: relative to the gallery root; camera / device: ``--camera`` / ``--device`` (device defaults
  to this machine's host name), unless the sidecar CSV gives them per file;
- timestamp: the sidecar CSV's ``timestamp`` when given, else the file's modification time (what a
  camera pipeline that writes crops as it sees people leaves behind);
- modality: the encoder the gallery was embedded with (``--gallery-modality``).

Sidecar CSV (``--meta FILE``): a header row with ``path`` and any of ``camera``, ``timestamp``,
``device``; other columns are ignored. ``timestamp`` is ISO 8601 (a time without an offset is UTC) or
seconds since the epoch; an empty cell falls back to the flag / the file's time.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .base import Entry, GalleryStore, check_time
from .base import check_label as base_check_label

__all__ = ["FillStats", "Meta", "check_label", "fill_store", "parse_time", "read_meta_csv"]


@dataclass
class FillStats:
    images: int = 0  # usable image files in the gallery
    added: int = 0  # new entries written to the store
    present: int = 0  # already in the store (same content), not embedded again
    duplicates: int = 0  # same content as another file of this run (one entry for both)
    skipped: int = 0
    seconds: float = 0.0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped_files"] = [{"path": p, "reason": r} for p, r in self.skipped_files]
        return d

    def summary(self) -> str:
        return (f"{self.images} images: added {self.added}, already in the store {self.present}, duplicates "
                f"{self.duplicates}, skipped {self.skipped} in {self.seconds:.1f}s")


@dataclass(frozen=True)
class Meta:
    camera: str | None = None
    timestamp: float | None = None
    device: str | None = None


def check_label(text: str, what: str) -> str:
    """Camera and device names are printable text of at most 256 bytes (a control character is a
    mistake, and no store should have to carry one into a filter expression)."""
    return base_check_label(text, what)


def parse_time(text: str, what: str) -> float:
    """Seconds since the epoch from ISO 8601 (no offset = UTC) or a number; ValueError names ``what``."""
    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        try:
            dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what} {text!r} is not a time; write ISO 8601 (2026-11-30T15:04:05Z) or "
                             "seconds since the epoch") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        value = dt.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite time")
    return check_time(value, what)


def read_meta_csv(path: str | Path) -> dict[str, Meta]:
    """Per-file metadata from a sidecar CSV, keyed by the gallery-relative POSIX path."""
    p = Path(path)
    try:
        f = open(p, newline="", encoding="utf-8-sig")  # utf-8-sig: spreadsheets write a BOM
    except OSError as e:
        raise ValueError(f"{p}: cannot read the metadata CSV ({e.strerror}); check --meta") from None
    out: dict[str, Meta] = {}
    with f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in reader.fieldnames or []]
        if "path" not in cols:
            raise ValueError(f"{p}: the metadata CSV needs a header row with a 'path' column (and any of "
                             f"camera, timestamp, device); found {cols or 'no header'}")
        for row in reader:
            line = reader.line_num
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
            rel = row.get("path", "").replace("\\", "/")
            while rel.startswith("./"):
                rel = rel[2:]
            if not rel:
                raise ValueError(f"{p}:{line}: empty path; every row names a file relative to the gallery")
            ts = parse_time(row["timestamp"], f"{p}:{line}: timestamp") if row.get("timestamp") else None
            cam = check_label(row.get("camera", ""), f"{p}:{line}: camera") or None
            dev = check_label(row.get("device", ""), f"{p}:{line}: device") or None
            out[rel] = Meta(cam, ts, dev)
    return out


def _hash_all(files: list[Any], workers: int, quiet: bool, skipped: list[tuple[str, str]]) -> list[tuple[Any, str]]:
    from ...base.progress import Progress
    from ...spec import file_sha256
    from ..indexer import bounded_map

    def one(f: Any) -> tuple[Any, str | None, str | None]:
        try:
            return f, file_sha256(f.path), None
        except OSError as e:
            return f, None, f"{f.path}: cannot read ({e.strerror}); fix its permissions or remove it"

    out = []
    with Progress(len(files), "hashing", quiet=quiet) as bar:
        for f, sha, err in bounded_map(one, files, workers, ahead=max(8, 4 * max(1, workers))):
            bar.update(1)
            if sha is None:
                skipped.append((str(f.path), str(err)))
            else:
                out.append((f, sha))
    return out


def fill_store(gallery: str | Path, store: GalleryStore, encoder: Any, *, modality: str, camera: str = "",
               device: str = "", meta: dict[str, Meta] | None = None, follow_links: bool = False,
               batch: int = 32, workers: int = 4, quiet: bool = False, flush_rows: int = 512,
               say: Callable[[str], None] | None = None) -> FillStats:
    """Add the gallery's images that the store does not hold yet. Returns counts."""
    from ...base.progress import Progress
    from ..indexer import bounded_map, embed_items, prepare_file
    from ..scan import scan_gallery

    t0 = time.perf_counter()
    check_label(camera, "--camera")
    check_label(device, "--device")
    say = say or (lambda m: None)
    meta = meta or {}
    scan = scan_gallery(gallery, follow_links)
    if not scan.files:
        raise FileNotFoundError(f"{gallery}: no images in the gallery; add crops or check the path")
    stats = FillStats(skipped_files=list(scan.skipped))
    hashed = _hash_all(scan.files, workers, quiet, stats.skipped_files)
    can_ask = hasattr(store, "existing")  # not in the protocol: without it, add() dedupes and counts
    existing: set[str] = getattr(store, "existing")([sha for _, sha in hashed]) if can_ask else set()  # noqa: B009
    todo: dict[str, Any] = {}
    for f, sha in hashed:
        if sha in existing:
            stats.present += 1
        elif sha in todo:
            stats.duplicates += 1
        else:
            todo[sha] = f
    pending_e: list[Entry] = []
    pending_x: list[np.ndarray] = []

    def flush() -> None:
        if pending_e:
            stats.added += store.add(np.stack(pending_x), pending_e)
            pending_e.clear()
            pending_x.clear()

    items = list(todo.items())
    prepared = bounded_map(lambda t: prepare_file(t[1], encoder.spec, None, want_hash=False), items, workers,
                           ahead=max(2 * batch, 8))
    sha_of = {id(f): sha for sha, f in items}
    bad = 0
    with Progress(len(items), "embedding", quiet=quiet) as bar:
        for item, emb in embed_items(prepared, encoder.embed, batch):
            bar.update(1)
            if item.error is not None or emb is None:
                stats.skipped_files.append((str(item.file.path), str(item.error)))
                say(str(item.error))
                bad += 1
                continue
            m = meta.get(item.file.rel, Meta())
            ts = m.timestamp if m.timestamp is not None else item.file.mtime_ns / 1e9
            pending_e.append(Entry(id=sha_of[id(item.file)], path=item.file.rel, camera=m.camera or camera,
                                   timestamp=ts, modality=modality, device=m.device or device))
            pending_x.append(emb)
            if len(pending_e) >= flush_rows:
                flush()
    flush()
    stats.images = len(hashed) - bad
    if not can_ask:
        stats.present = len(items) - bad - stats.added
    stats.skipped = len(stats.skipped_files)
    stats.seconds = time.perf_counter() - t0
    unknown = sorted(set(meta) - {f.rel for f in scan.files})
    if unknown:
        say(f"{len(unknown)} row(s) of the metadata CSV name no file of the gallery (first: {unknown[0]})")
    return stats
