"""The local gallery store: the index (runtime/gallery/index.py, format 2) as a ``GalleryStore``.

- Ranking is ``irreid-edge match``'s: ``runtime.search.rank.search_index`` over the index's stored
  rows (``auto``/``int8``: the int8 codes the index carries, exact; ``numpy``/``faiss``: the float16
  rows), distance = 1 - cosine rounded to 6 decimals as ``match --json`` prints it; ties keep the
  index's logical row order, as in ``match``. Filters become a bool mask over the live rows.
- An entry id is the content sha256 of its image (the index's sha256 column). An id that is not
  64 hex digits (an external id such as a tracker's "track-3") is stored under
  sha256("irreid-edge id:" + id) and the id itself is kept in the metadata.
- Metadata the index format does not hold (camera, timestamp, modality, device, external id) lives
  in ``<index>.meta.jsonl``, keyed by that stored sha256, append-only: one JSON object per line,
  ``{"key": sha, "camera": ..., ...}`` (the last line of a key wins) or ``{"key": sha, "removed": true}``.
  A line cut short by a crash (no newline) is ignored and trimmed before the next append; the file is
  rewritten whole (atomically) only when it holds more than twice as many lines as live keys. A
  ``<index>.meta.json`` of an older version is read and replaced by the first write. A folder refresh
  (``irreid-edge index``) keeps the metadata: it is keyed by content, not by row.
- Writes are durable when ``add``/``remove`` return: under the index's ``flock`` (so an
  ``irreid-edge index`` running beside it waits), re-read the root if another process committed,
  append metadata lines (fsync), then ONE index commit (``runtime.gallery.index.commit_rows``: a new
  segment for the added rows, tombstones for the removed and replaced ones; never a whole-file
  rewrite), then swap the in-memory state in one assignment, so searches running in other threads
  see the old gallery or the new one.
- Searching never re-reads the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...base.choices import SEARCH_BACKENDS
from ...base.fileio import atomic_write_text, fsync_dir, open_regular, read_json
from ...search.rank import search_index
from ...spec import ModelSpec
from ..index import (
    GalleryIndex,
    IndexEntry,
    IndexFileError,
    commit_rows,
    index_lock,
    read_index,
)
from .base import Entry, Filters, Hit, check_entry, check_time

__all__ = ["LocalStore", "meta_path", "stored_key"]

META_FORMAT_VERSION = 1
_META_KEYS = ("camera", "timestamp", "modality", "device")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def meta_path(index_path: str | os.PathLike[str]) -> Path:
    """The append-only metadata file of an index (see the module docstring)."""
    return Path(f"{index_path}.meta.jsonl")


def _legacy_meta_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}.meta.json")


def stored_key(entry_id: str) -> str:
    """The sha256 column value an entry id is stored under (the id itself when it is a sha256)."""
    return entry_id if _HEX64.match(entry_id) else hashlib.sha256(f"irreid-edge id:{entry_id}".encode()).hexdigest()


@dataclass(frozen=True)
class _State:
    """One consistent view of the gallery; replaced whole, never edited."""

    idx: GalleryIndex | None
    meta: dict[str, dict[str, Any]]
    stamp: tuple[int, int, int] | None  # (inode, size, mtime_ns) of the root this state was read from
    keys: np.ndarray  # (count,) uint64: first 8 bytes of each live row's sha256, logical order
    lines: int  # lines in the metadata file
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def count(self) -> int:
        return 0 if self.idx is None else self.idx.count

    def rows_of(self, key: str) -> np.ndarray:
        """Logical rows whose stored sha256 is ``key``."""
        if self.idx is None or not self.count:
            return np.zeros(0, np.int64)
        k = np.frombuffer(bytes.fromhex(key)[:8], "<u8")[0]
        rows = np.flatnonzero(self.keys == k)
        return np.asarray([int(r) for r in rows if self.idx.entries[int(r)].sha256 == key], np.int64)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _entry(row: IndexEntry, meta: dict[str, Any], modality: str) -> Entry:
    return Entry(id=str(meta.get("id") or row.sha256), path=row.path, camera=str(meta.get("camera") or ""),
                 timestamp=_stored_time(meta.get("timestamp")), modality=str(meta.get("modality") or modality),
                 device=str(meta.get("device") or ""))


def _stored_time(ts: Any) -> float | None:
    """A sidecar timestamp, or None (unknown: outside every time window) when it is not a usable one:
    a NaN written by an older version must not pass ``since=`` filters."""
    try:
        return check_time(float(ts), "timestamp")
    except (TypeError, ValueError):
        return None


def _read_meta(index_path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """(metadata by stored key, lines in the file)."""
    path = meta_path(index_path)
    legacy = _legacy_meta_path(index_path)
    if not path.exists():
        if not legacy.is_file():
            return {}, 0
        data = read_json(legacy, missing="missing", malformed="delete it (the entries' camera/time/device are "
                         "lost) or restore it from a backup", error=IndexFileError)
        if not isinstance(data, dict) or data.get("format_version") != META_FORMAT_VERSION \
                or not isinstance(data.get("entries"), dict):
            raise IndexFileError(f"{legacy}: not an irreid-edge metadata file (format_version "
                                 f"{META_FORMAT_VERSION}); delete it or restore it from a backup")
        meta = {stored_key(str(k)): dict(v) for k, v in data["entries"].items() if isinstance(v, dict)}
        for k, v in data["entries"].items():
            if isinstance(v, dict) and stored_key(str(k)) != k:
                meta[stored_key(str(k))]["id"] = str(k)
        return meta, 1 << 62  # rewritten as JSON lines by the first write
    return _parse_meta(path)


def _parse_meta(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    try:
        with open_regular(path) as f:
            raw = f.read()
    except (OSError, ValueError) as e:
        raise IndexFileError(f"{path}: cannot read the metadata ({e}); delete it (the entries' camera/time/"
                             "device are lost) or restore it from a backup") from None
    meta: dict[str, dict[str, Any]] = {}
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # cut short by a crash: never acknowledged
    for n, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
            key = rec.pop("key")
            if not isinstance(key, str):
                raise TypeError("key")
        except (ValueError, TypeError, KeyError, AttributeError):
            raise IndexFileError(f"{path}: line {n} is not an irreid-edge metadata record; delete the line or "
                                 "the file (the entries' camera/time/device are lost)") from None
        if rec.get("removed"):
            meta.pop(key, None)
        else:
            meta[key] = rec
    return meta, len(lines)


def _append_meta(index_path: Path, records: list[dict[str, Any]]) -> int:
    """Append JSON lines durably (after trimming a line a crash cut short). Returns lines written."""
    if not records:
        return 0
    path = meta_path(index_path)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size:
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                os.ftruncate(fd, size - len(tail) + cut + 1 if cut >= 0 else (size - len(tail) if size > len(tail) else 0))
                size = os.fstat(fd).st_size
        os.pwrite(fd, data, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return len(records)


def _rewrite_meta(index_path: Path, meta: dict[str, dict[str, Any]]) -> int:
    text = "".join(json.dumps({"key": k, **v}, ensure_ascii=False, sort_keys=True) + "\n"
                   for k, v in sorted(meta.items()))
    atomic_write_text(meta_path(index_path), text)
    with contextlib.suppress(FileNotFoundError):
        _legacy_meta_path(index_path).unlink()
    return len(meta)


class LocalStore:
    """A ``GalleryStore`` over one index (created on the first write when absent)."""

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
        self._key_cache: dict[str, np.ndarray] = {}  # segment header_sha256 -> its rows' key prefixes
        self._state = self._load()

    # -- reading ------------------------------------------------------------------------------
    def _load(self) -> _State:
        stamp = _stamp(self.path)
        meta, lines = _read_meta(self.path)
        if stamp is None:
            return _State(None, meta, None, np.zeros(0, np.uint64), lines)
        idx = read_index(self.path, gallery=self.root)
        self._check_spec(idx)
        return self._make_state(idx, meta, stamp, lines)

    def _check_spec(self, idx: GalleryIndex) -> None:
        """Another model's index, or (with a gallery root) another gallery's, is refused as ``match``
        refuses it: its rows would be served under this gallery's paths."""
        from ..indexer import check_gallery, check_spec

        if self.root is not None:
            check_gallery(idx, self.root)
        if idx.header.get("spec_fingerprint") != self.spec.fingerprint():
            check_spec(idx, self.spec, self.root or self.path.parent)  # raises with the fix

    def _make_state(self, idx: GalleryIndex, meta: dict[str, dict[str, Any]], stamp: tuple[int, int, int] | None,
                    lines: int) -> _State:
        parts, cache = [], {}
        for seg in idx.segments:  # segments never change: their key columns are computed once
            k = seg.header["header_sha256"]
            keys = self._key_cache.get(k)
            if keys is None:
                keys = np.ascontiguousarray(seg.sha256[:, :8]).view("<u8").reshape(-1)
            cache[k] = keys
            parts.append(keys if seg.live is None else keys[seg.live])
        self._key_cache = cache
        keys = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        return _State(idx, meta, stamp, keys, lines)

    def __len__(self) -> int:
        return self._state.count

    def _entry_at(self, state: _State, i: int) -> Entry:
        assert state.idx is not None
        row = state.idx.entries[i]
        return _entry(row, state.meta.get(row.sha256, {}), self.spec.modality)

    @property
    def entries(self) -> list[Entry]:
        """The entries, ordered by (id, path)."""
        state = self._state
        if state.idx is None:
            return []
        modality = self.spec.modality
        out = [_entry(r, state.meta.get(r.sha256, {}), modality) for r in state.idx.entries]
        return sorted(out, key=lambda e: (e.id, e.path))

    def get(self, entry_id: str) -> Entry | None:
        state = self._state
        rows = state.rows_of(stored_key(entry_id))
        if not rows.size:
            return None
        return min((self._entry_at(state, int(r)) for r in rows), key=lambda e: e.path)

    def paths_of(self, entry_id: str) -> list[str]:
        """Every path holding this content (a folder may hold two copies of one image)."""
        state = self._state
        assert state.idx is not None or not state.count
        return sorted(state.idx.entries[int(r)].path for r in state.rows_of(stored_key(entry_id))) \
            if state.idx is not None else []

    def search(self, queries: np.ndarray, top_k: int, filters: Filters | None = None) -> list[list[Hit]]:
        state = self._state  # one consistent snapshot for the whole call
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if q.shape[1] != self.spec.embedding_dim:
            raise ValueError(f"queries have {q.shape[1]} dimensions, the gallery {self.spec.embedding_dim}; "
                             "embed them with an encoder of the gallery's model")
        if top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k}")
        if state.idx is None or not state.count:
            return [[] for _ in range(q.shape[0])]
        keep = self._filter_mask(state, filters)
        if keep is not None and not keep.any():
            return [[] for _ in range(q.shape[0])]
        ids, dists = search_index(state.idx, q, top_k, backend=self.search_backend, keep=keep)
        return [[Hit(rank=r, distance=round(float(max(d, 0.0)), 6), entry=self._entry_at(state, int(i)))
                 for r, (i, d) in enumerate(zip(ids[qi], dists[qi]), start=1)] for qi in range(q.shape[0])]

    def _filter_mask(self, state: _State, filters: Filters | None) -> np.ndarray | None:
        """Bool mask over the live rows passing ``filters`` (None = all rows). The per-row columns
        (camera, device, time) are built once per state, on the first filtered search."""
        if filters is None or filters.is_empty():
            return None
        cols = state._cache.get("filter")
        if cols is None:
            assert state.idx is not None
            metas = [state.meta.get(bytes(h).hex(), {}) for h in _live_sha(state.idx)]
            cams = np.array([str(m.get("camera") or "") for m in metas], dtype=object)
            devs = np.array([str(m.get("device") or "") for m in metas], dtype=object)
            ts = np.array([_stored_time(m.get("timestamp")) for m in metas], dtype=np.float64)  # None -> nan
            cols = state._cache["filter"] = (cams, devs, ts)
        cams, devs, ts = cols
        keep = np.ones(state.count, dtype=bool)
        if filters.cameras is not None:
            keep &= np.isin(cams, list(filters.cameras))
        if filters.devices is not None:
            keep &= np.isin(devs, list(filters.devices))
        if filters.since is not None or filters.until is not None:
            keep &= ~np.isnan(ts)  # an unknown time is outside every window
            with np.errstate(invalid="ignore"):
                if filters.since is not None:
                    keep &= ts >= filters.since
                if filters.until is not None:
                    keep &= ts <= filters.until
        return keep

    # -- writing ------------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, entries: Sequence[Entry]) -> int:
        return int(self.apply([("add", embeddings, entries)])[0])

    def remove(self, ids: Sequence[str]) -> int:
        return int(self.apply([("remove", list(ids))])[0])

    def apply(self, ops: Sequence[tuple[Any, ...]]) -> list[int]:
        """Several ``("add", embeddings, entries)`` / ``("remove", ids)`` in order, one durable commit.

        Returns each operation's count (new rows / removed entries). ``irreid-edge serve`` commits
        the writes that arrive together this way (one index commit for all of them).
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
        """``apply`` for a caller already inside ``locked()``: the net effect of ``ops`` in one commit."""
        state = self._state
        plan = _Batch(state)
        counts = []
        for op in ops:
            if op[0] == "add":
                counts.append(self._plan_add(plan, op[1], op[2]))
            elif op[0] == "remove":
                counts.append(plan.remove_ids([stored_key(str(i)) for i in op[1]]))
            else:
                raise ValueError(f"unknown store operation {op[0]!r}")
        if not any(counts):
            return counts
        new = list(plan.added.values())
        added_keys = {r[0].sha256 for r in new}
        gone_keys = plan.removed_keys - added_keys
        lines = state.lines
        # metadata of the new rows first: a crash before the commit leaves harmless extra lines
        recs = [{"key": r[0].sha256, **r[2]} for r in new if r[2]]
        meta = dict(state.meta)
        meta.update({r[0].sha256: r[2] for r in new if r[2]})
        if lines > 2 * len(meta) + 1024:
            lines = _rewrite_meta(self.path, meta)
        else:
            lines += _append_meta(self.path, recs)
        data = np.stack([r[1] for r in new]) if new else np.zeros((0, self.spec.embedding_dim), np.float16)
        idx, _ = commit_rows(self.path, [r[0] for r in new], data, np.asarray(sorted(plan.removed_rows), np.int64),
                             spec=self.spec, gallery_root=self.root or self.path.parent, gallery=self.root)
        dropped = [k for k in gone_keys if k in meta]
        if dropped:  # after the commit: a crash before this line leaves metadata of removed rows (harmless)
            for k in dropped:
                meta.pop(k, None)
            lines += _append_meta(self.path, [{"key": k, "removed": True} for k in dropped])
        self._state = self._make_state(idx, meta, _stamp(self.path), lines)
        return counts

    def _plan_add(self, plan: _Batch, embeddings: np.ndarray, entries: Sequence[Entry]) -> int:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape != (len(entries), self.spec.embedding_dim):
            raise ValueError(f"add: embeddings {x.shape} do not match {len(entries)} entries x "
                             f"{self.spec.embedding_dim} dimensions")
        if not np.all(np.isfinite(x)):
            raise ValueError("add: embeddings contain NaN or infinity; check the encoder's output")
        for e in entries:
            check_entry(e)
        n = 0
        for e, v in zip(entries, x):
            key = stored_key(e.id)
            if plan.has_key(key):
                continue  # idempotent by id
            path = e.path or e.id
            unit = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float16)
            meta = {k: getattr(e, k) for k in _META_KEYS if getattr(e, k) not in ("", None)}
            if key != e.id:
                meta["id"] = e.id
            plan.add(self._index_entry(key, path), unit, meta)
            n += 1
        return n

    def _index_entry(self, key: str, path: str) -> IndexEntry:
        """size/mtime of the file under the gallery root when there is one, so a folder refresh keeps it."""
        if self.root is not None:
            try:
                st = os.stat(self.root / path)
                return IndexEntry(path, st.st_size, st.st_mtime_ns, key)
            except OSError:
                pass
        return IndexEntry(path, 0, 0, key)

    def reload(self) -> None:
        """Re-read the index (after ``irreid-edge index`` refreshed it from the folder)."""
        with self._write_lock:
            self._state = self._load()

    def close(self) -> None:
        """Nothing is buffered: every accepted write was durable when ``add``/``remove`` returned."""
        with self._write_lock:
            pass


def _live_sha(idx: GalleryIndex) -> np.ndarray:
    parts = [s.sha256 if s.live is None else s.sha256[s.live] for s in idx.segments]
    return np.concatenate(parts) if parts else np.zeros((0, 32), np.uint8)


class _Batch:
    """The net effect of a batch of operations on a state: logical rows to remove, rows to add."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.removed_rows: set[int] = set()
        self.removed_keys: set[str] = set()
        self.added: dict[str, tuple[IndexEntry, np.ndarray, dict[str, Any]]] = {}  # path -> row

    def has_key(self, key: str) -> bool:
        if any(r[0].sha256 == key for r in self.added.values()):
            return True
        return any(int(r) not in self.removed_rows for r in self.state.rows_of(key))

    def add(self, entry: IndexEntry, row: np.ndarray, meta: dict[str, Any]) -> None:
        idx = self.state.idx
        if idx is not None:  # the same path with new content: an update, the old row goes
            for s, r in idx.find_paths([entry.path]).values():
                seg = idx.segments[s]
                before = int(np.count_nonzero(seg.live[:r])) if seg.live is not None else r
                self.removed_rows.add(int(idx.offsets[s]) + before)
        self.added[entry.path] = (entry, row, meta)

    def remove_ids(self, keys: list[str]) -> int:
        n = 0
        for key in dict.fromkeys(keys):
            rows = [int(r) for r in self.state.rows_of(key) if int(r) not in self.removed_rows]
            pending = [p for p, r in self.added.items() if r[0].sha256 == key]
            if rows or pending:
                n += 1
                self.removed_rows.update(rows)
                self.removed_keys.add(key)
            for p in pending:
                del self.added[p]
        return n
