"""The gallery index file: embeddings + manifest in one file, memory-mapped when read.

Default location: ``<gallery_dir>/.irreid/index.irx`` (a hidden folder inside the gallery root that
the scanner never lists); ``--index PATH`` overrides it. Layout, little-endian::

    bytes 0-7        magic b"IRREIDX1"
    bytes 8-15       uint64 header_len L
    bytes 16..16+L   UTF-8 JSON header (the manifest)
    zero padding up to data_offset (a multiple of 64)
    data_offset..    N x D float16, row-major: the embeddings, L2-normalised in float32 before the cast

Header JSON keys:
    "format_version": 1
    "spec":             ModelSpec.to_dict() of the gallery encoder
    "spec_fingerprint": spec.fingerprint()
    "count": N, "dim": D, "dtype": "float16", "data_offset": int
    "data_sha256":      sha256 of the N*D*2 data bytes
    "created_by":       "irreid-edge <version>"
    "gallery_root":     the absolute gallery root when the index was written
    "entries":          [{"path": relative POSIX path, "size": bytes, "mtime_ns": int,
                          "sha256": content hash of the file}, ...] in row order
    "header_sha256":    always the LAST key: sha256 of bytes 0..16+L with this value's 64 hex
                        digits written as "0" (covers magic, length and every header field)

Integrity (issue 17 items 1-2: a damaged index is refused, never ranked). On every open: the
header checksum, count/dim/offset/file-size consistency, entry paths that stay inside the gallery
root. The data checksum (and that every value is finite) is checked in full once per file
identity: after a full check, or after writing, ``<index>.verified`` records the file's
(st_dev, st_ino, size, mtime_ns, ctime_ns); an open whose fstat matches it skips the re-hash. Any
write to the file, a replacement or a copy changes that identity (ctime cannot be set back from
user space), so a damaged or edited index is re-hashed and refused. Two things keep an identity
and are what ``irreid-edge index --verify`` (``verify=True``: always re-hash) is for: bit rot
under an unchanged inode, and an in-place write within the same clock tick (a few ms: file
times are coarse) as the check that left the marker. The cost
per open is in docs/getting-started.md, "A damaged index, huge images, odd files" (bench/index_open_bench.py).

Rank in float32 (numpy float16 matmul is much slower). Readers never take a lock: writers replace
the file atomically (runtime.base.fileio.atomic_write) under an exclusive ``flock`` on
``<index>.lock``, so a reader sees the old index or the new one, never a torn one.
The C++ runtime (runtime/cpp) reads and writes the same format, header checksum included.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.fileio import (
    NotRegularFileError,
    atomic_write,
    explain_full_disk,
    open_regular,
    remove_stale_temps,
)
from ..spec import ModelSpec, SpecError
from .scan import INDEX_DIRNAME

__all__ = [
    "ALIGN",
    "FORMAT_VERSION",
    "MAGIC",
    "GalleryIndex",
    "IndexEntry",
    "IndexFileError",
    "default_index_path",
    "index_lock",
    "read_index",
    "write_index",
]

MAGIC = b"IRREIDX1"
FORMAT_VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sQ")  # magic, header_len
_MAX_HEADER = 1 << 31  # a header over 2 GB is corruption, not a gallery
_SUM_KEY = b',"header_sha256":"'
_SUM_TAIL = len(_SUM_KEY) + 64 + 2  # the key, 64 hex digits, '"}'
_ZEROS = b"0" * 64


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


@dataclass
class GalleryIndex:
    path: Path
    header: dict[str, Any]
    spec: ModelSpec
    entries: list[IndexEntry]
    embeddings: np.ndarray  # (N, D) float16, usually a read-only memmap
    _f32: np.ndarray | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return len(self.entries)

    def as_float32(self) -> np.ndarray:
        """(N, D) float32 copy, rows re-normalised (float16 rounding moves norms slightly). Cached."""
        if self._f32 is None:
            self._f32 = _f16_to_unit_f32(self.embeddings)
        return self._f32


def _f16_to_unit_f32(x16: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(x16.shape, np.float32)
    for s in range(0, x16.shape[0], chunk):  # chunked: no second full-size temporary
        block = x16[s:s + chunk].astype(np.float32)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[s:s + chunk] = block / np.maximum(norms, 1e-12)
    return out


def default_index_path(gallery: str | os.PathLike[str]) -> Path:
    return Path(gallery) / INDEX_DIRNAME / "index.irx"


def marker_path(index_path: str | os.PathLike[str]) -> Path:
    """Where the verified-once marker of an index lives (see the module docstring)."""
    return Path(f"{index_path}.verified")


def _rebuild_hint(gallery: str | os.PathLike[str] | None) -> str:
    return f"run `irreid-edge index --gallery {gallery if gallery else 'DIR'} --rebuild`"


def _corrupt(path: Path, why: str, gallery: str | os.PathLike[str] | None) -> IndexFileError:
    return IndexFileError(f"{path}: corrupted index ({why}); {_rebuild_hint(gallery)}")


def _header_digest(prefix: bytes, raw_zeroed: bytes) -> str:
    return hashlib.sha256(prefix + raw_zeroed).hexdigest()


def _parse_header(path: Path, f: Any, file_size: int, gallery: Any) -> dict[str, Any]:
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise _corrupt(path, f"file too short ({file_size} bytes)", gallery)
    magic, header_len = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise _corrupt(path, f"bad magic {magic!r}, expected {MAGIC!r}", gallery)
    if header_len > min(_MAX_HEADER, file_size - _PREFIX.size):
        raise _corrupt(path, f"header length {header_len} past the end of the file", gallery)
    raw = f.read(header_len)
    tail = raw[-_SUM_TAIL:]
    if len(raw) < _SUM_TAIL or not tail.startswith(_SUM_KEY) or not tail.endswith(b'"}'):
        raise _corrupt(path, "no header checksum (a damaged header, or an index written by an older "
                       "irreid-edge)", gallery)
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
    header["_header_len"] = header_len
    return header


def _check_layout(path: Path, header: dict[str, Any], file_size: int, gallery: Any) -> tuple[int, int, int]:
    try:
        count, dim, offset = int(header["count"]), int(header["dim"]), int(header["data_offset"])
        entries = header["entries"]
        dtype = header["dtype"]
        missing = [k for k in ("spec", "data_sha256", "spec_fingerprint") if k not in header]
        if missing:
            raise KeyError(", ".join(missing))
    except (KeyError, TypeError, ValueError) as e:
        raise _corrupt(path, f"header field missing or invalid: {e}", gallery) from None
    if dtype != "float16":
        raise _corrupt(path, f"dtype {dtype!r} is not 'float16'", gallery)
    if count < 0 or dim <= 0 or not isinstance(entries, list) or len(entries) != count:
        raise _corrupt(path, f"count {count} / dim {dim} / {len(entries) if isinstance(entries, list) else '?'} "
                       "entries disagree", gallery)
    if offset % ALIGN or offset < _PREFIX.size + header["_header_len"]:
        raise _corrupt(path, f"data_offset {offset} is not a multiple of {ALIGN} past the header", gallery)
    expected = offset + count * dim * 2
    if file_size != expected:
        raise _corrupt(path, f"file is {file_size} bytes, the header says {expected}", gallery)
    return count, dim, offset


def _first_unsafe(paths: list[str]) -> str | None:
    """The first path that is not a relative POSIX path inside the gallery root (absolute, with an
    empty, "." or ".." component, or a NUL), else None. Substring searches over all the paths at
    once: a Python test per entry would cost more than the rest of the open on a large index."""
    joined = "\0".join(paths)
    if not paths or (joined.count("\0") == len(paths) - 1 and not _bad_component("\0" + joined + "\0")):
        return None
    return next(p for p in paths if "\0" in p or _bad_component("\0" + p + "\0"))


def _bad_component(wrapped: str) -> bool:
    """``wrapped``: paths between NULs. With "/" also read as a separator, an empty, "." or ".."
    component shows up as one of three substrings."""
    s = wrapped.replace("/", "\0")
    return "\0\0" in s or "\0.\0" in s or "\0..\0" in s


def _entries(path: Path, header: dict[str, Any], gallery: Any) -> tuple[ModelSpec, list[IndexEntry]]:
    try:
        spec = ModelSpec.from_dict(header["spec"])
        entries = [IndexEntry(str(e["path"]), int(e["size"]), int(e["mtime_ns"]), str(e["sha256"]))
                   for e in header["entries"]]
    except (SpecError, KeyError, TypeError, ValueError) as e:
        raise _corrupt(path, f"bad spec or entry in the header: {e}", gallery) from None
    bad = _first_unsafe([e.path for e in entries])
    if bad is not None:  # issue 17 item 2: a path such as ../../etc/x.jpg would be returned and opened
        raise _corrupt(path, f"entry path {bad!r} leaves the gallery root", gallery)
    if len({e.path for e in entries}) != len(entries):
        raise _corrupt(path, "an entry path is listed twice", gallery)
    return spec, entries


def _identity(st: os.stat_result) -> dict[str, int]:
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _marker_matches(path: Path, st: os.stat_result, header: dict[str, Any]) -> bool:
    try:
        with open_regular(marker_path(path)) as f:
            mark = json.loads(f.read(4096))
    except (OSError, ValueError):  # missing, unreadable, a FIFO, malformed: just re-hash
        return False
    return isinstance(mark, dict) and mark == {**_identity(st), "header_sha256": header.get("header_sha256")}


def _write_marker(path: Path, st: os.stat_result, header: dict[str, Any]) -> None:
    """Record that the file of identity ``st`` (the fstat of the descriptor that was checked, never
    a new look-up by name, which may find a newer file) passed the full check. Best effort: a
    read-only folder just means the next open re-hashes."""
    try:
        payload = json.dumps({**_identity(st), "header_sha256": header.get("header_sha256")})
        atomic_write(marker_path(path), payload.encode())
    except OSError:
        pass


def _check_data(path: Path, emb: np.ndarray, header: dict[str, Any], gallery: Any) -> None:
    """The data sha256 and finiteness, in one pass of bounded memory."""
    h = hashlib.sha256()
    for s in range(0, emb.shape[0], 16384):
        block = np.ascontiguousarray(emb[s:s + 16384])
        h.update(block.tobytes())
        if not np.isfinite(block).all():
            row = s + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise _corrupt(path, f"row {row} holds NaN or infinite values", gallery)
    if h.hexdigest() != header["data_sha256"]:
        raise _corrupt(path, "embedding checksum mismatch", gallery)


def read_index(path: str | os.PathLike[str], verify: bool = False,
               gallery: str | os.PathLike[str] | None = None) -> GalleryIndex:
    """Open an index (memory-mapped), checked as the module docstring says. ``verify`` re-hashes the
    data even when the verified-once marker matches. ``gallery`` only feeds messages."""
    p = Path(path)
    try:
        f = open_regular(p)
    except FileNotFoundError:
        raise IndexFileError(f"{p}: no index; build it with `irreid-edge index --gallery "
                             f"{gallery if gallery else 'DIR'}`") from None
    except NotRegularFileError as e:
        raise IndexFileError(f"{e} (--index takes the index file)") from None
    with f:
        st = os.fstat(f.fileno())
        header = _parse_header(p, f, st.st_size, gallery)
        count, dim, offset = _check_layout(p, header, st.st_size, gallery)
        spec, entries = _entries(p, header, gallery)
        if spec.embedding_dim != dim:
            raise _corrupt(p, f"spec embedding_dim {spec.embedding_dim} != dim {dim}", gallery)
        if count:  # mapped through the descriptor checked above, not by name (no swap in between)
            emb: np.ndarray = np.memmap(f, dtype="<f2", mode="r", offset=offset, shape=(count, dim))
        else:
            emb = np.zeros((0, dim), np.float16)  # np.memmap refuses an empty mapping
    header.pop("_header_len", None)
    if verify or not _marker_matches(p, st, header):
        _check_data(p, emb, header, gallery)
        _write_marker(p, st, header)
    return GalleryIndex(path=p, header=header, spec=spec, entries=entries, embeddings=emb)


def _sha256_array(a: np.ndarray, chunk_rows: int = 16384) -> str:
    h = hashlib.sha256()
    for s in range(0, a.shape[0], chunk_rows):
        h.update(np.ascontiguousarray(a[s:s + chunk_rows]).tobytes())
    return h.hexdigest()


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


def build_header(spec: ModelSpec, entries: list[IndexEntry], data: np.ndarray,
                 gallery_root: str | os.PathLike[str]) -> tuple[bytes, int]:
    """(header JSON bytes with its checksum, data_offset) for ``data`` (N, D) float16."""
    from .. import __version__

    header: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "spec": spec.to_dict(), "spec_fingerprint": spec.fingerprint(),
        "count": len(entries), "dim": int(data.shape[1]), "dtype": "float16", "data_offset": 0,
        "data_sha256": _sha256_array(data), "created_by": f"irreid-edge {__version__}",
        "gallery_root": str(Path(gallery_root).resolve()), "entries": [e.to_dict() for e in entries],
        "header_sha256": _ZEROS.decode(),  # last key, filled in below
    }
    # data_offset depends on the header length, which depends on data_offset's digits: iterate.
    for _ in range(4):
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        offset = -(-(_PREFIX.size + len(raw)) // ALIGN) * ALIGN
        if offset == header["data_offset"]:
            digest = _header_digest(_PREFIX.pack(MAGIC, len(raw)), raw).encode()
            return raw[:-_SUM_TAIL + len(_SUM_KEY)] + digest + b'"}', offset
        header["data_offset"] = offset
    raise RuntimeError("index header length did not converge")  # unreachable in practice


def write_index(path: str | os.PathLike[str], spec: ModelSpec, entries: list[IndexEntry],
                embeddings: np.ndarray, gallery_root: str | os.PathLike[str]) -> Path:
    """Write atomically (runtime.base.fileio.atomic_write). On any failure the previous file is untouched.

    Call under ``index_lock`` when other writers may run. ``embeddings`` (N, D) any float dtype;
    rows are L2-normalised in float32, then cast to float16. Leaves the verified-once marker.
    """
    p = Path(path)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(entries):
        raise ValueError(f"embeddings {embeddings.shape} do not match {len(entries)} entries")
    if embeddings.shape[1] != spec.embedding_dim:
        raise ValueError(f"embedding dim {embeddings.shape[1]} != spec.embedding_dim {spec.embedding_dim}")
    bad = _first_unsafe([e.path for e in entries])
    if bad is not None:
        raise ValueError(f"entry path {bad!r} is not a relative path inside the gallery")
    data = _unit_f16(embeddings)
    raw, offset = build_header(spec, entries, data, gallery_root)
    pad = b"\0" * (offset - _PREFIX.size - len(raw))
    rows = max(1, (8 << 20) // max(1, data.shape[1] * 2))  # ~8 MB per write
    chunks = (data[s:s + rows].tobytes() for s in range(0, data.shape[0], rows))
    with explain_full_disk(p, "cannot write the index", "free some space and run again (the previous index is intact)"):
        atomic_write(p, iter([_PREFIX.pack(MAGIC, len(raw)), raw, pad, *chunks]))
    _write_marker(p, os.stat(p), json.loads(raw))  # under index_lock no other writer replaced it since
    return p


@contextlib.contextmanager
def index_lock(path: str | os.PathLike[str], wait_message: bool = True) -> Iterator[None]:
    """Exclusive ``flock`` on ``<index>.lock`` for writers; blocks (saying so) while another holds it.

    Once held, the temp files of writers killed mid-write (kill -9, power loss) are removed: under
    the lock no live writer can own them (issue 17 item 8).
    """
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
        for stale in (Path(path), Path(f"{path}.partial"), marker_path(path), marker_path(f"{path}.partial")):
            remove_stale_temps(stale)
        yield
    finally:
        os.close(fd)  # closing releases the lock
