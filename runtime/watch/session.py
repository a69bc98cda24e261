"""``watch(...)``: open the source, detector, tracker, encoder and gallery a run needs, and run it.

Shared by ``irreid-edge watch`` and ``runtime.api.watch``; every failure to open something is a
one-line ValueError naming it, raised before any output is written.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .pipeline import WatchConfig, WatchResult, run_watch

__all__ = ["StoreGallery", "watch"]


@dataclass
class StoreGallery:
    """A ``--store`` (Milvus) gallery in the shape the loop wants; ``add`` stores the crop's embedding
    with the crop saved under ``folder`` (a store keeps rows, not files)."""

    store: Any
    encoder: Any  # the gallery modality's ImageEncoder
    folder: Path

    def __len__(self) -> int:
        return len(self.store)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[Any]]:
        return self.store.search(queries, top_k)  # type: ignore[no-any-return]

    def add(self, image: np.ndarray, camera: str = "", timestamp: float | None = None, device: str = "",
            channel_order: str = "bgr") -> tuple[Any, bool]:
        from PIL import Image

        from ..base.fileio import atomic_write_bytes
        from ..gallery.store.base import Entry

        rgb = image[:, :, ::-1] if channel_order == "bgr" else image
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        path = self.folder / f"{sha}.png"
        atomic_write_bytes(path, data)
        emb = self.encoder.embed([path])  # (1, D), from the file as an index run would
        entry = Entry(id=sha, path=str(path), camera=camera, timestamp=timestamp, modality=self.encoder.modality,
                      device=device)
        return entry, bool(self.store.add(emb, [entry]))

    def close(self) -> None:
        self.store.close()


def _open_gallery(model: Path, gallery: str | os.PathLike[str] | None, store: str | None, modality: str,
                  open_encoder: Callable[..., Any], enc_kw: dict[str, Any], out: Path, enroll: bool) -> Any:
    if gallery is None and store is None:
        raise ValueError("pass --gallery DIR (a folder of gallery crops) or --store URI")
    genc = open_encoder(model, modality=modality, **enc_kw)
    if store is not None:
        from ..gallery.store.uri import open_store

        return StoreGallery(open_store(store, genc.spec, create=enroll), genc, out / "enrolled")
    from ..gallery.store.folder import open_gallery

    root = Path(gallery)  # type: ignore[arg-type]
    if enroll:
        root.mkdir(parents=True, exist_ok=True)
    return open_gallery(root, genc, refresh=True)


def watch(source: str, model: str | os.PathLike[str], open_encoder: Callable[..., Any],
          gallery: str | os.PathLike[str] | None = None, store: str | None = None,
          out: str | os.PathLike[str] = "watch-out", modality: str = "ir",
          gallery_modality: str = "rgb", detector: Any = None, tracker: str = "bytetrack",
          fps: float | None = None, open_timeout: float = 10.0, read_timeout: float = 10.0,
          folder_fps: float = 10.0, precision: str | None = None, backend: str = "auto", threads: int | None = None,
          detector_classes: tuple[int, ...] = (0,), detector_threshold: float = 0.1, detector_layout: str = "auto",
          header: dict[str, Any] | None = None, **options: Any) -> WatchResult:
    """Run `watch` on ``source`` (video file, stream URL, camera device or image folder).

    ``detector``: None (the modality's built-in default), a built-in name, a YOLO ``.onnx`` path, or
    an object with ``name`` and ``detect(frame_bgr) -> (N, 5)``. ``options`` are ``WatchConfig``
    fields (top_k, threshold, video, enroll, camera, max_frames, quiet, ...). ``open_encoder`` is
    ``runtime.api.open_encoder`` (passed in by ``runtime.api.watch``, the public entry, so that this
    module does not import the API that imports it).
    """
    from ..base.choices import MODALITIES
    from .detect import open_detector
    from .source import open_source
    from .track import Tracker

    for name, value in (("modality", modality), ("gallery_modality", gallery_modality)):
        if value not in MODALITIES:
            raise ValueError(f"{name} {value!r} is invalid; valid values: {', '.join(MODALITIES)}")
    cfg = WatchConfig(out=Path(out), modality=modality, **options)
    if cfg.enroll and modality != gallery_modality:
        raise ValueError(f"--enroll adds this camera's crops to the gallery: the source's modality ({modality}) must "
                         f"be the gallery's ({gallery_modality}); enroll from a colour camera with --modality rgb")
    src = open_source(source, fps=fps, open_timeout=open_timeout, read_timeout=read_timeout,
                      folder_fps=folder_fps)  # first: a dead stream fails in seconds, before any model loads
    gal = None
    try:
        enc_kw: dict[str, Any] = {"precision": precision, "backend": backend, "threads": threads}
        encoder = open_encoder(model, modality=modality, **enc_kw)
        det = detector if hasattr(detector, "detect") else open_detector(
            detector, modality, backend=backend, threads=threads, classes=detector_classes,
            threshold=detector_threshold, layout=detector_layout)
        trk = Tracker(tracker, fps=fps or src.native_fps or 30.0, lost_seconds=cfg.lost_seconds)
        gal = _open_gallery(Path(model), gallery, store, gallery_modality, open_encoder, enc_kw, cfg.out,
                            cfg.enroll)
        head = {"source": str(source), "source_kind": src.kind, "source_info": src.describe(), "modality": modality,
                "detector": getattr(det, "name", type(det).__name__), "tracker": tracker, "model": str(model),
                "backend": encoder.backend, "precision": encoder.spec.precision,
                "gallery": str(store or gallery), "gallery_modality": gallery_modality, "gallery_size": len(gal),
                **(header or {})}
        return run_watch(cfg, src, det, trk, encoder, gal, head)
    finally:
        src.close()
        close = getattr(gal, "close", None)
        if close is not None:
            close()
