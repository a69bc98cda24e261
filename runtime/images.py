"""Images held in memory -> PIL images, decoded as ``runtime.preprocess`` decodes files.

Encoded bytes go through the same guards as ``decode_image`` (the bomb check before any pixel is
decoded, the process-wide decode budget, huge images shrunk toward the target size, EXIF
orientation); numpy arrays become PIL images without any resampling, so the one resize that follows
(``preprocess_image``: Pillow bilinear) is the same for a crop in memory and the crop in a file.
Used by the Python API (runtime/api.py), the gallery folder (store/folder.py) and serve.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .preprocess import (
    DECODE_BUDGET,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    _open_checked,
    _shrink_huge,
    decode_image,
)

__all__ = ["CHANNEL_ORDERS", "ImageInput", "decode_bytes", "to_pil"]

#: what ``embed`` accepts per image: a file path, encoded bytes, a PIL image, or an HWC/HW uint8 array
ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray
CHANNEL_ORDERS = ("rgb", "bgr")


def decode_bytes(data: bytes, name: str = "upload", max_pixels: int = DEFAULT_MAX_PIXELS,
                 target: tuple[int, int] | None = None) -> Image.Image:
    """Decode an encoded image held in memory; errors are ImageDecodeError, one line naming ``name``.

    ``target`` (height, width) as for ``decode_image``: a huge image may come back smaller."""
    if not data:
        raise ImageDecodeError(f"{name}: empty image (0 bytes); send the image file's bytes")
    try:
        im = _open_checked(Path(name), io.BytesIO(data), max_pixels)
        with DECODE_BUDGET.take(im.width * im.height):
            im = _shrink_huge(im, target)
            im.load()
            out = ImageOps.exif_transpose(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"{name}: refused as a decompression bomb (more than {max_pixels:,} pixels); "
                               "crop or downscale it") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not an image PIL can read; send a JPEG/PNG/BMP/TIFF/WebP crop") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageDecodeError(f"{name}: cannot decode ({reason}); send the complete image file") from None
    return out


def _array_to_pil(a: np.ndarray, channel_order: str, name: str) -> Image.Image:
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: array dtype {a.dtype}, expected uint8 pixels (0-255); convert with "
                         "np.clip(x, 0, 255).astype(np.uint8)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"{name}: array shape {a.shape}, expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: empty image {a.shape}")
    if a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a), mode="L")
    if channel_order == "bgr":  # OpenCV frames: BGR(A) -> RGB(A)
        a = a[:, :, [2, 1, 0, 3][:a.shape[2]]]
    return Image.fromarray(np.ascontiguousarray(a), mode="RGB" if a.shape[2] == 3 else "RGBA")


def to_pil(image: ImageInput, channel_order: str = "rgb", name: str = "image",
           target: tuple[int, int] | None = None) -> Image.Image:
    """One image input -> a PIL image, decoded exactly as ``runtime.preprocess`` decodes files."""
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order {channel_order!r} is invalid; valid values: rgb, bgr")
    if isinstance(image, (str, os.PathLike)):
        return decode_image(image, target=target)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(image), name, target=target)
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return _array_to_pil(image, channel_order, name)
    raise TypeError(f"{name}: {type(image).__name__} is not an image; pass a path, encoded bytes, a PIL image "
                    "or an HWC uint8 numpy array")
