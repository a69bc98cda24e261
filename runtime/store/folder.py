"""A gallery folder with its encoder and store: refresh from the folder, add and remove images, search.

The folder stays the source of truth, as for ``irreid-edge index`` / ``match``: an image added through
``Gallery.add`` is saved under ``<root>/added/`` (named by its content hash) before its row is
written, and a removed one is moved to ``<root>/.irreid/deleted/`` (never scanned, recoverable) before
its row goes, so a later refresh neither resurrects it nor loses it. Entries are keyed by content
hash (base.py). The store defaults to the folder's index file (``LocalStore``); any ``GalleryStore``
(Milvus) can be passed instead, and then ``refresh`` is that store's indexer's job.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..gallery import INDEX_DIRNAME, scan_gallery
from ..index import default_index_path
from ..spec import atomic_write_bytes
from .base import Entry, Filters, GalleryStore, Hit
from .local import LocalStore

__all__ = ["ADDED_DIR", "DELETED_DIR", "Gallery", "open_gallery"]

ADDED_DIR = "added"
DELETED_DIR = f"{INDEX_DIRNAME}/deleted"
_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "PPM": ".ppm"}


class Gallery:
    """A gallery folder searched with ``encoder`` (an ``runtime.api.ImageEncoder`` of the gallery modality)."""

    def __init__(self, root: str | os.PathLike[str], encoder: Any, store: GalleryStore | None = None,
                 index: str | os.PathLike[str] | None = None, search: str = "auto") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: gallery folder not found; create it or check the path")
        self.encoder = encoder
        self.index_path = Path(index) if index is not None else default_index_path(self.root)
        self.store: GalleryStore = store if store is not None else LocalStore(
            self.index_path, encoder.spec, gallery_root=self.root, search=search)

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
        ``<root>/added/`` and add it. Returns (entry, True if new); adding the same image again adds nothing.
        The write is durable when this returns."""
        entry, emb = self.prepare(image, camera, timestamp, device, channel_order)
        new = self.store.add(emb[None, :], [entry])
        return entry, bool(new)

    def prepare(self, image: Any, camera: str = "", timestamp: float | None = None, device: str = "",
                channel_order: str = "rgb") -> tuple[Entry, np.ndarray]:
        """Save the image file and embed it from that file (exactly as a refresh would); (entry, (D,) row)."""
        data, suffix = _encoded(image, channel_order)
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{ADDED_DIR}/{sha[:2]}/{sha}{suffix}"
        path = self.root / rel
        if not path.is_file():
            atomic_write_bytes(path, data)
        emb = self.encoder.embed([path])[0]
        entry = Entry(id=sha, path=rel, camera=camera, timestamp=timestamp, modality=self.modality, device=device)
        return entry, emb

    def remove(self, ids: Sequence[str]) -> int:
        """Remove entries by id; their files move to ``<root>/.irreid/deleted/``. Returns how many existed."""
        self.retire_files(ids)
        return self.store.remove(list(ids))

    def retire_files(self, ids: Sequence[str]) -> None:
        """Move the entries' files (inside the root) to ``<root>/.irreid/deleted/``, before their rows go:
        a crash in between leaves a row whose file is gone, which the next refresh drops."""
        get = getattr(self.store, "get", None)
        for entry_id in ids:
            entry = get(entry_id) if get is not None else None
            src = self.file_of(entry) if entry is not None else None
            if entry is not None and src is not None:
                dst = self.root / DELETED_DIR / entry.path
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), str(dst))

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

    def close(self) -> None:
        self.store.close()


def _encoded(image: Any, channel_order: str) -> tuple[bytes, str]:
    """(file bytes, suffix): encoded bytes and files of a gallery format are kept byte for byte (their
    hash is the entry id), anything else is saved as PNG. Undecodable input raises before any write."""
    from PIL import Image

    from ..images import decode_bytes, to_pil
    from ..preprocess import IMAGE_SUFFIXES

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
    if refresh:
        stats = gallery.refresh(quiet=quiet)
        if stats is not None and not quiet:
            print(f"irreid-edge: {stats.summary()}", file=sys.stderr)
    return gallery
