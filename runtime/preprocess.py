"""Preprocessing, defined once (shared/DESIGN.md "Contracts"; STYLE.md habit 3).

decode (EXIF-aware) -> 3 channels (IR / grayscale replicated) -> resize to the spec's H x W ->
NCHW float32 of raw 0-255 pixel values. Mean/std normalisation happens inside the exported graph.
Pure functions: inputs are never modified in place. Training's eval transform, calibration, the
runtime and the C++ port all follow exactly these steps.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .base.fileio import NotRegularFileError, open_regular
from .spec import ModelSpec

__all__ = [
    "DECODE_BUDGET",
    "DEFAULT_MAX_PIXELS",
    "HUGE_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageDecodeError",
    "PixelBudget",
    "decode_image",
    "is_image_path",
    "load_batch",
    "normalize",
    "preprocess_image",
    "preprocess_path",
    "to_rgb",
]

#: Larger images are refused as decompression bombs (a 4K frame is 8.3 M pixels).
DEFAULT_MAX_PIXELS = 64_000_000
#: Larger images are shrunk by an integer factor while decoding when the caller says what size it
#: needs (a 4K frame, 8.3 M pixels, is shrunk; a 1080p frame is not).
HUGE_PIXELS = 4_000_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
#: Bilinear resampling in PIL and in the C++ port (runtime/cpp) alike.
RESAMPLE = Image.Resampling.BILINEAR
# A truncated file must fail, not decode grey padding silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow allocates images in 16 MB blocks (Pillow docs, "Block allocator"). glibc serves blocks
# under its 32 MB mmap ceiling from per-thread heaps, which keep freed memory, so each decode
# thread kept the largest image it ever held. 64 MB blocks are mmap'ed and go back to the system
# when freed (issue 17 item 6; the peak figures are in docs/getting-started.md). PILLOW_BLOCK_SIZE, when set,
# still wins.
if "PILLOW_BLOCK_SIZE" not in os.environ:
    Image.core.set_block_size(64 << 20)


class ImageDecodeError(ValueError):
    """An image cannot be used; the message is one line naming the file, the reason and the fix."""


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class PixelBudget:
    """Decoded pixels in flight, shared by every decoding thread (issue 17 item 6).

    Small files can decode to huge images (a PNG of a few hundred KB can hold 64 M RGBA pixels),
    and every decode worker held one at a time. Each decode first takes its image's pixel count from this budget and gives it
    back when the full-size image is gone, so the workers together never hold more than ``total``
    full-size pixels; a single image larger than the whole budget waits until it runs alone.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def take(self, pixels: int) -> Iterator[None]:
        need = min(max(pixels, 1), self.total)
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + need <= self.total)
            self.in_use += need
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= need
                self._cond.notify_all()


