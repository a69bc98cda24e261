"""Building and refreshing a gallery index: decode in a thread pool, embed in batches, write atomically.

Incremental rules (shared/DESIGN.md "Gallery index"):
- an entry whose (size, mtime_ns) are unchanged is kept without re-hashing;
- a changed size/mtime is re-hashed; re-embedded only if the content hash changed;
- files gone from the folder are dropped; new files are embedded.
Append-only (index format 2, issue 27): new and changed files are committed as appended segments
(a changed path is tombstoned in the same commit), files gone from the folder as tombstones; the
index is never rewritten whole (``--rebuild`` writes a fresh one). Resumable: every
``checkpoint_seconds`` (and on Ctrl-C) the rows embedded so far are committed, durably; an
interrupted run keeps every committed row and the next run embeds only what is still missing.
A commit that fails (a full disk) leaves the index as the previous commit left it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..base.fileio import NotRegularFileError, file_sha256
from ..base.progress import Progress
from ..preprocess import ImageDecodeError, preprocess_path
from ..spec import ModelSpec
from .index import (
    GalleryIndex,
    IndexEntry,
    IndexFileError,
    append_rows,
    default_index_path,
    index_lock,
    read_index,
    remove_rows,
    write_index,
)
from .scan import GalleryFile, ScanResult, scan_gallery

__all__ = ["Prepared", "UpdateStats", "bounded_map", "check_gallery", "check_index", "check_spec", "embed_items",
           "non_finite_message", "prepare_file", "update_index"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class UpdateStats:
    images: int = 0  # rows in the index afterwards
    added: int = 0
    updated: int = 0
    removed: int = 0
    kept: int = 0  # unchanged, or touched but with the same content hash
    resumed: int = 0  # taken from an interrupted run's checkpoint
    skipped: int = 0  # files that could not be used (reported one line each)
    written: bool = False
    seconds: float = 0.0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["embedded"] = self.embedded
        d["skipped_files"] = [{"path": p, "reason": r} for p, r in self.skipped_files]
        return d

    def summary(self) -> str:
        return (f"{self.images} images: added {self.added}, updated {self.updated}, removed {self.removed}, "
                f"kept {self.kept}, resumed {self.resumed}, skipped {self.skipped} in {self.seconds:.1f}s")


@dataclass
class Prepared:
    file: GalleryFile
    sha256: str | None = None
    pixels: np.ndarray | None = None  # (3, H, W) float32 raw 0-255, None when not decoded
    error: str | None = None
    unchanged: bool = False  # content hash equals the known one: no need to embed


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """``map`` in input order through a thread pool, at most ``ahead`` items in flight (bounded memory).

    ``workers <= 0`` runs in the calling thread (the one-at-a-time baseline of bench/index_bench.py).
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="irreid-decode") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:  # Ctrl-C or an error: do not decode the rest
                fut.cancel()


def prepare_file(f: GalleryFile, spec: ModelSpec, known_sha: str | None, want_hash: bool = True) -> Prepared:
    """Hash and decode one file (runs in a worker thread; PIL and hashlib release the GIL)."""
    try:
        sha = file_sha256(f.path) if want_hash else None
    except OSError as e:
        return Prepared(f, error=f"{f.path}: cannot read ({e.strerror}); fix its permissions or remove it")
    except NotRegularFileError as e:  # replaced by a FIFO or a folder since the scan
        return Prepared(f, error=f"{e}; remove it from the folder")
    if known_sha is not None and sha == known_sha:
        return Prepared(f, sha256=sha, unchanged=True)
    try:
        return Prepared(f, sha256=sha, pixels=preprocess_path(f.path, spec))
    except ImageDecodeError as e:
        return Prepared(f, sha256=sha, error=str(e))


def embed_items(prepared: Iterable[Prepared], embed: Callable[[np.ndarray], np.ndarray],
                batch: int) -> Iterator[tuple[Prepared, np.ndarray | None]]:
    """Batch the decoded items through ``embed``; yields (item, embedding or None) in input order."""
    waiting: list[Prepared] = []

    def flush() -> Iterator[tuple[Prepared, np.ndarray | None]]:
        if not waiting:
            return
        good = [p for p in waiting if p.pixels is not None]
        embs = embed(np.stack([p.pixels for p in good if p.pixels is not None])) if good else np.zeros((0, 0), np.float32)  # (B, D)
        rows = iter(embs)
        for p in waiting:
            row = next(rows) if p.pixels is not None else None
            p.pixels = None  # free the pixels as soon as they are embedded
            if row is not None and not np.isfinite(row).all():  # issue 17 item 3: never index a NaN row
                p.error, row = non_finite_message(p.file.path), None
            yield p, row
        waiting.clear()

    for p in prepared:
        waiting.append(p)
        if sum(q.pixels is not None for q in waiting) >= batch:
            yield from flush()
    yield from flush()


def non_finite_message(path: str | Path) -> str:
    return (f"{path}: the model produced NaN or infinite values for this image; skipped (check the model's "
            "spec mean/std, or remove the image)")


