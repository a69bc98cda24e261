"""The gallery index, format 2 (issue 27): a small root file naming immutable segment files.

Default location: ``<gallery_dir>/.irreid/index.irx`` (a hidden folder inside the gallery root that
the scanner never lists); ``--index PATH`` overrides it. The path names the ROOT file; its segments
and tombstones live in the folder ``<index>.d/`` beside it (e.g. ``.irreid/index.irx.d/``). All
integers little-endian. All section offsets are multiples of 64.

Root file ``<index>`` (small; rewritten atomically on every commit)::

    bytes 0-7   magic b"IRREIDX2"
    bytes 8-15  uint64 header_len L
    16..16+L    UTF-8 JSON header; nothing after it

JSON keys (compact separators, ensure_ascii=False), in this order, ``header_sha256`` LAST: sha256 of
bytes 0..16+L with the value's 64 hex digits written as "0"::

    "format_version": 2, "kind": "root",
    "spec": ModelSpec.to_dict(), "spec_fingerprint": spec.fingerprint(),
    "dim": D, "count": live rows (sum over segments of count - dead count),
    "generation": int, +1 on every commit,
    "created_by": "irreid-edge <version>", "gallery_root": absolute gallery root,
    "segments": [{"name": "<file name inside <index>.d/>", "count": rows in the segment file,
                  "header_sha256": the segment's header_sha256,
                  "dead": null | {"name": "<file name inside <index>.d/>", "count": k,
                                  "sha256": hex of the file}}, ...],
    "header_sha256": "..."

Logical row order: segments in list order, rows in file order, dead rows skipped. A path appears at
most once among the live rows.

Segment file ``<index>.d/<name>`` (immutable once written; e.g. "seg-000012-3f9a1c.irs")::

    bytes 0-7   magic b"IRREIDS2"
    bytes 8-15  uint64 header_len L
    16..16+L    UTF-8 JSON header, header_sha256 last, same checksum rule
    zero padding to the first section; sections at 64-aligned offsets, zero padding between;
    the file ends exactly at the end of the last section

JSON keys: "format_version": 2, "kind": "segment", "dim": D, "count": N, "spec_fingerprint",
"created_by", "sections": {name: {"offset": int, "nbytes": int, "sha256": hex}} for EVERY section
below (all present, also when N = 0 with nbytes 0), "header_sha256". Sections, in this file order::

    "rows"      N x D float16   the embeddings, L2-normalised in float32 then cast
    "codes"     N x D uint8     int8 code + 128 of each row: rows[i] ~= scale[i] * (codes[i] - 128)
    "scale"     N float32       per-row scale (runtime.search.int8 quantiser)
    "rnorm"     N float32       upper bound of || float32(rows[i]) - scale[i] * (codes[i] - 128) ||
    "xnorm"     N float32       upper bound of || float32(rows[i]) ||
    "path_end"  N uint64        end offset (exclusive, AFTER the path's NUL) of path i in path_blob
    "path_blob" bytes           the UTF-8 relative POSIX paths, each followed by one NUL byte
    "path_hash" N uint64        first 8 bytes (little-endian uint64) of blake2b(path, digest_size=8)
    "size"      N int64         file size in bytes of the gallery image
    "mtime_ns"  N int64         file mtime in ns
    "sha256"    N x 32 bytes    content sha256 of the gallery image (raw digest)

codes/scale/rnorm/xnorm come from ONE function, ``runtime.search.int8.quantise_rows(rows f16)``,
which the writers call; readers never recompute them except under ``--verify``.

Tombstone file ``<index>.d/<name>`` (immutable; e.g. "seg-000012-3f9a1c.irs.dead-000015"): raw sorted
unique uint32 row numbers within its segment; its sha256 and count are in the root. Deleting more
rows of a segment writes a NEW tombstone file (old + new rows) and a new root.

Checks (issue 17: a damaged index is refused in one line naming the file and ``--rebuild``, never
ranked). Every open: root magic, header checksum, format_version (format 1 -> "index format 1 was
written by an older irreid-edge; run `irreid-edge index --gallery DIR --rebuild`"), spec fields;
each segment: opened by its name inside ``<index>.d/`` only (a name with "/" or "..", or a name
listed twice, is corruption),
header checksum, header_sha256 equal to the root's record, dim/spec_fingerprint equal to the root's,
section layout (64-aligned, in order, non-overlapping, nbytes matching N and D, file size exact);
tombstones: sha256, sorted unique, < N. Once per file identity or always with ``verify=True``
(``irreid-edge index --verify``): every section's sha256, finite rows and scales, UTF-8 paths, and
the path_blob checks: NUL count == N and NUL positions == path_end - 1, every path relative, no
empty/"."/".." component (bytes operations over the whole blob, no Python work per row; run with
the section hashes because the marker vouches for exactly the bytes they check: ~0.3 s at 1M paths
in Python, so not on every open). After
that check (or after writing) ``<index>.d/<segment>.verified`` records the segment file's (st_dev,
st_ino, size, mtime_ns, ctime_ns) and header_sha256; an open whose fstat matches skips the re-hash.
Any write to the file, a replacement or a copy changes that identity (ctime cannot be set back from
user space). ``verify=True`` also re-derives codes/scale from the rows (must be equal), checks that
rnorm/xnorm bound the float64 norms, that path_hash matches the paths and that live paths are unique.

Writes (under ``index_lock``, an exclusive ``flock`` on ``<index>.lock``; reentrant within a thread).
A commit writes new segment/tombstone files (temp name, fsync, rename, fsync ``<index>.d/``), then
the root atomically (runtime.base.fileio.atomic_write). Files in ``<index>.d/`` that the root does
not name (nor their ``.verified`` markers) are removed under the lock: a killed writer's leftovers,
segments replaced by a compaction. Readers take no lock: they read the root, then open each named
file; a FileNotFoundError (a compaction removed it in between) re-reads the root (a few tries).
Adding rows writes one segment (``append_rows``; an existing path is tombstoned in the same commit:
an update); removing writes tombstones (``remove_rows``); ``compact`` merges segments into one,
copying the stored rows, codes and norms as they are. A commit that leaves more than
``MAX_SEGMENTS`` segments merges the small trailing ones; one that leaves more than
``MAX_DEAD_FRACTION`` of the rows dead compacts everything.

Rank in float32 or with the stored int8 codes (runtime.search.rank.search_index). The C++ runtime
(runtime/cpp) reads and writes the same format.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import struct
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from ..base.fileio import (
    NotRegularFileError,
    atomic_write,
    explain_full_disk,
    fsync_dir,
    live_temp,
    open_regular,
    remove_stale_temps,
)
from ..spec import ModelSpec, SpecError
from .scan import INDEX_DIRNAME

__all__ = [
    "ALIGN",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_DEAD_FRACTION",
    "MAX_SEGMENTS",
    "SECTIONS",
    "SEGMENT_MAGIC",
    "GalleryIndex",
    "IndexEntry",
    "IndexFileError",
    "Segment",
    "append_rows",
    "commit_rows",
    "compact",
    "default_index_path",
    "index_lock",
    "marker_path",
    "path_hashes",
    "read_index",
    "remove_rows",
    "segment_folder",
    "write_index",
]

MAGIC = b"IRREIDX2"
MAGIC_V1 = b"IRREIDX1"
SEGMENT_MAGIC = b"IRREIDS2"
FORMAT_VERSION = 2
ALIGN = 64
MAX_SEGMENTS = 16
MAX_DEAD_FRACTION = 0.25
#: section name -> (numpy dtype, values per row; 0: free length): the file order
SECTIONS: dict[str, tuple[str, int]] = {
    "rows": ("<f2", -1), "codes": ("u1", -1), "scale": ("<f4", 1), "rnorm": ("<f4", 1), "xnorm": ("<f4", 1),
    "path_end": ("<u8", 1), "path_blob": ("u1", 0), "path_hash": ("<u8", 1), "size": ("<i8", 1),
    "mtime_ns": ("<i8", 1), "sha256": ("u1", 32),
}
_PREFIX = struct.Struct("<8sQ")  # magic, header_len
_MAX_HEADER = 1 << 26  # a header over 64 MB is corruption: the rows live in sections
_SUM_KEY = b',"header_sha256":"'
_SUM_TAIL = len(_SUM_KEY) + 64 + 2  # the key, 64 hex digits, '"}'
_ZEROS = b"0" * 64
_CHUNK_ROWS = 65536
_OPEN_TRIES = 5


class IndexFileError(ValueError):
    """The index file is missing, corrupted or made with another model; the message names the fix."""


@dataclass(frozen=True)
class IndexEntry:
    path: str
    size: int
    mtime_ns: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}


def default_index_path(gallery: str | os.PathLike[str]) -> Path:
    return Path(gallery) / INDEX_DIRNAME / "index.irx"


def segment_folder(index_path: str | os.PathLike[str]) -> Path:
    """``<index>.d/``: where the segments and tombstones of the index live."""
    return Path(f"{index_path}.d")


def marker_path(segment_path: str | os.PathLike[str]) -> Path:
    """Where the verified-once marker of a segment file lives (see the module docstring)."""
    return Path(f"{segment_path}.verified")


def path_hashes(paths: Iterable[str]) -> np.ndarray:
    """The path_hash column of ``paths``: blake2b(utf-8, digest_size=8) read as a little-endian uint64."""
    raw = b"".join(hashlib.blake2b(p.encode("utf-8"), digest_size=8).digest() for p in paths)
    return np.frombuffer(raw, dtype="<u8").copy()


def _rebuild_hint(gallery: str | os.PathLike[str] | None) -> str:
    return f"run `irreid-edge index --gallery {gallery if gallery else 'DIR'} --rebuild`"


def _corrupt(path: Path, why: str, gallery: str | os.PathLike[str] | None) -> IndexFileError:
    return IndexFileError(f"{path}: corrupted index ({why}); {_rebuild_hint(gallery)}")


# -- the segments -----------------------------------------------------------------------------
class Segment:
    """One segment file, memory-mapped, with its tombstones. Columns are read-only views of the map."""

    def __init__(self, file: Path, name: str, header: dict[str, Any], cols: dict[str, np.ndarray],
                 dead: np.ndarray | None, dead_record: dict[str, Any] | None) -> None:
        self.file = file
        self.name = name
        self.header = header
        self.count = int(header["count"])
        self.rows: np.ndarray = cols["rows"]
        self.codes: np.ndarray = cols["codes"]
        self.scale: np.ndarray = cols["scale"]
        self.rnorm: np.ndarray = cols["rnorm"]
        self.xnorm: np.ndarray = cols["xnorm"]
        self.path_end: np.ndarray = cols["path_end"]
        self.path_blob: np.ndarray = cols["path_blob"]
        self.path_hash: np.ndarray = cols["path_hash"]
        self.size: np.ndarray = cols["size"]
        self.mtime_ns: np.ndarray = cols["mtime_ns"]
        self.sha256: np.ndarray = cols["sha256"]
        self.dead = dead if dead is not None and dead.size else None
        self.dead_record = dead_record if self.dead is not None else None
        self.live: np.ndarray | None = None
        if self.dead is not None:
            live = np.ones(self.count, dtype=bool)
            live[self.dead] = False
            self.live = live
        self._live_rows: np.ndarray | None = None

    @property
    def live_count(self) -> int:
        return self.count - (0 if self.dead is None else int(self.dead.size))

    def live_rows(self) -> np.ndarray:
        """Row numbers of the live rows, in file order (int64). Cached."""
        if self._live_rows is None:
            self._live_rows = (np.arange(self.count, dtype=np.int64) if self.live is None
                               else np.flatnonzero(self.live).astype(np.int64))
        return self._live_rows

    def path(self, row: int) -> str:
        start = int(self.path_end[row - 1]) if row > 0 else 0
        return bytes(self.path_blob[start:int(self.path_end[row]) - 1]).decode("utf-8")

    def paths(self, rows: np.ndarray | None = None) -> list[str]:
        """The paths of ``rows`` (all rows when None); one split of the blob, no loop per row."""
        allp = bytes(self.path_blob).decode("utf-8").split("\0")[:-1] if self.count else []
        return allp if rows is None else [allp[int(i)] for i in rows]

    def entry(self, row: int) -> IndexEntry:
        return IndexEntry(self.path(row), int(self.size[row]), int(self.mtime_ns[row]),
                          bytes(self.sha256[row]).hex())


class _Entries(Sequence[IndexEntry]):
    """The live rows as IndexEntry, in logical order, built on demand from the columns."""

    def __init__(self, idx: GalleryIndex) -> None:
        self._idx = idx

    def __len__(self) -> int:
        return self._idx.count

    @overload
    def __getitem__(self, i: int) -> IndexEntry: ...

    @overload
    def __getitem__(self, i: slice) -> list[IndexEntry]: ...

    def __getitem__(self, i: int | slice) -> IndexEntry | list[IndexEntry]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        s, r = self._idx.locate(int(i))
        return self._idx.segments[s].entry(r)

    def __iter__(self) -> Iterator[IndexEntry]:
        for seg in self._idx.segments:
            for r in seg.live_rows().tolist():
                yield seg.entry(r)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} index entries>"


@dataclass(eq=False)
class GalleryIndex:
    path: Path
    header: dict[str, Any]
    spec: ModelSpec
    segments: list[Segment]
    _embeddings: np.ndarray | None = field(default=None, repr=False)
    _f32: np.ndarray | None = field(default=None, repr=False)
    offsets: np.ndarray = field(init=False, repr=False)  # (segments + 1,) first logical row of each segment
    entries: _Entries = field(init=False, repr=False)

    def __post_init__(self) -> None:
        counts = [s.live_count for s in self.segments]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        self.entries = _Entries(self)

    @property
    def count(self) -> int:
        return int(self.offsets[-1])

    @property
    def dim(self) -> int:
        return int(self.header["dim"])

    @property
    def generation(self) -> int:
        return int(self.header["generation"])

    def locate(self, i: int) -> tuple[int, int]:
        """(segment number, row in that segment file) of logical row ``i`` (negative counts from the end)."""
        n = self.count
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"logical row {i} out of range for {n} rows")
        s = int(np.searchsorted(self.offsets, i, side="right")) - 1
        r = i - int(self.offsets[s])
        seg = self.segments[s]
        return s, (r if seg.live is None else int(seg.live_rows()[r]))

    @property
    def embeddings(self) -> np.ndarray:
        """(count, D) float16 of the live rows: the segment's map itself when it is the only one and
        has no dead row, else a concatenated copy (cached)."""
        if self._embeddings is None:
            if len(self.segments) == 1 and self.segments[0].live is None:
                self._embeddings = self.segments[0].rows
            elif not self.segments:
                self._embeddings = np.zeros((0, self.dim), np.float16)
            else:
                out = np.empty((self.count, self.dim), np.float16)
                for seg, start in zip(self.segments, self.offsets[:-1].tolist()):
                    n = seg.live_count
                    out[start:start + n] = seg.rows if seg.live is None else seg.rows[seg.live]
                out.setflags(write=False)
                self._embeddings = out
        return self._embeddings

    def as_float32(self) -> np.ndarray:
        """(N, D) float32 copy, rows re-normalised (float16 rounding moves norms slightly). Cached."""
        if self._f32 is None:
            self._f32 = _f16_to_unit_f32(self.embeddings)
        return self._f32

    def live_columns(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(paths, size int64, mtime_ns int64, sha256 (n, 32) uint8) of the live rows in logical order:
        the whole manifest at once, one split per segment (the indexer's plan)."""
        paths: list[str] = []
        sizes, mtimes, shas = [], [], []
        for seg in self.segments:
            live = None if seg.live is None else seg.live_rows()
            paths += seg.paths(live)
            sizes.append(seg.size if live is None else seg.size[live])
            mtimes.append(seg.mtime_ns if live is None else seg.mtime_ns[live])
            shas.append(seg.sha256 if live is None else seg.sha256[live])
        if not self.segments:
            return [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 32), np.uint8)
        return paths, np.concatenate(sizes), np.concatenate(mtimes), np.concatenate(shas)

    def find_paths(self, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """{path: (segment number, row)} for those of ``paths`` that are live rows (path_hash first)."""
        if not paths:
            return {}
        want = set(paths)
        hashes = path_hashes(want)
        found: dict[str, tuple[int, int]] = {}
        for s, seg in enumerate(self.segments):
            if not seg.count:
                continue
            if len(hashes) <= 16:  # a few paths (an add): one compare each, no sort of the column
                hit = np.zeros(seg.count, dtype=bool)
                for h in hashes:
                    hit |= seg.path_hash == h
            else:
                hit = np.isin(seg.path_hash, hashes)
            if seg.live is not None:
                hit &= seg.live
            for r in np.flatnonzero(hit).tolist():
                p = seg.path(r)
                if p in want:
                    found[p] = (s, r)
        return found


def _f16_to_unit_f32(x16: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(x16.shape, np.float32)
    for s in range(0, x16.shape[0], chunk):  # chunked: no second full-size temporary
        block = x16[s:s + chunk].astype(np.float32)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[s:s + chunk] = block / np.maximum(norms, 1e-12)
    return out


# -- headers ----------------------------------------------------------------------------------
def _header_digest(prefix: bytes, raw_zeroed: bytes) -> str:
    return hashlib.sha256(prefix + raw_zeroed).hexdigest()


def _seal(magic: bytes, header: dict[str, Any]) -> bytes:
    """prefix + JSON with its checksum (``header["header_sha256"]`` must be the last key)."""
    header["header_sha256"] = _ZEROS.decode()
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    prefix = _PREFIX.pack(magic, len(raw))
    digest = _header_digest(prefix, raw)
    header["header_sha256"] = digest
    return prefix + raw[:-_SUM_TAIL + len(_SUM_KEY)] + digest.encode() + b'"}'


def _parse_header(path: Path, f: Any, file_size: int, magic: bytes, gallery: Any) -> tuple[dict[str, Any], int]:
    """(header, header_len) of a root or segment file, checksum checked."""
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise _corrupt(path, f"file too short ({file_size} bytes)", gallery)
    got, header_len = _PREFIX.unpack(prefix)
    if got == MAGIC_V1 and magic == MAGIC:
        raise IndexFileError(f"{path}: index format 1 was written by an older irreid-edge; "
                             f"{_rebuild_hint(gallery)}")
    if got != magic:
        raise _corrupt(path, f"bad magic {got!r}, expected {magic!r}", gallery)
    if header_len > min(_MAX_HEADER, file_size - _PREFIX.size):
        raise _corrupt(path, f"header length {header_len} past the end of the file", gallery)
    raw = f.read(header_len)
    tail = raw[-_SUM_TAIL:]
    if len(raw) < _SUM_TAIL or not tail.startswith(_SUM_KEY) or not tail.endswith(b'"}'):
        raise _corrupt(path, "no header checksum", gallery)
    recorded = tail[len(_SUM_KEY):len(_SUM_KEY) + 64].decode("ascii", "replace")
    if _header_digest(prefix, raw[:-_SUM_TAIL + len(_SUM_KEY)] + _ZEROS + b'"}') != recorded:
        raise _corrupt(path, "header checksum mismatch", gallery)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(path, f"header is not valid JSON: {e}", gallery) from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object", gallery)
    if header.get("format_version") != FORMAT_VERSION:
        raise IndexFileError(f"{path}: index format_version {header.get('format_version')!r} is not "
                             f"{FORMAT_VERSION} (another irreid-edge version); {_rebuild_hint(gallery)}")
    return header, header_len


def _safe_name(name: Any) -> bool:
    return (isinstance(name, str) and bool(name) and "/" not in name and ".." not in name and "\0" not in name
            and name not in (".",) and not name.startswith(".") and not name.endswith(".verified"))


def _read_root(p: Path, gallery: Any) -> tuple[dict[str, Any], ModelSpec]:
    try:
        f = open_regular(p)
    except FileNotFoundError:
        raise IndexFileError(f"{p}: no index; build it with `irreid-edge index --gallery "
                             f"{gallery if gallery else 'DIR'}`") from None
    except NotRegularFileError as e:
        raise IndexFileError(f"{e} (--index takes the index file)") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        header, header_len = _parse_header(p, f, size, MAGIC, gallery)
    if size != _PREFIX.size + header_len:
        raise _corrupt(p, f"file is {size} bytes, the header says {_PREFIX.size + header_len}", gallery)
    try:
        if header.get("kind") != "root":
            raise ValueError(f"kind {header.get('kind')!r} is not 'root'")
        spec = ModelSpec.from_dict(header["spec"])
        dim, count, gen = int(header["dim"]), int(header["count"]), int(header["generation"])
        segs = header["segments"]
        if not isinstance(segs, list) or "spec_fingerprint" not in header:
            raise ValueError("segments is not a list")
        total = 0
        for rec in segs:
            if not isinstance(rec, dict) or not _safe_name(rec.get("name")):
                raise ValueError(f"segment name {rec.get('name') if isinstance(rec, dict) else rec!r} is not a "
                                 "file name inside the index folder")
            n = int(rec["count"])
            dead = rec.get("dead")
            k = 0
            if dead is not None:
                if not isinstance(dead, dict) or not _safe_name(dead.get("name")):
                    raise ValueError(f"tombstone name {dead!r} is not a file name inside the index folder")
                k = int(dead["count"])
                str(dead["sha256"])
            if n < 0 or not 0 <= k <= n or not isinstance(rec.get("header_sha256"), str):
                raise ValueError(f"segment {rec['name']}: count {n} / dead {k}")
            total += n - k
        names = [r["name"] for r in segs] + [r["dead"]["name"] for r in segs if r.get("dead")]
        if len(set(names)) != len(names):
            raise ValueError("a segment or tombstone is named twice")
    except (SpecError, KeyError, TypeError, ValueError) as e:
        raise _corrupt(p, f"header field missing or invalid: {e}", gallery) from None
    if spec.embedding_dim != dim or dim <= 0:
        raise _corrupt(p, f"spec embedding_dim {spec.embedding_dim} != dim {dim}", gallery)
    if total != count or gen < 0:
        raise _corrupt(p, f"count {count} is not the {total} live rows of the segments", gallery)
    return header, spec


def _section_sizes(n: int, d: int, blob: int) -> dict[str, int]:
    out = {}
    for name, (dt, per) in SECTIONS.items():
        item = np.dtype(dt).itemsize
        out[name] = blob if per == 0 else n * (d if per < 0 else per) * item
    return out


def _check_sections(sp: Path, header: dict[str, Any], header_len: int, file_size: int, n: int, d: int,
                    gallery: Any) -> dict[str, dict[str, Any]]:
    secs = header.get("sections")
    if not isinstance(secs, dict) or list(secs) != list(SECTIONS):
        raise _corrupt(sp, f"sections {list(secs) if isinstance(secs, dict) else secs!r} are not {list(SECTIONS)}",
                       gallery)
    try:
        blob = int(secs["path_blob"]["nbytes"])
        want = _section_sizes(n, d, blob)
        end = _PREFIX.size + header_len
        for name, rec in secs.items():
            off, nb = int(rec["offset"]), int(rec["nbytes"])
            if not (isinstance(rec["sha256"], str) and len(rec["sha256"]) == 64):
                raise ValueError(f"section {name} has no sha256")
            if off % ALIGN or off < end or nb != want[name]:
                raise ValueError(f"section {name} at {off} of {nb} bytes (expected {want[name]} bytes, "
                                 f"{ALIGN}-aligned, past {end})")
            end = off + nb
    except (KeyError, TypeError, ValueError) as e:
        raise _corrupt(sp, f"bad section layout: {e}", gallery) from None
    if blob < n:
        raise _corrupt(sp, f"path_blob of {blob} bytes for {n} paths", gallery)
    if file_size != end:
        raise _corrupt(sp, f"file is {file_size} bytes, the header says {end}", gallery)
    return secs


def _check_paths(sp: Path, cols: dict[str, np.ndarray], n: int, gallery: Any) -> None:
    """NUL count == N, NULs exactly at path_end - 1, every path relative with no empty, "." or ".."
    component: bytes operations over the whole blob (no Python work per row)."""
    blob = cols["path_blob"].tobytes()
    ends = np.asarray(cols["path_end"])
    if blob.count(b"\0") != n:
        raise _corrupt(sp, "path_blob does not hold one NUL-terminated path per row", gallery)
    if n:
        if int(ends[-1]) != len(blob) or (n > 1 and not bool((ends[1:] > ends[:-1]).all())) or int(ends[0]) < 1:
            raise _corrupt(sp, "path_end is not increasing up to the end of path_blob", gallery)
        if not bool((cols["path_blob"][(ends - 1).astype(np.int64)] == 0).all()):
            raise _corrupt(sp, "path_end does not point past each path's NUL", gallery)
        s = (b"\0" + blob).replace(b"/", b"\0")
        if b"\0\0" in s or b"\0.\0" in s or b"\0..\0" in s:
            i = next(i for i in (s.find(b"\0\0"), s.find(b"\0.\0"), s.find(b"\0..\0")) if i >= 0)
            start = blob.rfind(b"\0", 0, max(i, 0)) + 1
            stop = blob.find(b"\0", max(i, start))
            bad = blob[start:stop if stop >= 0 else len(blob)].decode("utf-8", "replace")
            raise _corrupt(sp, f"entry path {bad!r} leaves the gallery root", gallery)


def _identity(st: os.stat_result) -> dict[str, int]:
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _marker_matches(sp: Path, st: os.stat_result, digest: str) -> bool:
    try:
        with open_regular(marker_path(sp)) as f:
            mark = json.loads(f.read(4096))
    except (OSError, ValueError):  # missing, unreadable, a FIFO, malformed: just re-hash
        return False
    return isinstance(mark, dict) and mark == {**_identity(st), "header_sha256": digest}


def _write_marker(sp: Path, st: os.stat_result, digest: str) -> None:
    """Record that the segment of identity ``st`` (the fstat of the descriptor that was checked)
    passed the full check. Best effort: a read-only folder just means the next open re-hashes."""
    try:
        atomic_write(marker_path(sp), json.dumps({**_identity(st), "header_sha256": digest}).encode())
    except OSError:
        pass


def _full_check(sp: Path, mm: np.ndarray, secs: dict[str, dict[str, Any]], cols: dict[str, np.ndarray],
                gallery: Any) -> None:
    for name, rec in secs.items():
        off, nb = int(rec["offset"]), int(rec["nbytes"])
        h = hashlib.sha256()
        for s in range(off, off + nb, 1 << 26):
            h.update(mm[s:min(s + (1 << 26), off + nb)].data)
        if h.hexdigest() != rec["sha256"]:
            what = "embedding" if name == "rows" else name
            raise _corrupt(sp, f"{what} checksum mismatch", gallery)
    rows = cols["rows"]
    for s in range(0, rows.shape[0], _CHUNK_ROWS):
        fin = np.isfinite(rows[s:s + _CHUNK_ROWS]).all(axis=1)
        if not fin.all():
            raise _corrupt(sp, f"row {s + int(np.flatnonzero(~fin)[0])} holds NaN or infinite values", gallery)
    for name in ("scale", "rnorm", "xnorm"):
        if not np.isfinite(cols[name]).all() or (cols[name] < 0).any():
            raise _corrupt(sp, f"{name} holds negative, NaN or infinite values", gallery)
    try:
        bytes(cols["path_blob"]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _corrupt(sp, f"a path is not UTF-8 ({e})", gallery) from None


def _deep_check(sp: Path, seg: Segment, gallery: Any) -> None:
    """``--verify``: the stored codes/scales re-derived, the norms bounds, the path hashes."""
    from ..search.int8 import quantise_rows

    for s in range(0, seg.count, _CHUNK_ROWS):
        e = min(s + _CHUNK_ROWS, seg.count)
        codes, scale, _, _ = quantise_rows(seg.rows[s:e])
        if not np.array_equal(codes, seg.codes[s:e]) or not np.array_equal(scale, seg.scale[s:e]):
            raise _corrupt(sp, f"the int8 codes of rows {s}..{e - 1} do not match the rows", gallery)
        x = seg.rows[s:e].astype(np.float64)
        resid = x - seg.scale[s:e, None].astype(np.float64) * (seg.codes[s:e].astype(np.float64) - 128.0)
        if (seg.xnorm[s:e] < np.linalg.norm(x, axis=1)).any() or (seg.rnorm[s:e] < np.linalg.norm(resid, axis=1)).any():
            raise _corrupt(sp, f"the norm bounds of rows {s}..{e - 1} are below the norms", gallery)
    if seg.count and not np.array_equal(path_hashes(seg.paths()), seg.path_hash):
        raise _corrupt(sp, "path_hash does not match the paths", gallery)


def _open_segment(folder: Path, rec: dict[str, Any], root: dict[str, Any], verify: bool, gallery: Any) -> Segment:
    name = rec["name"]
    sp = folder / name
    try:
        f = open_regular(sp)  # FileNotFoundError: the caller re-reads the root
    except NotRegularFileError as e:
        raise _corrupt(sp, str(e), gallery) from None
    with f:
        st = os.fstat(f.fileno())
        header, header_len = _parse_header(sp, f, st.st_size, SEGMENT_MAGIC, gallery)
        try:
            n, d = int(header["count"]), int(header["dim"])
            kind, fp = header["kind"], header["spec_fingerprint"]
        except (KeyError, TypeError, ValueError) as e:
            raise _corrupt(sp, f"header field missing or invalid: {e}", gallery) from None
        if header["header_sha256"] != rec["header_sha256"]:
            raise _corrupt(sp, "the segment is not the one the root file records", gallery)
        if kind != "segment" or n != int(rec["count"]) or d != int(root["dim"]) or fp != root["spec_fingerprint"]:
            raise _corrupt(sp, f"segment kind/count/dim/fingerprint ({kind}, {n}, {d}, {str(fp)[:12]}) disagree "
                           "with the root file", gallery)
        secs = _check_sections(sp, header, header_len, st.st_size, n, d, gallery)
        mm = np.memmap(f, dtype=np.uint8, mode="r")  # through the descriptor checked above
    cols: dict[str, np.ndarray] = {}
    for sname, (dt, per) in SECTIONS.items():
        off, nb = int(secs[sname]["offset"]), int(secs[sname]["nbytes"])
        a = mm[off:off + nb].view(dt)
        cols[sname] = a if per == 0 else a.reshape(n, d if per < 0 else per) if per != 1 else a
    dead, dead_rec = _read_tombstone(folder, rec, n, gallery)
    if verify or not _marker_matches(sp, st, header["header_sha256"]):
        _full_check(sp, mm, secs, cols, gallery)
        _check_paths(sp, cols, n, gallery)
        _write_marker(sp, st, header["header_sha256"])
    seg = Segment(sp, name, header, cols, dead, dead_rec)
    if verify:
        _deep_check(sp, seg, gallery)
    return seg


def _read_tombstone(folder: Path, rec: dict[str, Any], n: int, gallery: Any) -> tuple[np.ndarray | None, dict | None]:
    dead = rec.get("dead")
    if dead is None:
        return None, None
    tp = folder / dead["name"]
    try:
        with open_regular(tp) as f:
            raw = f.read(4 * n + 1)
    except NotRegularFileError as e:
        raise _corrupt(tp, str(e), gallery) from None
    if hashlib.sha256(raw).hexdigest() != dead["sha256"] or len(raw) != 4 * int(dead["count"]):
        raise _corrupt(tp, "tombstone checksum or size mismatch", gallery)
    rows = np.frombuffer(raw, dtype="<u4")
    if rows.size and (int(rows[-1]) >= n or (rows.size > 1 and not bool((rows[1:] > rows[:-1]).all()))):
        raise _corrupt(tp, f"tombstone rows are not sorted, unique and below {n}", gallery)
    return rows, dead


def read_index(path: str | os.PathLike[str], verify: bool = False,
               gallery: str | os.PathLike[str] | None = None) -> GalleryIndex:
    """Open an index (segments memory-mapped), checked as the module docstring says. ``verify``
    re-hashes every segment and re-derives its codes even when the verified-once marker matches.
    ``gallery`` only feeds messages."""
    p = Path(path)
    folder = segment_folder(p)
    last_digest = None
    for _ in range(_OPEN_TRIES):
        header, spec = _read_root(p, gallery)
        segments = []
        try:
            for rec in header["segments"]:
                segments.append(_open_segment(folder, rec, header, verify, gallery))
        except FileNotFoundError as e:
            if header["header_sha256"] == last_digest:  # the same root twice: the file is really gone
                raise _corrupt(Path(e.filename or folder), "a segment or tombstone named by the root file is "
                               "missing", gallery) from None
            last_digest = header["header_sha256"]
            continue  # a compaction replaced it since the root was read: read the new root
        idx = GalleryIndex(path=p, header=header, spec=spec, segments=segments)
        if verify:
            _check_unique(idx, gallery)
        return idx
    raise IndexFileError(f"{p}: the index kept changing while it was opened; try again")


def _check_unique(idx: GalleryIndex, gallery: Any) -> None:
    hashes = np.concatenate([s.path_hash if s.live is None else s.path_hash[s.live] for s in idx.segments]) \
        if idx.segments else np.zeros(0, np.uint64)
    u, counts = np.unique(hashes, return_counts=True)
    if (counts > 1).any():
        dup_h = set(u[counts > 1].tolist())
        seen: set[str] = set()
        for seg in idx.segments:
            for r in seg.live_rows().tolist():
                if int(seg.path_hash[r]) in dup_h:
                    p = seg.path(r)
                    if p in seen:
                        raise _corrupt(idx.path, f"entry path {p!r} is listed twice", gallery)
                    seen.add(p)


# -- writing ----------------------------------------------------------------------------------
_held = threading.local()


@contextlib.contextmanager
def index_lock(path: str | os.PathLike[str], wait_message: bool = True) -> Iterator[None]:
    """Exclusive ``flock`` on ``<index>.lock`` for writers; blocks (saying so) while another holds it.
    Reentrant within a thread (the writers below take it themselves).

    Once held, the temp files of writers killed mid-write (kill -9, power loss) are removed, and the
    files of ``<index>.d/`` the root does not name: under the lock no live writer can own them
    (issue 17 item 8).
    """
    key = os.path.abspath(path)
    held: set[str] = getattr(_held, "paths", None) or set()
    _held.paths = held
    if key in held:
        yield
        return
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_message:
                print(f"irreid-edge: waiting for another process updating {path} ...", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(key)
        for stale in (Path(path), Path(f"{path}.partial"), Path(f"{path}.verified"),
                      Path(f"{path}.partial.verified")):
            remove_stale_temps(stale)
        for old in (Path(f"{path}.verified"), Path(f"{path}.partial")):  # format 1's, unused now
            with contextlib.suppress(OSError):
                old.unlink()
        _clean_folder(Path(path))
        yield
    finally:
        held.discard(key)
        os.close(fd)  # closing releases the lock


def _clean_folder(p: Path) -> list[Path]:
    """Under the lock: remove what ``<index>.d/`` holds that the root does not name (nor its markers);
    a live reader's marker temp file is left alone. Nothing is removed when the root is unreadable."""
    folder = segment_folder(p)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    keep: set[str] = set()
    if p.exists():
        try:
            header, _ = _read_root(p, None)
        except IndexFileError:
            return []  # a damaged root: keep everything for the post-mortem
        for rec in header["segments"]:
            keep |= {rec["name"], rec["name"] + ".verified"}
            if rec.get("dead"):
                keep.add(rec["dead"]["name"])
    removed = []
    for name in names:
        if name in keep:
            continue
        if live_temp(name):
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
            removed.append(folder / name)
    return removed


def _unit_f16(embeddings: np.ndarray) -> np.ndarray:
    """float16 rows are taken as already normalised (they come from an index: re-normalising would
    drift their last bits on every update); anything else is normalised in float32, then cast."""
    if embeddings.dtype == np.float16:
        out = np.ascontiguousarray(embeddings, dtype="<f2")
    else:
        x = np.asarray(embeddings, dtype=np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        out = np.ascontiguousarray(x.astype("<f2"))
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():  # issue 17 item 3: never store a row that ranks arbitrarily
        raise ValueError(f"embedding row {int(np.flatnonzero(~finite)[0])} holds NaN or infinite values; "
                         "the model produced no usable embedding for that image")
    return out


def _first_unsafe(paths: list[str]) -> str | None:
    """The first path that is not a relative POSIX path inside the gallery root, else None."""
    joined = "\0".join(paths)
    if not paths or (joined.count("\0") == len(paths) - 1 and not _bad_component("\0" + joined + "\0")):
        return None
    return next(p for p in paths if "\0" in p or _bad_component("\0" + p + "\0"))


def _bad_component(wrapped: str) -> bool:
    s = wrapped.replace("/", "\0")
    return "\0\0" in s or "\0.\0" in s or "\0..\0" in s


@dataclass
class _Piece:
    """Rows of a segment to write: fresh (entries + float16 rows) or copied from an open segment."""

    n: int
    rows: Any  # callable(start, stop) -> (m, D) float16
    entries: list[IndexEntry] | None = None
    seg: Segment | None = None
    idx: np.ndarray | None = None  # rows of ``seg`` (None: all)
    q: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _fresh_piece(entries: Sequence[IndexEntry], rows16: np.ndarray) -> _Piece:
    return _Piece(len(entries), lambda s, e: rows16[s:e], entries=list(entries))


def _copy_piece(seg: Segment, idx: np.ndarray | None) -> _Piece:
    n = seg.count if idx is None else len(idx)
    if idx is None:
        return _Piece(n, lambda s, e: seg.rows[s:e], seg=seg)
    return _Piece(n, lambda s, e: seg.rows[idx[s:e]], seg=seg, idx=idx)


def _col(piece: _Piece, name: str) -> np.ndarray:
    assert piece.seg is not None
    a = getattr(piece.seg, name)
    return np.asarray(a) if piece.idx is None else a[piece.idx]


def _path_columns(piece: _Piece) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(blob, lengths incl. NUL, path_hash, size, mtime_ns, sha256 (n, 32))."""
    if piece.entries is not None:
        enc = [e.path.encode("utf-8") for e in piece.entries]
        blob = b"".join(x + b"\0" for x in enc)
        lens = np.fromiter((len(x) + 1 for x in enc), dtype=np.int64, count=len(enc))
        hashes = path_hashes(e.path for e in piece.entries)
        size = np.array([e.size for e in piece.entries], dtype=np.int64)
        mtime = np.array([e.mtime_ns for e in piece.entries], dtype=np.int64)
        sha = np.frombuffer(b"".join(bytes.fromhex(e.sha256) for e in piece.entries), np.uint8).reshape(-1, 32)
        return blob, lens, hashes, size, mtime, sha
    seg = piece.seg
    assert seg is not None
    ends = np.asarray(seg.path_end).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    if piece.idx is None:
        blob = bytes(seg.path_blob)
        lens = ends - starts
    else:
        sel_s, sel_e = starts[piece.idx], ends[piece.idx]
        lens = sel_e - sel_s
        total = int(lens.sum())
        new_starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        gather = np.repeat(sel_s - new_starts, lens) + np.arange(total, dtype=np.int64)
        blob = np.asarray(seg.path_blob)[gather].tobytes()
    return (blob, lens, _col(piece, "path_hash"), _col(piece, "size"), _col(piece, "mtime_ns"),
            _col(piece, "sha256").reshape(-1, 32))


def _quantised(piece: _Piece, s: int, e: int) -> np.ndarray:
    """codes of rows s..e of the piece; keeps their scale/rnorm/xnorm for the later sections."""
    if piece.entries is None:
        for name in ("scale", "rnorm", "xnorm"):
            piece.q.setdefault(name, []).append(_col_slice(piece, name, s, e))
        return _col_slice(piece, "codes", s, e)
    from ..search.int8 import quantise_rows

    codes, scale, rnorm, xnorm = quantise_rows(piece.rows(s, e))
    for name, a in (("scale", scale), ("rnorm", rnorm), ("xnorm", xnorm)):
        piece.q.setdefault(name, []).append(a)
    return codes


def _col_slice(piece: _Piece, name: str, s: int, e: int) -> np.ndarray:
    assert piece.seg is not None
    a = getattr(piece.seg, name)
    return np.asarray(a[s:e] if piece.idx is None else a[piece.idx[s:e]])


def _write_segment(folder: Path, name: str, pieces: list[_Piece], dim: int, spec_fp: str) -> dict[str, Any]:
    """Write the segment file ``folder/name`` (temp name, fsync, rename; the caller fsyncs the
    folder). Returns its root record."""
    from .. import __version__

    n = sum(pc.n for pc in pieces)
    pcols = [_path_columns(pc) for pc in pieces]
    blob = b"".join(c[0] for c in pcols)
    ends = np.cumsum(np.concatenate([c[1] for c in pcols]) if pcols else np.zeros(0, np.int64)).astype("<u8")
    sizes = _section_sizes(n, dim, len(blob))
    header: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "kind": "segment", "dim": dim, "count": n, "spec_fingerprint": spec_fp,
        "created_by": f"irreid-edge {__version__}",
        "sections": {k: {"offset": 0, "nbytes": sizes[k], "sha256": _ZEROS.decode()} for k in SECTIONS},
    }
    for _ in range(6):  # offsets depend on the header length, which depends on their digits
        end = len(_seal(SEGMENT_MAGIC, header))
        changed = False
        for k in SECTIONS:
            off = -(-end // ALIGN) * ALIGN
            changed |= header["sections"][k]["offset"] != off
            header["sections"][k]["offset"] = off
            end = off + sizes[k]
        if not changed:
            break
    chunk = max(1, min(_CHUNK_ROWS, (16 << 20) // max(1, dim * 2)))

    def rows_chunks() -> Iterator[np.ndarray]:
        for pc in pieces:
            for s in range(0, pc.n, chunk):
                yield _unit_f16_checked(pc.rows(s, min(s + chunk, pc.n)))

    def codes_chunks() -> Iterator[np.ndarray]:
        for pc in pieces:
            pc.q.clear()
            for s in range(0, pc.n, chunk):
                yield _quantised(pc, s, min(s + chunk, pc.n))

    def q_col(name: str) -> Iterator[np.ndarray]:
        for pc in pieces:
            yield from (np.asarray(a, "<f4") for a in pc.q.get(name, []))

    def col(i: int, dt: str) -> Iterator[np.ndarray]:
        for c in pcols:
            yield np.ascontiguousarray(c[i], dtype=dt)

    sources: dict[str, Any] = {
        "rows": lambda: rows_chunks(), "codes": lambda: codes_chunks(),
        "scale": lambda: q_col("scale"), "rnorm": lambda: q_col("rnorm"), "xnorm": lambda: q_col("xnorm"),
        "path_end": lambda: iter([ends]), "path_blob": lambda: iter([blob]),
        "path_hash": lambda: col(2, "<u8"), "size": lambda: col(3, "<i8"), "mtime_ns": lambda: col(4, "<i8"),
        "sha256": lambda: col(5, "u1"),
    }
    path = folder / name
    tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "r+b") as f:
            f.write(_seal(SEGMENT_MAGIC, header))
            for k in SECTIONS:
                rec = header["sections"][k]
                f.write(b"\0" * (rec["offset"] - f.tell()))
                h = hashlib.sha256()
                written = 0
                for part in sources[k]():
                    b = part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes()
                    h.update(b)
                    f.write(b)
                    written += len(b)
                if written != rec["nbytes"]:
                    raise RuntimeError(f"section {k}: {written} bytes written, {rec['nbytes']} planned")
                rec["sha256"] = h.hexdigest()
            sealed = _seal(SEGMENT_MAGIC, header)
            if len(sealed) + 0 > header["sections"]["rows"]["offset"]:
                raise RuntimeError("segment header outgrew its place")  # unreachable: hashes are fixed-width
            f.seek(0)
            f.write(sealed)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return {"name": name, "count": n, "header_sha256": header["header_sha256"], "dead": None}


def _unit_f16_checked(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype="<f2")
    if not np.isfinite(x).all():
        raise ValueError("an embedding row holds NaN or infinite values")
    return x


def _write_tombstone(folder: Path, name: str, rows: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(rows, dtype="<u4").tobytes()
    tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return {"name": name, "count": int(rows.size), "sha256": hashlib.sha256(data).hexdigest()}


def _seg_name(gen: int) -> str:
    return f"seg-{gen:06d}-{secrets.token_hex(3)}.irs"


def _write_root(p: Path, spec: ModelSpec, gallery_root: str, gen: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    from .. import __version__

    count = sum(int(r["count"]) - (int(r["dead"]["count"]) if r.get("dead") else 0) for r in records)
    header: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "kind": "root", "spec": spec.to_dict(),
        "spec_fingerprint": spec.fingerprint(), "dim": spec.embedding_dim, "count": count, "generation": gen,
        "created_by": f"irreid-edge {__version__}", "gallery_root": gallery_root, "segments": records,
    }
    atomic_write(p, _seal(MAGIC, header))
    return header


def _finish(p: Path, new_segments: Iterable[str]) -> None:
    """After the root is durable: markers of the segments just written (their content is known
    good), then the files the root no longer names."""
    folder = segment_folder(p)
    for name in new_segments:
        with contextlib.suppress(OSError):
            sp = folder / name
            with open_regular(sp) as f:
                st = os.fstat(f.fileno())
                f.seek(8)
                hl = struct.unpack("<Q", f.read(8))[0]
                digest = f.read(hl)[-66:-2].decode("ascii")
            _write_marker(sp, st, digest)
    _clean_folder(p)


def _commit(p: Path, spec: ModelSpec, gallery_root: str, gen: int, records: list[dict[str, Any]],
            new_segments: list[str]) -> None:
    fsync_dir(segment_folder(p))
    with explain_full_disk(p, "cannot write the index", "free some space and run again (the previous index is intact)"):
        _write_root(p, spec, gallery_root, gen, records)
    _finish(p, new_segments)


def _check_new(spec: ModelSpec, entries: Sequence[IndexEntry], embeddings: np.ndarray) -> np.ndarray:
    if embeddings.ndim != 2 or embeddings.shape[0] != len(entries):
        raise ValueError(f"embeddings {embeddings.shape} do not match {len(entries)} entries")
    if embeddings.shape[1] != spec.embedding_dim:
        raise ValueError(f"embedding dim {embeddings.shape[1]} != spec.embedding_dim {spec.embedding_dim}")
    paths = [e.path for e in entries]
    bad = _first_unsafe(paths)
    if bad is not None:
        raise ValueError(f"entry path {bad!r} is not a relative path inside the gallery")
    if len(set(paths)) != len(paths):
        raise ValueError("an entry path is listed twice")
    for e in entries:
        if len(e.sha256) != 64:
            raise ValueError(f"entry {e.path!r}: sha256 {e.sha256!r} is not 64 hex digits")
    return _unit_f16(embeddings)


def write_index(path: str | os.PathLike[str], spec: ModelSpec, entries: Sequence[IndexEntry],
                embeddings: np.ndarray, gallery_root: str | os.PathLike[str]) -> Path:
    """A fresh index of one segment, replacing any index (of any format) at ``path`` atomically: on
    any failure the previous one is untouched. Takes ``index_lock``. ``embeddings`` (N, D) any
    float dtype; rows are L2-normalised in float32, then cast to float16 (float16 rows are kept)."""
    p = Path(path)
    rows16 = _check_new(spec, entries, embeddings)
    with index_lock(p, wait_message=False):
        gen = 1
        with contextlib.suppress(IndexFileError, OSError, KeyError):
            gen = int(_read_root(p, None)[0]["generation"]) + 1
        folder = segment_folder(p)
        folder.mkdir(parents=True, exist_ok=True)
        name = _seg_name(gen)
        with explain_full_disk(p, "cannot write the index", "free some space and run again (the previous index is intact)"):
            rec = _write_segment(folder, name, [_fresh_piece(entries, rows16)], spec.embedding_dim, spec.fingerprint())
        _commit(p, spec, str(Path(gallery_root).resolve()), gen, [rec], [name])
    return p


def _records(idx: GalleryIndex) -> list[dict[str, Any]]:
    return [dict(r) for r in idx.header["segments"]]


def append_rows(path: str | os.PathLike[str], entries: Sequence[IndexEntry], embeddings: np.ndarray,
                gallery: str | os.PathLike[str] | None = None) -> GalleryIndex:
    """Add rows to the index at ``path`` in one commit: one new segment, a tombstone for each
    existing live row of the same path (an update), a new root. Reads only the root, the segment
    headers and path columns; never rewrites a segment. Returns the index after the commit."""
    return commit_rows(path, entries, embeddings, gallery=gallery)[0]


def commit_rows(path: str | os.PathLike[str], entries: Sequence[IndexEntry] = (), embeddings: np.ndarray | None = None,
                remove: Iterable[str] | Iterable[int] | np.ndarray = (), *, spec: ModelSpec | None = None,
                gallery_root: str | os.PathLike[str] | None = None,
                gallery: str | os.PathLike[str] | None = None) -> tuple[GalleryIndex, int]:
    """Remove rows (paths, or logical row numbers of the index as it is) and append ``entries`` in
    ONE commit (a crash keeps all of it or none). A new entry whose path is live replaces that row.
    Without an index at ``path``, ``spec`` and ``gallery_root`` create it (nothing to remove).
    Returns (the index after the commit, rows removed by ``remove``)."""
    p = Path(path)
    items = np.asarray(remove).tolist() if isinstance(remove, np.ndarray) else list(remove)
    with index_lock(p, wait_message=False):
        if not p.exists() and spec is not None and gallery_root is not None:
            emb = np.zeros((0, spec.embedding_dim), np.float32) if embeddings is None else embeddings
            write_index(p, spec, entries, emb, gallery_root)
            return read_index(p, gallery=gallery), 0
        idx = read_index(p, gallery=gallery)
        emb = np.zeros((0, idx.dim), np.float32) if embeddings is None else embeddings
        rows16 = _check_new(idx.spec, entries, emb)
        if all(isinstance(x, str) for x in items):
            hits = list(idx.find_paths([str(x) for x in items]).values())
        elif all(isinstance(x, (int, np.integer)) for x in items):
            hits = [idx.locate(int(i)) for i in set(items)]
        else:
            raise TypeError("remove takes paths or logical row numbers, not a mix")
        if not entries and not hits:
            return idx, 0
        removed = len(set(hits))
        hits += list(idx.find_paths([e.path for e in entries]).values())
        gen = idx.generation + 1
        records = _records(idx)
        new: list[str] = []
        with explain_full_disk(p, "cannot write the index", "free some space and run again (the previous index is intact)"):
            _tombstones(idx, hits, records, gen)
            if entries:
                new.append(_seg_name(gen))
                records.append(_write_segment(segment_folder(p), new[0], [_fresh_piece(entries, rows16)], idx.dim,
                                              idx.header["spec_fingerprint"]))
        _commit(p, idx.spec, idx.header["gallery_root"], gen, records, new)
        return _auto_compact(read_index(p, gallery=gallery), gallery), removed


def _tombstones(idx: GalleryIndex, hits: Iterable[tuple[int, int]], records: list[dict[str, Any]], gen: int) -> int:
    """Write a new tombstone per segment that loses rows; updates ``records``. Returns rows removed."""
    by_seg: dict[int, list[int]] = {}
    for s, r in hits:
        by_seg.setdefault(s, []).append(r)
    folder = segment_folder(idx.path)
    n = 0
    for s, rows in by_seg.items():
        seg = idx.segments[s]
        old = seg.dead if seg.dead is not None else np.zeros(0, np.uint32)
        new = np.union1d(old, np.asarray(rows, dtype=np.uint32)).astype(np.uint32)
        n += int(new.size - old.size)
        records[s]["dead"] = _write_tombstone(folder, f"{seg.name}.dead-{gen:06d}", new)
    return n


def remove_rows(path: str | os.PathLike[str], paths_or_logical_rows: Iterable[str] | Iterable[int] | np.ndarray,
                gallery: str | os.PathLike[str] | None = None) -> int:
    """Tombstone rows of the index at ``path`` (given by path, or by logical row number) in one
    commit. Returns the number of rows removed (paths that are not in the index are ignored)."""
    return commit_rows(path, remove=paths_or_logical_rows, gallery=gallery)[1]


def _auto_compact(idx: GalleryIndex, gallery: Any) -> GalleryIndex:
    total = sum(s.count for s in idx.segments)
    if total and (total - idx.count) > MAX_DEAD_FRACTION * total:
        return compact(idx.path, gallery=gallery)
    if len(idx.segments) > MAX_SEGMENTS:
        # the trailing run of small segments (each under 1/16 of the live rows), at least two
        small = max(1, idx.count // MAX_SEGMENTS)
        start = len(idx.segments) - 2
        while start > 0 and idx.segments[start - 1].live_count <= small:
            start -= 1
        return compact(idx.path, gallery=gallery, start=start)
    return idx


def compact(path: str | os.PathLike[str], gallery: str | os.PathLike[str] | None = None,
            start: int = 0) -> GalleryIndex:
    """Merge segments ``start..`` (all by default) into one, dropping dead rows, in one commit. The
    stored rows, codes, scales and norms are copied as they are. Readers are never blocked: they
    keep the files they mapped; a reader that opens the root between the commit and the removal of
    the old files re-reads it."""
    p = Path(path)
    with index_lock(p, wait_message=False):
        idx = read_index(p, gallery=gallery)
        merge = idx.segments[start:]
        if len(merge) <= 1 and all(s.dead is None for s in merge):
            return idx
        gen = idx.generation + 1
        records = _records(idx)[:start]
        name = _seg_name(gen)
        pieces = [_copy_piece(s, None if s.live is None else s.live_rows()) for s in merge]
        with explain_full_disk(p, "cannot compact the index", "free some space and run again (the index is intact)"):
            records.append(_write_segment(segment_folder(p), name, pieces, idx.dim, idx.header["spec_fingerprint"]))
        _commit(p, idx.spec, idx.header["gallery_root"], gen, records, [name])
        return read_index(p, gallery=gallery)
