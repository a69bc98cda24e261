"""How the visible twin of an LLVIP thermal crop is seen by the honest thermal protocol (issue 30).

An llvip-dev pair (``ir/<frame>_<box>.jpg``, ``vis/<frame>_<box>.jpg``) is cut from pixel-registered
frames with ONE box, so the two crops share their outline pixel for pixel: a silhouette matcher
scores well on them (registration, not re-identification). A view changes the visible crop only:

- ``aligned``: the stored crop, as the registered twin (what the protocol always measured);
- ``mirrored``: the stored crop flipped left-right (the same person, no aligned outline);
- ``reframed``: the visible crop re-cut from the whole visible frame (``frames/vis/<frame>.jpg``, its
  box from ``frames/annotations/<frame>.xml``: ``<box>`` is the index among the file's person objects,
  the numbering ``train.llvip_crops`` cuts by) with the box perturbed as a detector of its own would
  frame it: shifted by up to ±10 % of the box size, scaled by 0.9-1.1 and its aspect changed by
  0.9-1.1, clipped to the frame; the draw is seeded by the crop's name, so it is the same on every
  run and machine. Without the frame (a crop folder cut elsewhere), a deterministic sub-crop of the
  stored crop (80-90 % of each side, placed by the same seed) stands in: ``reframe_source`` says
  which, and ``python -m train.evaluate`` prints the count;
- ``reframed-mirrored``: both.

``Record.view`` carries the view; ``train.evaluate.features.load_record_image`` applies it and the
feature cache keys on it, so a re-seen image never shares an embedding with the stored one.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageOps

from .records import RECORD_VIEWS, DataLayoutError

__all__ = [
    "LLVIP_VIEWS",
    "REFRAME_JITTER",
    "ViewError",
    "frame_paths",
    "parse_views",
    "perturbed_box",
    "reframe_source",
    "reframe_sources",
    "sub_crop_box",
    "view_direction",
    "view_image",
]

LLVIP_VIEWS = ("aligned", *RECORD_VIEWS)  # aligned = as stored (Record.view None)
#: Shift (fraction of the box's side), scale and aspect spread of a re-framing: ±10 %.
REFRAME_JITTER = 0.10


class ViewError(ValueError, argparse.ArgumentTypeError):
    """An unknown view: a ValueError for callers, and argparse prints its message as it is."""


def parse_views(text: str) -> tuple[str, ...]:
    """``"aligned,mirrored"`` -> ("aligned", "mirrored"): comma-separated, in order, each once."""
    views = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    bad = [v for v in views if v not in LLVIP_VIEWS]
    if bad or not views:
        raise ViewError(f"unknown view {', '.join(bad) or repr(text)}; valid: {', '.join(LLVIP_VIEWS)} "
                        f"(several comma-separated)")
    return views


def view_direction(direction: str, view: str) -> str:
    """The row label of a direction under a view: ``t2v`` (aligned, as always), ``t2v-mirrored``, ..."""
    return direction if view == "aligned" else f"{direction}-{view}"


def _rng(name: str, salt: str) -> random.Random:
    digest = hashlib.sha256(f"llvip-{salt}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def perturbed_box(box: tuple[int, int, int, int], name: str, frame_size: tuple[int, int],
                  jitter: float = REFRAME_JITTER) -> tuple[int, int, int, int]:
    """``box`` (x0, y0, x1, y1) re-framed as another detector would: centre shifted by up to ±``jitter``
    of the width / height, size scaled by 1 ± ``jitter``, aspect (w/h) changed by 1 ± ``jitter``;
    clipped to ``frame_size`` (w, h). Seeded by ``name`` (the crop's file name); ``jitter`` 0 gives
    the box back, clipped."""
    fw, fh = frame_size
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    rng = _rng(name, "reframe")
    dx, dy = (rng.uniform(-jitter, jitter) for _ in range(2))
    scale = rng.uniform(1 - jitter, 1 + jitter)
    aspect = rng.uniform(1 - jitter, 1 + jitter)
    cx, cy = (x0 + x1) / 2 + dx * w, (y0 + y1) / 2 + dy * h
    nw, nh = w * scale * math.sqrt(aspect), h * scale / math.sqrt(aspect)
    nx0, ny0 = round(cx - nw / 2), round(cy - nh / 2)
    nx1, ny1 = round(cx + nw / 2), round(cy + nh / 2)
    nx0, ny0 = min(max(0, nx0), fw - 1), min(max(0, ny0), fh - 1)
    return nx0, ny0, max(nx0 + 1, min(fw, nx1)), max(ny0 + 1, min(fh, ny1))


def sub_crop_box(size: tuple[int, int], name: str) -> tuple[int, int, int, int]:
    """A deterministic sub-crop of a crop of ``size`` (w, h): 80-90 % of each side, placed by ``name``'s
    seed (the stand-in for re-framing when the whole frame is missing)."""
    w, h = size
    rng = _rng(name, "subcrop")
    sw, sh = (max(1, round(side * rng.uniform(0.8, 0.9))) for side in (w, h))
    x0, y0 = round(rng.uniform(0, w - sw)), round(rng.uniform(0, h - sh))
    return x0, y0, x0 + sw, y0 + sh


def frame_paths(crop_path: str | os.PathLike[str]) -> tuple[Path, Path, int]:
    """(visible frame, its VOC annotation, box index) for ``<root>/vis/<frame>_<box>.jpg``."""
    from .llvip import frame_of

    p = Path(crop_path)
    frame_of(p.name)  # ValueError for a name that is not <frame>_<box>.jpg
    stem, box = p.stem.rsplit("_", 1)
    frames = p.parent.parent / "frames"
    return frames / "vis" / f"{stem}.jpg", frames / "annotations" / f"{stem}.xml", int(box)


def reframe_source(crop_path: str | os.PathLike[str]) -> str:
    """"frame" when the crop can be re-cut from its whole visible frame, else "crop" (the sub-crop)."""
    frame, xml, _ = frame_paths(crop_path)
    return "frame" if frame.is_file() and xml.is_file() else "crop"


def reframe_sources(paths: Iterable[str | os.PathLike[str]]) -> dict[str, int]:
    """How many crops a re-framing cuts from their frame and how many from the stored crop."""
    out = {"frame": 0, "crop": 0}
    for p in paths:
        out[reframe_source(p)] += 1
    return out


@lru_cache(maxsize=4)
def _frame(path: str) -> Image.Image:  # a frame holds several people: decode it once for all of them
    from runtime.preprocess import decode_image, to_rgb

    return to_rgb(decode_image(path))


@lru_cache(maxsize=64)
def _boxes(xml: str) -> list[tuple[int, int, int, int]]:
    from ..llvip_crops import person_boxes

    return person_boxes(xml)


def _reframed(crop_path: str, jitter: float) -> Image.Image:
    from runtime.preprocess import decode_image, to_rgb

    name = Path(crop_path).name
    frame_path, xml, k = frame_paths(crop_path)
    if not (frame_path.is_file() and xml.is_file()):
        crop = to_rgb(decode_image(crop_path))
        return crop.crop(sub_crop_box(crop.size, name))
    frame = _frame(str(frame_path))
    boxes = _boxes(str(xml))
    if k >= len(boxes):
        raise DataLayoutError(f"{crop_path}: box {k} but {xml} has {len(boxes)} person objects; the crop names do not "
                              f"follow the annotation (re-cut them with python -m train.llvip_crops)")
    fw, fh = frame.size
    x0, y0, x1, y1 = boxes[k]
    return frame.crop(perturbed_box((max(0, x0), max(0, y0), min(fw, x1), min(fh, y1)), name, frame.size, jitter))


def view_image(crop_path: str | os.PathLike[str], view: str | None, jitter: float = REFRAME_JITTER) -> Image.Image:
    """The visible crop at ``crop_path`` as ``view`` sees it (RGB; None or "aligned" = as stored)."""
    from runtime.preprocess import decode_image, to_rgb

    if view not in (None, *LLVIP_VIEWS):
        raise ValueError(f"unknown view {view!r}; valid: {', '.join(LLVIP_VIEWS)}")
    path = str(crop_path)
    im = _reframed(path, jitter) if view in ("reframed", "reframed-mirrored") else to_rgb(decode_image(path))
    return ImageOps.mirror(im) if view in ("mirrored", "reframed-mirrored") else im