@dataclass
class _Old:
    """The live rows of an existing index, by path: (size, mtime_ns, sha256 hex, logical row)."""

    idx: GalleryIndex
    rows: dict[str, tuple[int, int, bytes, int]]

    @classmethod
    def of(cls, idx: GalleryIndex) -> _Old:
        paths, size, mtime, sha = idx.live_columns()
        return cls(idx, {p: (s, m, h, i) for i, (p, s, m, h) in
                         enumerate(zip(paths, size.tolist(), mtime.tolist(), [bytes(x) for x in sha]))})

    def row16(self, path: str) -> np.ndarray:
        s, r = self.idx.locate(self.rows[path][3])
        return np.asarray(self.idx.segments[s].rows[r])


@dataclass
class _Plan:
    todo: list[tuple[GalleryFile, str | None]]  # (file, known sha to compare against)
    removed: list[str]  # paths in the index that are gone from the folder
    kept: int
    present: int  # files kept or to embed


def _make_plan(scan: ScanResult, old: _Old | None) -> _Plan:
    rows = old.rows if old else {}
    plan = _Plan(todo=[], removed=[], kept=0, present=len(scan.files))
    for f in scan.files:
        o = rows.get(f.rel)
        if o and (o[0], o[1]) == (f.size, f.mtime_ns):
            plan.kept += 1
        else:
            plan.todo.append((f, o[2].hex() if o else None))
    if rows:
        present = {f.rel for f in scan.files}
        plan.removed = [p for p in rows if p not in present]
    return plan


def check_spec(idx: GalleryIndex, spec: ModelSpec, gallery: Path) -> None:
    if idx.header.get("spec_fingerprint") != spec.fingerprint():
        s = idx.spec
        raise IndexFileError(
            f"{idx.path}: made with another model ({s.name}, {s.modality}, {s.precision}, fingerprint "
            f"{str(idx.header.get('spec_fingerprint'))[:12]}) than this run ({spec.name}, {spec.modality}, "
            f"{spec.precision}, {spec.fingerprint()[:12]}); run `irreid-edge index --gallery {gallery} --rebuild` "
            f"(add the same --model/--gallery-modality/--precision), or pass --index PATH to keep both")


def check_gallery(idx: GalleryIndex, gallery: Path) -> None:
    """Refuse another gallery's index (issue 17 item 4). An index at the gallery's default place
    belongs to it wherever the folder was moved or copied; one elsewhere (``--index``) must record
    this gallery's root, or its rows would be returned under the other gallery's paths."""
    if idx.path.resolve() == default_index_path(gallery).resolve():
        return
    recorded = idx.header.get("gallery_root")
    if recorded != str(gallery.resolve()):
        raise IndexFileError(
            f"{idx.path}: the index of gallery {recorded}, not of {gallery}; pass the --index of this gallery, "
            f"or add --rebuild to replace it with an index of {gallery}")


def check_index(idx: GalleryIndex, spec: ModelSpec, gallery: Path) -> None:
    """Both checks a caller needs before ranking ``idx`` against ``gallery`` with ``spec``'s model."""
    check_gallery(idx, gallery)
    check_spec(idx, spec, gallery)


def _read_existing(index_path: Path, spec: ModelSpec, gallery: Path, rebuild: bool) -> GalleryIndex | None:
    if rebuild or not index_path.exists():
        return None
    old = read_index(index_path, gallery=gallery)
    check_index(old, spec, gallery)
    return old


def update_index(gallery: str | Path, index_path: str | Path, encoder: Any, *, rebuild: bool = False,
                 follow_links: bool = False, batch: int = 32, workers: int = 4, quiet: bool = False,
                 checkpoint_seconds: float = 30.0, say: Callable[[str], None] | None = None,
                 scan: ScanResult | None = None) -> tuple[GalleryIndex, UpdateStats]:
    """Bring the index at ``index_path`` up to date with ``gallery``. Returns (index, stats).

    ``scan``: a fresh scan of the same gallery the caller already made (saves a second walk on the
    lock-free path; the locked path always re-scans)."""
    t0 = time.perf_counter()
    gallery, index_path = Path(gallery), Path(index_path)
    say = say or (lambda msg: print(f"irreid-edge: {msg}", file=sys.stderr))
    spec: ModelSpec = encoder.spec
    scan = scan if scan is not None else scan_gallery(gallery, follow_links)
    if not scan.files:
        raise FileNotFoundError(f"{gallery}: no images in the gallery (looked for "
                                f"{', '.join(sorted(_suffixes()))}); add crops or check the path")
    # Lock-free fast path: an up-to-date index needs no writer (and works on a read-only gallery).
    old = _read_existing(index_path, spec, gallery, rebuild)
    if old is not None:
        plan = _make_plan(scan, _Old.of(old))
        if not plan.todo and not plan.removed:
            return old, UpdateStats(images=old.count, kept=plan.kept, skipped=len(scan.skipped),
                                    skipped_files=list(scan.skipped), seconds=time.perf_counter() - t0)
    with index_lock(index_path):
        # Re-read under the lock: another process may have just written it. Its segments were
        # checked in full once (their verified markers); new rows go to new segments.
        scan = scan_gallery(gallery, follow_links)
        old = _read_existing(index_path, spec, gallery, rebuild)
        stats = UpdateStats(skipped_files=list(scan.skipped))
        idx = _run_update(scan, old, encoder, index_path, stats, batch=batch, workers=workers,
                          quiet=quiet, checkpoint_seconds=checkpoint_seconds, gallery=gallery, say=say)
    stats.skipped = len(stats.skipped_files)
    stats.seconds = time.perf_counter() - t0
    return idx, stats


