"""A gallery folder with its encoder and store: refresh from the folder, add and remove images, search.

The folder stays the source of truth, as for ``irreid-edge index`` / ``match``. Every write goes
through ``Gallery.commit``, one writer at a time, with one rule: an entry id (the content hash) has
one file and one row, and they move together:
- add: known content writes nothing (the entry already there is returned); new content is saved as
  ``<root>/added/<2 hex>/<sha256><suffix>`` (atomic, fsynced), then its row is written;
- remove: every file of the id (a folder may hold two copies of one image) moves to
  ``<root>/.irreid/deleted/`` (never scanned, recoverable), then its rows go; a later refresh can
  neither resurrect it nor lose it;
- the call returns (and ``serve`` answers) only after files and rows are durable; when the row
  write fails, the files written or moved for it are put back, so a refused write leaves nothing.
With the local index file the whole batch runs under the index's ``flock`` (``LocalStore.locked``),
so an ``irreid-edge index`` beside it waits. Writers killed mid-file (kill -9) leave temp files,
removed when the gallery is next opened. Entries are keyed by content hash (base.py). The store
defaults to the folder's index file (``LocalStore``); any ``GalleryStore`` (Milvus) can be passed
instead, and then ``refresh`` is that store's indexer's job.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...base.fileio import fsync_dir, live_temp, temp_writer_pid
from ...spec import atomic_write_bytes
from ..index import default_index_path
from ..scan import INDEX_DIRNAME, scan_gallery
from .base import Entry, Filters, GalleryStore, Hit, check_entry
from .local import LocalStore

__all__ = ["ADDED_DIR", "DELETED_DIR", "Gallery", "PendingAdd", "WriteResult", "open_gallery"]

ADDED_DIR = "added"
DELETED_DIR = f"{INDEX_DIRNAME}/deleted"
_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "PPM": ".ppm"}


@dataclass(frozen=True)
class PendingAdd:
    """An image ready to be added: its bytes (whose sha256 is ``entry.id``) and its (D,) embedding."""

    entry: Entry
    data: bytes = field(repr=False)
    embedding: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class WriteResult:
    count: int  # add: 1 new / 0 already there; remove: entries that existed
    entry: Entry | None = None  # add: the entry now in the gallery (the earlier one when already there)


class _Journal:
    """Files written and moved by one commit, to put back when its rows cannot be written."""

    def __init__(self) -> None:
        self.steps: list[tuple[Path, Path | None]] = []  # (created, None) or (moved to, moved from)

    def undo(self) -> None:
        for dst, src in reversed(self.steps):
            with contextlib.suppress(OSError):
                if src is None:
                    dst.unlink()
                else:
                    os.replace(dst, src)
                    fsync_dir(src.parent)
                fsync_dir(dst.parent)


class Gallery:
    """A gallery folder searched with ``encoder`` (an ``runtime.api.ImageEncoder`` of the gallery modality)."""

    def __init__(self, root: str | os.PathLike[str], encoder: Any, store: GalleryStore | None = None,
                 index: str | os.PathLike[str] | None = None, search: str = "auto") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: gallery folder not found; create it or check the path")
        self.encoder = encoder
        self.store: GalleryStore = store if store is not None else LocalStore(
            Path(index) if index is not None else default_index_path(self.root), encoder.spec,
            gallery_root=self.root, search=search)
        # the index a refresh updates is the one the store reads (serve --index names it)
        self.index_path = self.store.path if isinstance(self.store, LocalStore) else (
            Path(index) if index is not None else default_index_path(self.root))
        self._lock = threading.Lock()  # one writer: files and rows move together

    def __len__(self) -> int:
        return len(self.store)

    @property
    def modality(self) -> str:
        return str(self.encoder.modality)

    def refresh(self, quiet: bool = True) -> Any:
        """Bring the index up to date with the folder (``irreid-edge index``'s incremental update).

        Returns its ``UpdateStats``, or None when the folder holds no image yet or the store is not
        the local index (index such a store with ``irreid-edge index --store``)."""
        if not isinstance(self.store, LocalStore):
            return None
        from ..indexer import update_index

        with self._lock:  # update_index takes the index's flock itself
            if not scan_gallery(self.root).files:
                return None
            _, stats = update_index(self.root, self.index_path, self.encoder.encoder, quiet=quiet,
                                    say=(lambda m: None) if quiet else None)
            self.store.reload()
        return stats

    def search(self, embeddings: np.ndarray, top_k: int = 10, filters: Filters | None = None) -> list[list[Hit]]:
        """Nearest entries per query row (Q, D), as ``irreid-edge match`` ranks them."""
        return self.store.search(embeddings, top_k, filters)

    def match(self, images: Sequence[Any] | Any, encoder: Any, top_k: int = 10, filters: Filters | None = None,
              channel_order: str = "rgb") -> list[list[Hit]]:
        """Embed probe ``images`` with ``encoder`` (e.g. the IR one) and search; one hit list per image."""
        if encoder.dim != self.encoder.dim:
            raise ValueError(f"the probe encoder gives {encoder.dim} dimensions, the gallery's {self.encoder.dim}; "
                             "use both encoders of the same export")
        return self.search(encoder.embed(images, channel_order=channel_order), top_k, filters)

    # -- writing ----------------------------------------------------------------------------------------
    def add(self, image: Any, camera: str = "", timestamp: float | None = None, device: str = "",
            channel_order: str = "rgb") -> tuple[Entry, bool]:
        """Save ``image`` (encoded bytes, a path, a PIL image or an HWC uint8 array) under
        ``<root>/added/`` and add it. Returns (entry, True if new); adding content the gallery
        already holds writes nothing and returns the entry there. Durable when this returns."""
        res = self.commit([("add", self.prepare(image, camera, timestamp, device, channel_order))])[0]
        assert res.entry is not None
        return res.entry, bool(res.count)

    def prepare(self, image: Any, camera: str = "", timestamp: float | None = None, device: str = "",
                channel_order: str = "rgb") -> PendingAdd:
        """Check the metadata and embed the image's file bytes (as a refresh embeds the file); writes
        nothing. ValueError / ImageDecodeError when it cannot be added."""
        data, suffix = _encoded(image, channel_order)
        sha = hashlib.sha256(data).hexdigest()
        entry = check_entry(Entry(id=sha, path=f"{ADDED_DIR}/{sha[:2]}/{sha}{suffix}", camera=camera,
                                  timestamp=timestamp, modality=self.modality, device=device))
        emb = np.asarray(self.encoder.embed([data])[0], dtype=np.float32)
        if not np.isfinite(emb).all():
            raise ValueError("the model produced NaN or infinite values for this image; it cannot be added")
        return PendingAdd(entry, data, emb)

    def remove(self, ids: Sequence[str]) -> int:
        """Remove entries by id; all their files move to ``<root>/.irreid/deleted/``. Returns how many existed."""
        return self.commit([("remove", list(ids))])[0].count

    def commit(self, ops: Sequence[tuple[str, Any]]) -> list[WriteResult]:
        """Apply ``("add", PendingAdd)`` / ``("remove", ids)`` in order: files, then rows, durable on
        return (one index write for the whole batch with the local store). On failure nothing of the
        batch stays (files put back) and the error is raised."""
        with self._lock, self._store_locked():
            journal = _Journal()
            try:
                results, store_ops = self._files(ops, journal)
                if isinstance(self.store, LocalStore):
                    self.store.apply_locked([op for _, op in store_ops])
                else:
                    for _, op in store_ops:
                        if op[0] == "add":
                            self.store.add(op[1], op[2])
                        else:
                            self.store.remove(op[1])
            except BaseException:
                journal.undo()
                raise
        return results

    def commit_each(self, ops: Sequence[tuple[str, Any]]) -> list[WriteResult | Exception]:
        """``commit`` for a writer answering many callers: one batch with the local store (one index
        write; a failure fails them all), one commit per operation with any other store (its writes
        are not atomic together). Errors are returned in place of results."""
        if isinstance(self.store, LocalStore):
            try:
                return list(self.commit(ops))
            except Exception as e:
                return [e] * len(ops)
        out: list[WriteResult | Exception] = []
        for op in ops:
            try:
                out.append(self.commit([op])[0])
            except Exception as e:
                out.append(e)
        return out

    @contextlib.contextmanager
    def _store_locked(self) -> Iterator[None]:
        if isinstance(self.store, LocalStore):
            with self.store.locked():
                yield
        else:
            yield

    def _known(self, entry_id: str) -> Entry | None:
        get = getattr(self.store, "get", None)
        if get is not None:
            return get(entry_id)  # type: ignore[no-any-return]
        existing = getattr(self.store, "existing", None)
        if existing is not None and entry_id in existing([entry_id]):
            return Entry(id=entry_id)
        return None

    def _paths(self, entry: Entry) -> list[str]:
        paths = getattr(self.store, "paths_of", None)
        found = list(paths(entry.id)) if paths is not None else []
        return found if entry.path in found or not entry.path else [entry.path, *found]

    def _files(self, ops: Sequence[tuple[str, Any]],
               journal: _Journal) -> tuple[list[WriteResult], list[tuple[int, tuple[Any, ...]]]]:
        """The files of each operation, in order, against the store as the earlier ones leave it;
        returns each operation's result and the row operations to commit (with their op index)."""
        now: dict[str, Entry | None] = {}  # entry id -> as this batch leaves it (None: removed)
        results: list[WriteResult] = []
        rows: list[tuple[int, tuple[Any, ...]]] = []
        for i, (kind, arg) in enumerate(ops):
            if kind == "add":
                p: PendingAdd = arg
                cur = now[p.entry.id] if p.entry.id in now else self._known(p.entry.id)
                if cur is not None:
                    results.append(WriteResult(0, cur))
                    continue
                path = self.root / p.entry.path
                if not path.is_file():
                    created = not path.parent.is_dir()
                    atomic_write_bytes(path, p.data)
                    journal.steps.append((path, None))
                    if created:
                        fsync_dir(path.parent.parent)
                now[p.entry.id] = p.entry
                rows.append((i, ("add", p.embedding[None, :], [p.entry])))
                results.append(WriteResult(1, p.entry))
            elif kind == "remove":
                gone = []
                for entry_id in dict.fromkeys(arg):
                    cur = now[entry_id] if entry_id in now else self._known(entry_id)
                    if cur is None:
                        continue
                    for rel in self._paths(cur):
                        self._retire(rel, journal)
                    now[entry_id] = None
                    gone.append(entry_id)
                if gone:
                    rows.append((i, ("remove", gone)))
                results.append(WriteResult(len(gone)))
            else:
                raise ValueError(f"unknown gallery operation {kind!r}")
        return results, rows

    def _retire(self, rel: str, journal: _Journal) -> None:
        """Move one file of a removed entry (inside the root only) to ``<root>/.irreid/deleted/``."""
        src = self.file_of(Entry(id="", path=rel))
        if src is None:
            return
        dst = self.root / DELETED_DIR / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        journal.steps.append((dst, src))
        fsync_dir(dst.parent)
        fsync_dir(src.parent)

    def file_of(self, entry: Entry) -> Path | None:
        """The entry's image file when it lies inside the gallery root (never outside it), else None."""
        if not entry.path or entry.path.startswith("/") or ".." in Path(entry.path).parts:
            return None
        path = self.root / entry.path
        root_real = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if not real.startswith(root_real.rstrip(os.sep) + os.sep) or not os.path.isfile(real):
            return None
        return path

    def remove_stale_temps(self) -> list[Path]:
        """Remove the temp files of writers killed mid-file (their pid is gone) under ``added/`` and
        ``.irreid/deleted/``, and beside the index in ``.irreid/`` (its atomic rewrite and verified
        marker). Returns them."""
        removed = []
        index_dir = self.root / INDEX_DIRNAME
        walks = [*os.walk(self.root / ADDED_DIR), *os.walk(self.root / DELETED_DIR)]
        if index_dir.is_dir():  # the index folder's own files only: deleted/ is walked above
            walks.append((str(index_dir), [], [p.name for p in index_dir.iterdir() if p.is_file()]))
        for dirpath, _, names in walks:
            for name in names:
                if temp_writer_pid(name) is not None and not live_temp(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed.append(Path(dirpath, name))
        return removed

    def close(self) -> None:
        with self._lock:
            self.store.close()


def _encoded(image: Any, channel_order: str) -> tuple[bytes, str]:
    """(file bytes, suffix): encoded bytes and files of a gallery format are kept byte for byte (their
    hash is the entry id), anything else is saved as PNG. Undecodable input raises before any write."""
    from PIL import Image

    from ...images import decode_bytes, to_pil
    from ...preprocess import IMAGE_SUFFIXES

    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        pil = decode_bytes(data)
        with Image.open(io.BytesIO(data)) as im:
            suffix = _SUFFIX.get(str(im.format))
    elif isinstance(image, (str, os.PathLike)):
        pil = to_pil(image)
        data = Path(image).read_bytes()
        suffix = Path(image).suffix.lower()
    else:
        pil, data, suffix = to_pil(image, channel_order), b"", None
    if suffix in IMAGE_SUFFIXES and data:
        return data, suffix
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue(), ".png"


def open_gallery(root: str | os.PathLike[str], encoder: Any, store: GalleryStore | None = None,
                 index: str | os.PathLike[str] | None = None, refresh: bool = True, search: str = "auto",
                 quiet: bool = True) -> Gallery:
    """Open a gallery folder for ``encoder``'s modality; ``refresh`` indexes new or changed files first."""
    gallery = Gallery(root, encoder, store=store, index=index, search=search)
    gallery.remove_stale_temps()
    if refresh:
        stats = gallery.refresh(quiet=quiet)
        if stats is not None and not quiet:
            print(f"irreid-edge: {stats.summary()}", file=sys.stderr)
    return gallery
