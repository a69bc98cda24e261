"""The local gallery store: the index file (runtime/gallery/index.py) held in memory, as a ``GalleryStore``.

- Ranking is ``irreid-edge match``'s: rows are the index's float16 rows re-normalised in float32
  (``GalleryIndex.as_float32``), distance = 1 - cosine from ``runtime.search.rank.topk``, rounded to 6
  decimals as ``match --json`` prints it. In memory the rows are ordered by (entry id, path), so
  ``topk``'s tie rule (lower row first) breaks ties by entry id (base.py); two files with the same
  content share an id and stay in path order, as in ``match``.
- Metadata the index format does not hold (camera, timestamp, modality, device) lives in a sidecar
  ``<index>.meta.json`` keyed by entry id: ``{"format_version": 1, "entries": {id: {...}}}``, written
  atomically. A folder refresh (``irreid-edge index``) keeps it: it is keyed by content, not by row.
- Writes are durable when ``add``/``remove`` return: under the index's ``flock`` (so an
  ``irreid-edge index`` running beside it waits), re-read the file if another process replaced it,
  apply, write atomically (temp file + fsync + rename), then swap the in-memory state in one
  assignment, so searches running in other threads see the old gallery or the new one.
- Searching never re-reads the file; ``search="int8"`` keeps the exact int8 searcher of the
  current rows (rebuilt by the writer after each write, before the swap).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...base.choices import SEARCH_BACKENDS
from ...base.fileio import atomic_write_text, read_json
from ...search.rank import topk
from ...spec import ModelSpec
from ..index import (
    GalleryIndex,
    IndexEntry,
    IndexFileError,
    _f16_to_unit_f32,
    index_lock,
    read_index,
    write_index,
)
from .base import Entry, Filters, Hit, check_entry, check_time

__all__ = ["LocalStore", "meta_path"]

META_FORMAT_VERSION = 1
_META_KEYS = ("camera", "timestamp", "modality", "device")


def meta_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}.meta.json")


@dataclass(frozen=True)
class _State:
    """One consistent view of the gallery; replaced whole, never edited."""

    rows: list[IndexEntry]  # file order (sorted by path, as the indexer writes them)
    f16: np.ndarray  # (N, D) float16 in file order, as stored
    entries: list[Entry]  # search order: sorted by (id, path)
    unit: np.ndarray  # (N, D) float32 unit rows in search order, read-only
    meta: dict[str, dict[str, Any]]
    stamp: tuple[int, int, int] | None  # (inode, size, mtime_ns) of the file this state was read from
    by_id: dict[str, int]  # entry id -> its first row in search order
    searcher: Any = None  # Int8Searcher over ``unit`` when search="int8"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _entry(row: IndexEntry, meta: dict[str, Any], modality: str) -> Entry:
    return Entry(id=row.sha256, path=row.path, camera=str(meta.get("camera") or ""),
                 timestamp=_stored_time(meta.get("timestamp")), modality=str(meta.get("modality") or modality),
                 device=str(meta.get("device") or ""))


def _stored_time(ts: Any) -> float | None:
    """A sidecar timestamp, or None (unknown: outside every time window) when it is not a usable one:
    a NaN written by an older version must not pass ``since=`` filters."""
    try:
        return check_time(float(ts), "timestamp")
    except (TypeError, ValueError):
        return None


def _read_meta(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    data = read_json(path, missing="missing", malformed="delete it (the entries' camera/time/device are lost) "
                     "or restore it from a backup", error=IndexFileError)
    if not isinstance(data, dict) or data.get("format_version") != META_FORMAT_VERSION \
            or not isinstance(data.get("entries"), dict):
        raise IndexFileError(f"{path}: not an irreid-edge metadata file (format_version "
                             f"{META_FORMAT_VERSION}); delete it or restore it from a backup")
    return {str(k): dict(v) for k, v in data["entries"].items() if isinstance(v, dict)}


class LocalStore:
    """A ``GalleryStore`` over one index file (created on the first write when absent)."""

    def __init__(self, index_path: str | os.PathLike[str], spec: ModelSpec,
                 gallery_root: str | os.PathLike[str] | None = None, search: str = "auto",
                 threads: int | None = None) -> None:
        if search not in SEARCH_BACKENDS:
            raise ValueError(f"search backend {search!r} is invalid; valid values: {', '.join(SEARCH_BACKENDS)}")
        self.path = Path(index_path)
        self.spec = spec
        self.root = Path(gallery_root) if gallery_root is not None else None
        self.search_backend = search
        self.threads = threads
        self._write_lock = threading.Lock()
        self._state = self._load()

    # -- reading ------------------------------------------------------------------------------
    def _load(self) -> _State:
        stamp = _stamp(self.path)
        if stamp is None:
            d = self.spec.embedding_dim
            return self._make_state([], np.zeros((0, d), np.float16), _read_meta(meta_path(self.path)), None)
        idx = read_index(self.path, gallery=self.root)
        self._check_spec(idx)
        f16 = np.array(idx.embeddings, dtype=np.float16)  # in memory: the file may be replaced under us
        return self._make_state(list(idx.entries), f16, _read_meta(meta_path(self.path)), stamp)

    def _check_spec(self, idx: GalleryIndex) -> None:
        """Another model's index, or (with a gallery root) another gallery's, is refused as ``match``
        refuses it: its rows would be served under this gallery's paths."""
        from ..indexer import check_gallery, check_spec

        if self.root is not None:
            check_gallery(idx, self.root)
        if idx.header.get("spec_fingerprint") != self.spec.fingerprint():
            check_spec(idx, self.spec, self.root or self.path.parent)  # raises with the fix

    def _make_state(self, rows: list[IndexEntry], f16: np.ndarray, meta: dict[str, dict[str, Any]],
                    stamp: tuple[int, int, int] | None) -> _State:
        unit_file = _f16_to_unit_f32(f16)  # GalleryIndex.as_float32: match's rows, exactly
        order = sorted(range(len(rows)), key=lambda i: (rows[i].sha256, rows[i].path))
        unit = np.ascontiguousarray(unit_file[order]) if rows else np.zeros((0, f16.shape[1]), np.float32)
        unit.setflags(write=False)
        modality = self.spec.modality
        entries = [_entry(rows[i], meta.get(rows[i].sha256, {}), modality) for i in order]
        searcher = None
        if self.search_backend == "int8" and rows:
            from ...search.int8 import Int8Searcher

            searcher = Int8Searcher(unit, self.threads)
        by_id: dict[str, int] = {}
        for i, e in enumerate(entries):
            by_id.setdefault(e.id, i)
        return _State(rows, f16, entries, unit, meta, stamp, by_id, searcher)

    def __len__(self) -> int:
        return len(self._state.entries)

    @property
    def entries(self) -> list[Entry]:
        """The entries, ordered by (id, path)."""
        return list(self._state.entries)

    def get(self, entry_id: str) -> Entry | None:
        state = self._state
        i = state.by_id.get(entry_id)
        return None if i is None else state.entries[i]

    def paths_of(self, entry_id: str) -> list[str]:
        """Every path holding this content (a folder may hold two copies of one image)."""
        return [r.path for r in self._state.rows if r.sha256 == entry_id]

    def search(self, queries: np.ndarray, top_k: int, filters: Filters | None = None) -> list[list[Hit]]:
        state = self._state  # one consistent snapshot for the whole call
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if q.shape[1] != self.spec.embedding_dim:
            raise ValueError(f"queries have {q.shape[1]} dimensions, the gallery {self.spec.embedding_dim}; "
                             "embed them with an encoder of the gallery's model")
        if top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k}")
        rows = _filter_rows(state.entries, filters)
        if rows is None:
            if state.searcher is not None:
                ids, dists = state.searcher.search(q, top_k)
            else:
                ids, dists = topk(q, state.unit, top_k, backend="numpy" if self.search_backend == "int8"
                                  else self.search_backend)
        elif rows.size == 0:
            return [[] for _ in range(q.shape[0])]
        else:
            sub, dists = topk(q, state.unit[rows], top_k, backend="numpy")
            ids = rows[sub]
        return [[Hit(rank=r, distance=round(float(max(d, 0.0)), 6), entry=state.entries[int(i)])
                 for r, (i, d) in enumerate(zip(ids[qi], dists[qi]), start=1)] for qi in range(q.shape[0])]

    # -- writing ------------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, entries: Sequence[Entry]) -> int:
        return int(self.apply([("add", embeddings, entries)])[0])

    def remove(self, ids: Sequence[str]) -> int:
        return int(self.apply([("remove", list(ids))])[0])

    def apply(self, ops: Sequence[tuple[Any, ...]]) -> list[int]:
        """Several ``("add", embeddings, entries)`` / ``("remove", ids)`` in order, one durable write.

        Returns each operation's count (new rows / removed entries). ``irreid-edge serve`` commits
        the writes that arrive together this way (one file rewrite for all of them).
        """
        with self.locked():
            return self.apply_locked(ops)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """This process's writers and every other process's (``irreid-edge index``) wait while held:
        ``Gallery`` holds it while it moves an entry's files and commits its rows."""
        with self._write_lock, index_lock(self.path, wait_message=False):
            if _stamp(self.path) != self._state.stamp:  # another process wrote it since we read it
                self._state = self._load()
            yield

    def apply_locked(self, ops: Sequence[tuple[Any, ...]]) -> list[int]:
        """``apply`` for a caller already inside ``locked()``."""
        state = self._state
        rows, f16, meta = list(state.rows), state.f16, dict(state.meta)
        counts = []
        for op in ops:
            if op[0] == "add":
                n, rows, f16 = self._add_rows(rows, f16, meta, op[1], op[2])
            elif op[0] == "remove":
                n, rows, f16 = _remove_rows(rows, f16, set(op[1]))
            else:
                raise ValueError(f"unknown store operation {op[0]!r}")
            counts.append(n)
        if any(counts):
            self._write(rows, f16, meta)
            self._state = self._make_state(rows, f16, meta, _stamp(self.path))
        return counts

    def _add_rows(self, rows: list[IndexEntry], f16: np.ndarray, meta: dict[str, dict[str, Any]],
                  embeddings: np.ndarray, entries: Sequence[Entry]) -> tuple[int, list[IndexEntry], np.ndarray]:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape != (len(entries), self.spec.embedding_dim):
            raise ValueError(f"add: embeddings {x.shape} do not match {len(entries)} entries x "
                             f"{self.spec.embedding_dim} dimensions")
        if not np.all(np.isfinite(x)):
            raise ValueError("add: embeddings contain NaN or infinity; check the encoder's output")
        ids = {r.sha256 for r in rows}
        by_path = {r.path: i for i, r in enumerate(rows)}
        new_rows, new_data, replaced = [], [], set()
        for e in entries:
            check_entry(e)
        for e, v in zip(entries, x):
            if e.id in ids:
                continue  # idempotent by content hash
            path = e.path or e.id
            if path in by_path:
                replaced.add(by_path[path])  # the same path with new content: an update
            ids.add(e.id)
            new_rows.append(self._index_entry(e, path))
            unit = v / max(float(np.linalg.norm(v)), 1e-12)
            new_data.append(unit.astype(np.float16))
            meta[e.id] = {k: getattr(e, k) for k in _META_KEYS if getattr(e, k) not in ("", None)}
        if not new_rows:
            return 0, rows, f16
        keep = [i for i in range(len(rows)) if i not in replaced]
        all_rows = [rows[i] for i in keep] + new_rows
        all_data = np.concatenate([f16[keep], np.stack(new_data)]) if keep else np.stack(new_data)
        order = sorted(range(len(all_rows)), key=lambda i: all_rows[i].path)  # the indexer's row order
        return len(new_rows), [all_rows[i] for i in order], all_data[order]

    def _index_entry(self, e: Entry, path: str) -> IndexEntry:
        """size/mtime of the file under the gallery root when there is one, so a folder refresh keeps it."""
        if self.root is not None:
            try:
                st = os.stat(self.root / path)
                return IndexEntry(path, st.st_size, st.st_mtime_ns, e.id)
            except OSError:
                pass
        return IndexEntry(path, 0, 0, e.id)

    def _write(self, rows: list[IndexEntry], f16: np.ndarray, meta: dict[str, dict[str, Any]]) -> None:
        live = {r.sha256 for r in rows}
        kept = {k: v for k, v in meta.items() if k in live and v}
        meta.clear()
        meta.update(kept)
        # metadata first: a crash between the two writes leaves harmless extra keys, never a row without them
        payload = {"format_version": META_FORMAT_VERSION, "entries": kept}
        atomic_write_text(meta_path(self.path), json.dumps(payload, ensure_ascii=False, sort_keys=True) + "\n")
        write_index(self.path, self.spec, rows, f16.reshape(len(rows), self.spec.embedding_dim),
                    self.root or self.path.parent)

    def reload(self) -> None:
        """Re-read the file (after ``irreid-edge index`` refreshed it from the folder)."""
        with self._write_lock:
            self._state = self._load()

    def close(self) -> None:
        """Nothing is buffered: every accepted write was durable when ``add``/``remove`` returned."""
        with self._write_lock:
            pass


def _remove_rows(rows: list[IndexEntry], f16: np.ndarray, ids: set[str]) -> tuple[int, list[IndexEntry], np.ndarray]:
    keep = [i for i, r in enumerate(rows) if r.sha256 not in ids]
    gone = len({r.sha256 for r in rows} & ids)
    if len(keep) == len(rows):
        return 0, rows, f16
    return gone, [rows[i] for i in keep], f16[keep]


def _filter_rows(entries: list[Entry], filters: Filters | None) -> np.ndarray | None:
    """Row indices passing ``filters`` (None = all rows, no copy needed)."""
    if filters is None or filters.is_empty():
        return None
    cams = set(filters.cameras) if filters.cameras is not None else None
    devs = set(filters.devices) if filters.devices is not None else None

    def ok(e: Entry) -> bool:
        if cams is not None and e.camera not in cams:
            return False
        if devs is not None and e.device not in devs:
            return False
        if filters.since is not None or filters.until is not None:
            if e.timestamp is None:
                return False  # an unknown time is outside every window
            if filters.since is not None and e.timestamp < filters.since:
                return False
            if filters.until is not None and e.timestamp > filters.until:
                return False
        return True

    return np.asarray([i for i, e in enumerate(entries) if ok(e)], dtype=np.int64)

