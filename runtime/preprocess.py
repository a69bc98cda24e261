"""Preprocessing, defined once (shared/DESIGN.md "Contracts"; STYLE.md habit 3).

decode (EXIF-aware) -> 3 channels (IR / grayscale replicated) -> resize to the spec's H x W ->
NCHW float32 of raw 0-255 pixel values. Mean/std normalisation happens inside the exported graph.
Pure functions: inputs are never modified in place. Training's eval transform, calibration, the
runtime and the C++ port all follow exactly these steps.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .spec import ModelSpec

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageDecodeError",
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
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
#: Bilinear resampling in PIL and in the C++ port (runtime/cpp) alike.
RESAMPLE = Image.Resampling.BILINEAR
# A truncated file must fail, not decode grey padding silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(ValueError):
    """An image cannot be used; the message is one line naming the file, the reason and the fix."""


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def decode_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, applying its EXIF orientation. Returns a new PIL image."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(f"{p}: no such file; check the path") from None
    except PermissionError:
        raise ImageDecodeError(f"{p}: permission denied; make it readable (chmod +r)") from None
    if size == 0:
        raise ImageDecodeError(f"{p}: empty file (0 bytes); remove it or replace it with the real image")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                im.load()
                out = ImageOps.exif_transpose(im)
                if out is im:  # exif_transpose returns the same object when there is nothing to do
                    out = im.copy()
    except PermissionError:
        raise ImageDecodeError(f"{p}: permission denied; make it readable (chmod +r)") from None
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
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
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
    return preprocess_image(decode_image(path, max_pixels), spec.input_height, spec.input_width, spec.channel_order)


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