def _suffixes() -> set[str]:
    from ..preprocess import IMAGE_SUFFIXES

    return set(IMAGE_SUFFIXES)


class _Committer:
    """Commits new rows as appended segments (the first commit of a fresh index or of --rebuild
    writes the index anew); each commit is durable and keeps every earlier one."""

    def __init__(self, index_path: Path, spec: ModelSpec, gallery: Path, fresh: bool) -> None:
        self.index_path, self.spec, self.gallery, self.fresh = index_path, spec, gallery, fresh
        self.entries: list[IndexEntry] = []
        self.rows: list[np.ndarray] = []
        self.committed = 0
        self.commits = 0
        self.done: set[str] = set()

    def add(self, entry: IndexEntry, row16: np.ndarray) -> None:
        self.entries.append(entry)
        self.rows.append(row16)

    def commit(self) -> None:
        if not self.entries:
            return
        data = np.stack(self.rows).astype(np.float16)
        if self.fresh:
            write_index(self.index_path, self.spec, self.entries, data, self.gallery)
            self.fresh = False
        else:
            append_rows(self.index_path, self.entries, data, gallery=self.gallery)
        self.committed += len(self.entries)
        self.done.update(e.path for e in self.entries)
        self.commits += 1
        self.entries, self.rows = [], []


def _run_update(scan: ScanResult, old: GalleryIndex | None, encoder: Any, index_path: Path, stats: UpdateStats,
                *, batch: int, workers: int, quiet: bool, checkpoint_seconds: float, gallery: Path,
                say: Callable[[str], None]) -> GalleryIndex:
    spec: ModelSpec = encoder.spec
    known = _Old.of(old) if old is not None else None
    plan = _make_plan(scan, known)
    stats.kept = plan.kept
    out = _Committer(index_path, spec, gallery, fresh=old is None)
    failed = 0
    stale: list[str] = []
    last_ckpt = time.perf_counter()
    prepared = bounded_map(lambda t: prepare_file(t[0], spec, t[1]), plan.todo, workers, ahead=max(2 * batch, 8))
    try:
        with Progress(len(plan.todo), "indexing", quiet=quiet) as bar:
            for item, emb in embed_items(prepared, encoder.embed, batch):
                bar.update(1)
                f = item.file
                if item.error is not None:
                    stats.skipped_files.append((str(f.path), item.error))
                    say(item.error)
                    failed += 1
                    if known is not None and f.rel in known.rows:
                        stale.append(f.rel)
                    continue
                entry = IndexEntry(f.rel, f.size, f.mtime_ns, str(item.sha256))
                if item.unchanged:  # touched, same content: the old row under the new stat
                    assert known is not None
                    out.add(entry, known.row16(f.rel))
                    stats.kept += 1
                else:
                    assert emb is not None
                    is_update = known is not None and f.rel in known.rows
                    stats.updated += int(is_update)
                    stats.added += int(not is_update)
                    out.add(entry, _unit_row(emb))
                if checkpoint_seconds >= 0 and time.perf_counter() - last_ckpt >= checkpoint_seconds:
                    out.commit()
                    last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            pending = len(out.entries)
            out.commit()
            say(f"interrupted: {out.committed} new embeddings committed to {index_path} ({pending} since the "
                "last checkpoint); every committed row is kept and the next run embeds the rest")
        raise
    stats.images = plan.present - failed
    if stats.images <= 0 and not out.committed and not out.entries:
        # the first reason in the message itself: --quiet hides the per-file lines
        scanned = dict(scan.skipped)
        bad = [(p, r) for p, r in stats.skipped_files if p not in scanned]
        why = ""
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            why = f" (first: {bad[0][1] if bad[0][1].startswith(bad[0][0]) else f'{bad[0][0]}: {bad[0][1]}'}{more})"
        raise FileNotFoundError(f"{gallery}: none of the {len(scan.files)} image files could be used{why}; "
                                "fix or replace them")
    out.commit()
    # files gone from the folder, and changed files that failed this time (their old row is stale)
    gone = list(plan.removed) + [p for p in stale if p not in out.done]
    if gone:
        remove_rows(index_path, gone, gallery=gallery)
    stats.removed = len(plan.removed)
    stats.written = bool(out.commits or gone)
    idx = read_index(index_path, gallery=gallery)
    stats.images = idx.count
    return idx


def _unit_row(x: np.ndarray) -> np.ndarray:
    """float16 rows are stored rows already; float32 rows are normalised before the cast."""
    if x.dtype == np.float16:
        return x
    x = x.astype(np.float32)
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float16)
