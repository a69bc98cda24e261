"""Random colour -> intensity rendering of a colour person crop ("randmap", issue 15).

What a thermal crop and its visible twin share is geometry: the person's outline, limbs and the
borders between regions (a coat, bare arms, the street). What they do not share is intensity: a
region's brightness in long-wave infrared follows its temperature and emissivity, not its colour,
so a red coat may come out bright or dark. No fixed rendering of a colour photo (red channel, luma,
the pseudo-thermal body of train.data.thermal) reproduces that, and a model trained on one learns the
intensities of that rendering (docs/training.md, "Real photographs").

This rendering draws a new random, smooth function f: RGB -> grey for every image it renders (the
idea of domain randomisation, and of SynthSeg's random contrasts in medical imaging): a 3-D lattice of
``knots`` random intensities per colour axis, interpolated trilinearly. Regions of one colour stay
one intensity and keep their borders; which regions are bright, and whether the person is brighter
than the street, changes from draw to draw. A model that ranks such renderings against the colour
photo can only rely on layout and outline, the cue that survives into real thermal crops. Then, as
a thermal camera does: a little of the luma's fine texture (folds), a soft blur, sensor noise.

Random by design. Training draws the generator from torch's (seeded per DataLoader worker); every
other caller (evaluation, calibration) gets a generator seeded from the image's pixels, so one image
always renders alike there and a figure can be reproduced.
"""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["content_seed", "render_randmap"]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def content_seed(im: Image.Image) -> int:
    """A seed that depends on the pixels only: the same image always gets the same rendering."""
    return zlib.crc32(im.tobytes()) ^ (im.width << 16) ^ im.height


def _trilinear(rgb: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Sample ``lattice`` (K, K, K) at colours ``rgb`` (H, W, 3; 0..255) with trilinear interpolation."""
    k = lattice.shape[0]
    pos = rgb.reshape(-1, 3).astype(np.float32) * np.float32((k - 1) / 255.0)
    i0 = np.minimum(pos.astype(np.int64), k - 2)
    f = pos - i0
    g = 1.0 - f
    base = (i0[:, 0] * k + i0[:, 1]) * k + i0[:, 2]
    flat = lattice.ravel()
    out = np.zeros(len(base), np.float32)
    for dr in (0, 1):
        wr = f[:, 0] if dr else g[:, 0]
        for dg in (0, 1):
            wrg = wr * (f[:, 1] if dg else g[:, 1])
            off = (dr * k + dg) * k
            out += wrg * (g[:, 2] * flat[base + off] + f[:, 2] * flat[base + off + 1])
    return out.reshape(rgb.shape[:2])


def render_randmap(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """RGB crop -> 3-channel grey rendering through a random smooth colour -> intensity function."""
    rgb = np.asarray(im.convert("RGB"))
    knots = int(rng.integers(3, 7))  # 3..6 per colour axis: coarse maps merge colours, fine ones split them
    lattice = rng.uniform(0.0, 255.0, (knots, knots, knots)).astype(np.float32)
    grey = _trilinear(rgb, lattice)
    luma = rgb.astype(np.float32) @ _LUMA
    detail = luma - np.asarray(Image.fromarray(luma.astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)),
                               np.float32)
    grey += float(rng.uniform(0.0, 0.5)) * detail * (1.0 if rng.random() < 0.5 else -1.0)
    lo, hi = np.percentile(grey, (1, 99))
    if hi - lo > 1.0:  # thermal cameras stretch each frame's range (automatic gain)
        grey = (grey - lo) * (float(rng.uniform(180.0, 255.0)) / (hi - lo))
    out = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    sigma = float(rng.uniform(0.0, 1.5))
    if sigma > 0.3:
        out = out.filter(ImageFilter.GaussianBlur(sigma))
    a = np.asarray(out, np.float32) + rng.normal(0.0, float(rng.uniform(0.0, 4.0)), (out.height, out.width))
    single = Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))
    return Image.merge("RGB", (single, single, single))
