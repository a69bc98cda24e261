"""Image transforms: PIL image -> torch float tensor (3, H, W) of RAW 0-255 values.

The networks normalise inside themselves (shared/DESIGN.md, model input convention), so no mean/std
here. The eval transform IS runtime.preprocess.preprocess_image (decode -> RGB -> bilinear resize),
held equal by a test; the train transform starts from the same resize and adds augmentation:
flip (p=0.5), optional pad + random crop, CAJ-style channel augmentation (Ye et al., ICCV 2021:
one random channel replicated to three, or grayscale), random erasing (p=0.2, torchreid's area and
aspect ranges) filled with random 0-255 values. Randomness comes from torch's generator, which
DataLoader seeds per worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from runtime.preprocess import preprocess_image, to_rgb

from .records import PSEUDO_IR_KINDS

__all__ = ["apply_pseudo_ir", "build_eval_transform", "build_train_transform", "night_shot"]

Transform = Callable[[Image.Image], torch.Tensor]
# ITU-R 601 luma, PIL's convert("L") weights.
_GRAY = (0.299, 0.587, 0.114)


def apply_pseudo_ir(im: Image.Image, kind: str, seed: int | None = None) -> Image.Image:
    """Colour photograph -> 3-channel stand-in infrared: "red" replicates the red channel (paper §4.2),
    "gray" replicates the luma, "thermal" renders a bright body on a dark background
    (train.data.thermal, issue 15), "randmap" maps colours to grey through a random smooth function
    (train.data.randmap; drawn from ``seed``, or from the image's pixels when ``seed`` is None)."""
    if kind not in PSEUDO_IR_KINDS:
        raise ValueError(f"unknown pseudo-IR conversion {kind!r}; valid: {', '.join(PSEUDO_IR_KINDS)}")
    rgb = to_rgb(im)
    if kind == "thermal":
        from .thermal import render_thermal

        return render_thermal(rgb)
    if kind == "randmap":
        from .randmap import content_seed, render_randmap

        return render_randmap(rgb, np.random.default_rng(content_seed(rgb) if seed is None else seed))
    single = rgb.getchannel("R") if kind == "red" else rgb.convert("L")
    return Image.merge("RGB", (single, single, single))


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")


def build_eval_transform(height: int, width: int) -> Transform:
    _check_size(height, width)

    def transform(im: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess_image(im, height, width))  # (3, H, W) float32 0-255

    return transform


def _prob(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return value


def _channel_aug(x: torch.Tensor) -> torch.Tensor:
    """One of R, G, B replicated to all channels, or grayscale (CAJ's ChannelExchange)."""
    choice = int(torch.randint(4, (1,)))
    if choice < 3:
        single = x[choice]
    else:
        single = _GRAY[0] * x[0] + _GRAY[1] * x[1] + _GRAY[2] * x[2]
    return single.unsqueeze(0).expand(3, -1, -1).clone()


def _random_erase(x: torch.Tensor, area: tuple[float, float] = (0.02, 0.4), ratio: float = 0.3) -> torch.Tensor:
    """Erase one rectangle with uniform random 0-255 noise (Zhong et al., AAAI 2020; torchreid's ranges)."""
    _, h, w = x.shape
    for _ in range(100):
        target = h * w * float(torch.empty(1).uniform_(*area))
        aspect = math.exp(float(torch.empty(1).uniform_(math.log(ratio), math.log(1 / ratio))))
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < eh < h and 0 < ew < w:
            y0, x0 = int(torch.randint(h - eh + 1, (1,))), int(torch.randint(w - ew + 1, (1,)))
            x = x.clone()
            x[:, y0:y0 + eh, x0:x0 + ew] = torch.randint(0, 256, (3, eh, ew)).to(x.dtype)
            return x
    return x


def night_shot(x: torch.Tensor) -> torch.Tensor:
    """A colour crop (3, H, W, 0-255) as a night-time street camera sees it: exposure cut to 15-60 %,
    a gamma above 1 (shadows crushed), a colour cast of sodium or LED street light, and sensor noise
    that grows as the light falls. llvip-dev's visible crops look like this; Market-1501's daytime
    photographs do not, and a model trained on them alone meets night-time galleries out of range."""
    gain = float(torch.empty(1).uniform_(0.15, 0.6))
    gamma = float(torch.empty(1).uniform_(1.0, 1.5))
    cast = torch.empty(3, 1, 1).uniform_(0.8, 1.2)
    y = 255.0 * (x / 255.0).clamp(0, 1) ** gamma * gain * cast
    y = y + torch.randn_like(y) * float(torch.empty(1).uniform_(1.0, 6.0))
    return y.clamp(0, 255).round()


def _pad_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    _, h, w = x.shape
    padded = torch.nn.functional.pad(x.unsqueeze(0), (pad, pad, pad, pad)).squeeze(0)  # zero border
    y0, x0 = int(torch.randint(2 * pad + 1, (1,))), int(torch.randint(2 * pad + 1, (1,)))
    return padded[:, y0:y0 + h, x0:x0 + w].contiguous()


def build_train_transform(
    height: int, width: int, flip: float = 0.5, erasing: float = 0.2, channel_aug: float = 0.0, pad: int = 0,
    night: float = 0.0,
) -> Transform:
    """Resize (as the runtime does) -> [pad + random crop] -> [night shot] -> [channel aug] -> [flip] ->
    [erasing]. The night shot applies to colour images only (channels that differ; a pseudo-IR image
    replicates one channel)."""
    _check_size(height, width)
    flip, erasing, channel_aug = _prob("flip", flip), _prob("erasing", erasing), _prob("channel_aug", channel_aug)
    night = _prob("night", night)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")

    def transform(im: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(preprocess_image(im, height, width)))  # (3, H, W) 0-255
        if pad:
            x = _pad_crop(x, pad)
        if night and float(torch.rand(1)) < night and not (torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])):
            x = night_shot(x)
        if channel_aug and float(torch.rand(1)) < channel_aug:
            x = _channel_aug(x)
        if flip and float(torch.rand(1)) < flip:
            x = x.flip(2)
        if erasing and float(torch.rand(1)) < erasing:
            x = _random_erase(x)
        return x

    return transform