#: what all decoding threads of this process may hold at once, in full-size pixels
DECODE_BUDGET = PixelBudget(DEFAULT_MAX_PIXELS // 2)


def _open_checked(p: Path, f: Any, max_pixels: int) -> Image.Image:
    """Image.open (lazy: reads the header only) with the bomb check, before any pixel is decoded."""
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(f)
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    if im.width * im.height > max_pixels:  # Pillow only warns between the limit and twice it
        raise Image.DecompressionBombError(f"{im.width * im.height} pixels")
    return im


def _shrink_huge(im: Image.Image, target: tuple[int, int] | None) -> Image.Image:
    """A huge image (over HUGE_PIXELS) brought down by an integer factor, staying at least twice
    ``target`` (height, width) in both directions (either orientation, EXIF may rotate it):
    JPEG through draft mode (the decoder's DCT scaling, before decoding), anything else through
    Image.reduce (a box filter) right after decoding. Images up to HUGE_PIXELS are untouched, so
    ordinary crops and frames go through exactly the documented steps."""
    if target is None or im.width * im.height <= HUGE_PIXELS:
        return im
    side = 2 * max(target)
    if im.format == "JPEG" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
        im.draft(im.mode, (side, side))
    im.load()
    factor = min(im.width // side, im.height // side)
    if factor >= 2:
        try:
            return im.reduce(factor)
        except ValueError:  # modes reduce() does not take (P, 1): keep the full size
            return im
    return im


def decode_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
                 target: tuple[int, int] | None = None) -> Image.Image:
    """Open and fully decode an image, applying its EXIF orientation. Returns a new PIL image.

    ``target`` (height, width): what the caller will resize to; a huge image may then come back
    smaller (see _shrink_huge). Only regular files are opened (a FIFO would block: issue 17 item 7).
    """
    p = Path(path)
    try:
        f = open_regular(p)
    except FileNotFoundError:
        raise ImageDecodeError(f"{p}: no such file; check the path") from None
    except PermissionError:
        raise ImageDecodeError(f"{p}: permission denied; make it readable (chmod +r)") from None
    except NotRegularFileError as e:
        raise ImageDecodeError(f"{e}; remove it from the folder") from None
    except OSError as e:
        raise ImageDecodeError(f"{p}: cannot open ({e.strerror}); check the file") from None
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageDecodeError(f"{p}: empty file (0 bytes); remove it or replace it with the real image")
        try:
            im = _open_checked(p, f, max_pixels)
            with DECODE_BUDGET.take(im.width * im.height):
                im = _shrink_huge(im, target)
                im.load()
                out = ImageOps.exif_transpose(im)  # a new image when it rotates, else ``im`` itself
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageDecodeError(
                f"{p}: refused as a decompression bomb (more than {max_pixels:,} pixels); "
                f"crop or downscale it, or raise max_pixels"
            ) from None
        except UnidentifiedImageError:
            raise ImageDecodeError(f"{p}: not an image PIL can read; remove it from the folder") from None
        except (OSError, SyntaxError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "truncated" in reason.lower():
                raise ImageDecodeError(f"{p}: truncated image ({reason}); re-copy or remove the file") from None
            raise ImageDecodeError(f"{p}: cannot decode ({reason}); re-copy or remove the file") from None
    # We opened the file ourselves, so Pillow does not own it: the loaded image outlives ``f``
    # without the full-size copy the old ``with Image.open(p)`` needed.
    return out


def _high_depth_to_u8(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit single-channel images (raw thermal counts) -> 8-bit by a per-image min-max stretch.

    Radiometric thermal PNGs store counts in a narrow band of the 16-bit range; a fixed /256 would
    leave them nearly uniform grey. A constant image maps to 0.
    """
    a = np.asarray(im, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    scaled = np.zeros_like(a) if hi <= lo else (a - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 3-channel RGB. Grayscale / IR is replicated; alpha is composited on black."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_u8(im).convert("RGB")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def preprocess_image(im: Image.Image, height: int, width: int, channel_order: str = "RGB") -> np.ndarray:
    """PIL image -> float32 array (3, height, width) of raw 0-255 values."""
    rgb = to_rgb(im)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), RESAMPLE)
    arr = np.asarray(rgb, dtype=np.float32)  # (H, W, 3)
    if channel_order == "BGR":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))  # (3, H, W)


def preprocess_path(path: str | os.PathLike[str], spec: ModelSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    im = decode_image(path, max_pixels, target=(spec.input_height, spec.input_width))
    return preprocess_image(im, spec.input_height, spec.input_width, spec.channel_order)


def normalize(batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Apply mean/std for foreign models whose graph expects normalised input (spec.normalize == 'preprocess')."""
    if spec.normalize == "graph":
        return batch
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1) * 255.0
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1) * 255.0
    if spec.channel_order == "BGR":
        mean, std = mean[:, ::-1], std[:, ::-1]
    return (batch - mean) / std


def load_batch(
    paths: Sequence[str | os.PathLike[str]] | Iterable[str | os.PathLike[str]],
    spec: ModelSpec,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Preprocess several files into one (N, 3, H, W) batch.

    Returns (batch, good_paths, errors). Files that cannot be used are skipped and come back in
    ``errors`` as (path, one-line reason) so the caller can report them and go on; ``batch[i]`` is
    ``good_paths[i]``, in input order.
    """
    arrays: list[np.ndarray] = []
    good: list[str] = []
    errors: list[tuple[str, str]] = []
    for p in paths:
        try:
            arrays.append(preprocess_path(p, spec, max_pixels))
            good.append(str(p))
        except ImageDecodeError as e:
            errors.append((str(p), str(e)))
    if arrays:
        batch = np.stack(arrays)
    else:
        batch = np.zeros((0, *spec.input_shape), np.float32)
    return batch, good, errors
