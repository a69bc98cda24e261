"""Building and refreshing a gallery index: decode in a thread pool, embed in batches, write atomically.

Incremental rules (shared/DESIGN.md "Gallery index"):
- an entry whose (size, mtime_ns) are unchanged is kept without re-hashing;
- a changed size/mtime is re-hashed; re-embedded only if the content hash changed;
- files gone from the folder are dropped; new files are embedded.
Resumable: every ``checkpoint_seconds`` (and on Ctrl-C) the rows embedded so far are written
atomically to ``<index>.partial`` (same format); the next run reuses them for files whose
(path, size, mtime_ns) still match. The index itself is replaced only at the very end, so an
interrupted run or a full disk leaves the previous index valid.
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
    default_index_path,
    index_lock,
    read_index,
    write_index,
)
from .scan import GalleryFile, ScanResult, scan_gallery

__all__ = ["Prepared", "UpdateStats", "bounded_map", "check_gallery", "check_index", "check_spec", "embed_items",
           "non_finite_message", "partial_path", "prepare_file", "update_index"]

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


def partial_path(index_path: str | Path) -> Path:
    return Path(f"{index_path}.partial")


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
class _Row:
    entry: IndexEntry
    source: np.ndarray  # the (N, D) array holding the row
    row: int


@dataclass
class _Plan:
    rows: dict[str, _Row]  # rel -> row kept from the old index / checkpoint
    todo: list[tuple[GalleryFile, str | None]]  # (file, known sha to compare against)
    removed: int
    kept: int
    resumed: int


def _make_plan(scan: ScanResult, old: GalleryIndex | None, part: GalleryIndex | None) -> _Plan:
    old_rows = {e.path: (e, i) for i, e in enumerate(old.entries)} if old else {}
    part_rows = {e.path: (e, i) for i, e in enumerate(part.entries)} if part else {}
    plan = _Plan(rows={}, todo=[], removed=0, kept=0, resumed=0)
    for f in scan.files:
        o, pr = old_rows.get(f.rel), part_rows.get(f.rel)
        if o and (o[0].size, o[0].mtime_ns) == (f.size, f.mtime_ns):
            plan.rows[f.rel] = _Row(o[0], old.embeddings, o[1])  # type: ignore[union-attr]
            plan.kept += 1
        elif pr and (pr[0].size, pr[0].mtime_ns) == (f.size, f.mtime_ns):
            plan.rows[f.rel] = _Row(pr[0], part.embeddings, pr[1])  # type: ignore[union-attr]
            plan.resumed += 1
        else:
            plan.todo.append((f, o[0].sha256 if o else None))
    present = {f.rel for f in scan.files}
    plan.removed = sum(1 for rel in old_rows if rel not in present)
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


def _load_partial(path: Path, spec: ModelSpec, say: Callable[[str], None]) -> GalleryIndex | None:
    if not path.is_file():
        return None
    try:
        part = read_index(path, verify=True)
    except IndexFileError as e:
        say(f"ignoring the checkpoint of an interrupted run ({e})")
        return None
    if part.header.get("spec_fingerprint") != spec.fingerprint():
        return None  # a checkpoint of another model: useless, and harmless to ignore
    return part


def _read_existing(index_path: Path, spec: ModelSpec, gallery: Path, rebuild: bool,
                   verify: bool) -> GalleryIndex | None:
    if rebuild or not index_path.exists():
        return None
    old = read_index(index_path, verify=verify, gallery=gallery)
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
    old = _read_existing(index_path, spec, gallery, rebuild, verify=False)
    if old is not None:
        plan = _make_plan(scan, old, None)
        if not plan.todo and not plan.removed:
            return old, UpdateStats(images=old.count, kept=plan.kept, skipped=len(scan.skipped),
                                    skipped_files=list(scan.skipped), seconds=time.perf_counter() - t0)
    with index_lock(index_path):
        # Re-read under the lock: another process may have just written it. Verify the checksum
        # before building on it, so a corrupted index is never silently carried forward.
        scan = scan_gallery(gallery, follow_links)
        old = _read_existing(index_path, spec, gallery, rebuild, verify=True)
        part = _load_partial(partial_path(index_path), spec, say)
        stats = UpdateStats(skipped_files=list(scan.skipped))
        idx = _run_update(scan, old, part, encoder, index_path, stats, batch=batch, workers=workers,
                          quiet=quiet, checkpoint_seconds=checkpoint_seconds, gallery=gallery, say=say)
    stats.skipped = len(stats.skipped_files)
    stats.seconds = time.perf_counter() - t0
    return idx, stats


def _suffixes() -> set[str]:
    from ..preprocess import IMAGE_SUFFIXES

    return set(IMAGE_SUFFIXES)


def _run_update(scan: ScanResult, old: GalleryIndex | None, part: GalleryIndex | None, encoder: Any,
                index_path: Path, stats: UpdateStats, *, batch: int, workers: int, quiet: bool,
                checkpoint_seconds: float, gallery: Path, say: Callable[[str], None]) -> GalleryIndex:
    spec: ModelSpec = encoder.spec
    plan = _make_plan(scan, old, part)
    stats.kept, stats.resumed, stats.removed = plan.kept, plan.resumed, plan.removed
    new_entries: list[IndexEntry] = []
    new_embs: list[np.ndarray] = []
    touched = 0
    old_row = {e.path: i for i, e in enumerate(old.entries)} if old else {}
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
                    continue
                entry = IndexEntry(f.rel, f.size, f.mtime_ns, str(item.sha256))
                if item.unchanged:  # touched, same content: keep the old row under the new stat
                    assert old is not None
                    plan.rows[f.rel] = _Row(entry, old.embeddings, old_row[f.rel])
                    stats.kept += 1
                    touched += 1
                    continue
                assert emb is not None
                is_update = f.rel in old_row
                stats.updated += int(is_update)
                stats.added += int(not is_update)
                new_entries.append(entry)
                new_embs.append(emb)
                plan.rows[f.rel] = _Row(entry, new_embs[-1][None, :], 0)
                if checkpoint_seconds >= 0 and time.perf_counter() - last_ckpt >= checkpoint_seconds:
                    _checkpoint(index_path, spec, part, new_entries, new_embs, gallery)
                    last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            _checkpoint(index_path, spec, part, new_entries, new_embs, gallery)
            say(f"interrupted: {len(new_entries)} new embeddings saved to {partial_path(index_path)}; "
                "the previous index is intact and the next run resumes")
        raise
    rows = [plan.rows[f.rel] for f in scan.files if f.rel in plan.rows]
    stats.images = len(rows)
    if not rows:  # the first reason in the message itself: --quiet hides the per-file lines
        scanned = dict(scan.skipped)
        bad = [(p, r) for p, r in stats.skipped_files if p not in scanned]
        why = ""
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            why = f" (first: {bad[0][1] if bad[0][1].startswith(bad[0][0]) else f'{bad[0][0]}: {bad[0][1]}'}{more})"
        raise FileNotFoundError(f"{gallery}: none of the {len(scan.files)} image files could be used{why}; "
                                "fix or replace them")
    changed = stats.embedded or stats.removed or stats.resumed or touched or old is None
    if changed or (old is not None and len(rows) != old.count):
        entries = [r.entry for r in rows]
        data = np.empty((len(rows), spec.embedding_dim), np.float16)  # (N, D) as stored
        for i, r in enumerate(rows):
            data[i] = _unit_row(r.source[r.row])
        write_index(index_path, spec, entries, data, gallery)
        stats.written = True
    with contextlib.suppress(FileNotFoundError):
        partial_path(index_path).unlink()
    return read_index(index_path, gallery=gallery)


def _unit_row(x: np.ndarray) -> np.ndarray:
    """float16 rows are stored rows already; float32 rows are normalised before the cast."""
    if x.dtype == np.float16:
        return x
    x = x.astype(np.float32)
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float16)


def _checkpoint(index_path: Path, spec: ModelSpec, part: GalleryIndex | None, entries: list[IndexEntry],
                embs: list[np.ndarray], gallery: Path) -> None:
    """Atomically save this run's new rows (plus an earlier checkpoint's) to ``<index>.partial``."""
    all_entries = list(part.entries) if part else []
    rows = [part.embeddings[i] for i in range(part.count)] if part else []
    fresh = {e.path for e in entries}
    keep = [i for i, e in enumerate(all_entries) if e.path not in fresh]
    all_entries = [all_entries[i] for i in keep] + list(entries)
    data = np.array([rows[i] for i in keep] + [_unit_row(e) for e in embs], dtype=np.float16)
    if data.size == 0:
        return
    write_index(partial_path(index_path), spec, all_entries, data.reshape(len(all_entries), -1), gallery)
