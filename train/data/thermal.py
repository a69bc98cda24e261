"""Pseudo-thermal rendering of a colour person crop: a bright, blurred body on a dark background.

Real long-wave-infrared crops (llvip-dev, night streets) show a person as a near-white silhouette
with little clothing texture over a dark, flat background; nothing of the clothing colour survives.
The paper's red-channel stand-in keeps texture and colour-dependent brightness instead, and a model
trained on it fails on real thermal crops (issue 15; docs/training.md "Real photographs"). This
rendering makes what the model learns from Market-1501 look like thermal, without a segmentation
model:

1. foreground = how far each pixel's colour is from the background colour, estimated as the median
   of the crop's left and right border columns (a detector's box leaves background at its sides);
2. weighted by a centre prior (the person stands in the middle of the box), smoothed, stretched to
   0..1 by its own upper percentile (body heat saturates the sensor);
3. intensity = dark floor + gain * heat, plus a little of the luma's fine detail (folds and limbs
   are faintly visible in thermal), blurred as a thermal lens does.

Deterministic (no random numbers): training and evaluation render the same image alike.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["render_thermal"]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _heat(rgb: np.ndarray) -> np.ndarray:
    h, w, _ = rgb.shape
    side = max(1, w // 10)
    border = np.concatenate([rgb[:, :side].reshape(-1, 3), rgb[:, w - side:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    dist = np.sqrt(((rgb - bg) ** 2).sum(axis=2))  # colour distance from the background
    xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / (0.35 * w)
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / (0.8 * h)
    prior = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    score = dist * prior
    top = float(np.percentile(score, 90)) or 1.0
    return np.clip(score / top, 0.0, 1.0)


def render_thermal(im: Image.Image) -> Image.Image:
    """Colour crop -> 3-channel pseudo-thermal image of the same size."""
    rgb = np.asarray(im.convert("RGB"), np.float32)
    w = rgb.shape[1]
    radius = max(0.5, w / 64)
    heat = Image.fromarray((_heat(rgb) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2 * radius))
    heat_a = np.asarray(heat, np.float32) / 255.0
    heat_a = 1.0 / (1.0 + np.exp(-8.0 * (heat_a - 0.4)))  # body heat saturates: a soft threshold
    luma = rgb @ _LUMA
    detail = luma - np.asarray(Image.fromarray(luma.astype(np.uint8)).filter(ImageFilter.GaussianBlur(4 * radius)),
                               np.float32)
    out = 30.0 + 200.0 * heat_a + 0.3 * detail * heat_a
    single = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius / 2))
    return Image.merge("RGB", (single, single, single))
