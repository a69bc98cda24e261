"""The Python API: embed images a tracker or detector holds in memory, and search a gallery from a loop.

    from runtime.api import open_encoder, open_gallery

    ir = open_encoder("runs/smoke/export", modality="ir")
    emb = ir.embed(["probe.jpg"])                          # (1, D) float32, L2-normalised
    emb = ir.embed_boxes(frame_bgr, boxes_xyxy)            # crops of one OpenCV (BGR) frame
    gallery = open_gallery("gallery/", open_encoder("runs/smoke/export", modality="rgb"))
    hits = gallery.match(["probe.jpg"], ir, top_k=10)[0]   # [Hit(rank, distance, entry), ...]

Preprocessing is ``runtime.preprocess``'s, defined once: an image in memory (a PIL image, an
HWC uint8 array, encoded bytes) goes through the same to-RGB conversion and Pillow bilinear resize
as a file, so a crop embedded from memory equals the same crop saved as PNG and embedded from the file.
docs/api.md has the user guide; every example there is run by the tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .gallery.store.base import Entry, Filters, GalleryStore, Hit
from .gallery.store.folder import Gallery, open_gallery
from .gallery.store.local import LocalStore
from .images import ImageInput, decode_bytes, to_pil
from .preprocess import ImageDecodeError, preprocess_image
from .spec import ModelSpec

__all__ = [
    "Entry",
    "Filters",
    "Gallery",
    "GalleryStore",
    "Hit",
    "ImageDecodeError",
    "ImageEncoder",
    "ImageInput",
    "LocalStore",
    "decode_bytes",
    "open_encoder",
    "open_gallery",
    "watch",
]

@dataclass
class ImageEncoder:
    """An encoder for one modality that takes images, not tensors. ``encoder`` is the runtime's
    (``runtime.encoder.open_encoder``): ``embed((N, 3, H, W) raw 0-255 float32) -> (N, D)``."""

    encoder: Any
    modality: str
    batch_size: int = 32

    @property
    def spec(self) -> ModelSpec:
        return self.encoder.spec  # type: ignore[no-any-return]

    @property
    def backend(self) -> str:
        return str(self.encoder.backend)

    @property
    def dim(self) -> int:
        return self.spec.embedding_dim

    def preprocess(self, images: Sequence[ImageInput], channel_order: str = "rgb") -> np.ndarray:
        """(N, 3, H, W) float32 raw 0-255 pixels, ``runtime.preprocess``'s steps, in input order."""
        s = self.spec
        out = np.empty((len(images), *s.input_shape), np.float32)
        for i, im in enumerate(images):
            label = str(im) if isinstance(im, (str, os.PathLike)) else f"images[{i}]"
            pil = to_pil(im, channel_order, label, target=(s.input_height, s.input_width))
            out[i] = preprocess_image(pil, s.input_height, s.input_width,
                                      s.channel_order)
        return out

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        """The runtime encoder itself: (N, 3, H, W) raw 0-255 float32 -> (N, D) float32 unit rows."""
        return np.asarray(self.encoder.embed(batch), dtype=np.float32)

    def embed(self, images: Sequence[ImageInput] | ImageInput, channel_order: str = "rgb") -> np.ndarray:
        """(N, D) float32 L2-normalised embeddings of ``images``, in input order, ``batch_size`` at a time.

        ``channel_order`` applies to numpy arrays only ("bgr" for OpenCV frames); paths, bytes and
        PIL images carry their own. An image that cannot be used raises naming it (path or index).
        """
        if isinstance(images, (str, os.PathLike, bytes, Image.Image, np.ndarray)):
            images = [images]  # one image, not a sequence of them
        items = list(images)
        parts = [self.embed_pixels(self.preprocess(items[s:s + self.batch_size], channel_order))
                 for s in range(0, len(items), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def crop_boxes(self, frame: np.ndarray | Image.Image, boxes_xyxy: Any,
                   channel_order: str = "bgr") -> list[Image.Image]:
        """The crops of ``boxes_xyxy`` (N, 4) pixel corners, clipped to the frame, as RGB PIL images.

        A box covers the pixels it touches (floor of x1/y1, ceil of x2/y2). An empty box after
        clipping, a degenerate one (x2 <= x1 or y2 <= y1) or a non-finite one raises naming its index.
        """
        im = frame if isinstance(frame, Image.Image) else to_pil(frame, channel_order, "frame")
        w, h = im.size
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) if np.size(boxes_xyxy) else \
            np.zeros((0, 4))
        crops = []
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            if not np.all(np.isfinite((x1, y1, x2, y2))):
                raise ValueError(f"boxes[{i}] = {[x1, y1, x2, y2]}: not finite; pass pixel corners x1, y1, x2, y2")
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"boxes[{i}] = {[x1, y1, x2, y2]}: degenerate (needs x2 > x1 and y2 > y1); "
                                 "boxes are x1, y1, x2, y2 corners, not x, y, w, h")
            left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
            right, bottom = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
            if right <= left or bottom <= top:
                raise ValueError(f"boxes[{i}] = {[x1, y1, x2, y2]}: outside the {w}x{h} frame (empty after "
                                 "clipping)")
            crops.append(im.crop((left, top, right, bottom)))
        return crops

    def embed_boxes(self, frame: np.ndarray | Image.Image, boxes_xyxy: Any,
                    channel_order: str = "bgr") -> np.ndarray:
        """(N, D) embeddings of the detector boxes in one frame (default BGR: an OpenCV frame)."""
        return self.embed(self.crop_boxes(frame, boxes_xyxy, channel_order))


def open_encoder(model: str | os.PathLike[str], modality: str = "ir", precision: str | None = None,
                 backend: str = "auto", threads: int | None = None, batch_size: int = 32,
                 verbose: bool = False) -> ImageEncoder:
    """Open the ``modality`` encoder of an export folder, or of a foreign ``.onnx`` (with its spec).

    ``precision=None`` takes the runtime's default (``irreid-edge``'s ``--precision`` default);
    ``backend`` is one of ``runtime.base.choices.INFERENCE_BACKEND_CHOICES`` ("auto": TensorRT engine if built, else
    the best ONNX Runtime provider). ``verbose`` prints the backend chosen, once, on stderr.
    """
    from .base.choices import MODALITIES
    from .encoder import open_encoder as _open

    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is invalid; valid values: {', '.join(MODALITIES)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    kw: dict[str, Any] = {} if precision is None else {"precision": precision}
    enc = _open(Path(model), modality=modality, backend=backend, verbose=verbose, threads=threads, **kw)
    return ImageEncoder(enc, modality, batch_size)


def watch(source: str, model: str | os.PathLike[str], **options: Any) -> Any:
    """Run `irreid-edge watch` from Python: ``source`` (video file, stream URL, camera device, folder of
    frames) -> detect -> track -> gallery; returns a ``runtime.watch.WatchResult`` (tracks with their
    matches, events file, video, per-stage seconds, ``error`` if the source failed part-way). Options:
    ``runtime.watch.session.watch``'s (gallery=, store=, out=, modality=, detector=, enroll=, ...);
    docs/watch.md. Needs ``pip install 'irreid-edge[watch]'``."""
    from .watch.session import watch as _watch

    return _watch(source, model, open_encoder, **options)
