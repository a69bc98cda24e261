"""Image folders -> calibration images, labelled by modality and identity, sampled stratified.

Labels are read from the layout, never from pixels:

- SYSU-MM01 layout (``camN/<pid>/<file>``): cameras 3 and 6 are infrared, the others colour;
- RegDB (``Thermal/<pid>/...``, ``Visible/<pid>/...``) and any folder tree with a path component
  named ir / nir / thermal / infrared: infrared; everything else: colour;
- identity = the name of the folder holding the file (Market-1501's flat ``0002_c1s1_...jpg`` files:
  the number before the first underscore).

`stratified_sample` splits the count evenly over the modalities present and, within a modality,
takes identities round-robin (each identity's images in a seeded random order), so a calibration set
of 512 covers as many people and cameras as possible rather than the first folders on disk.
"""

from __future__ import annotations

import os
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.base.choices import MODALITIES
from runtime.preprocess import is_image_path

__all__ = ["MODALITIES", "CalibImage", "label_image", "scan_folders", "split_held_out", "stratified_sample"]

MARKET_NAME = re.compile(r"^(-?\d+)_c\d")
IR_WORDS = frozenset({"ir", "nir", "thermal", "infrared", "cam3", "cam6"})


@dataclass(frozen=True)
class CalibImage:
    path: str
    modality: str  # "rgb" | "ir"
    identity: str
    render: str | None = None  # the pseudo-IR rendering the run trained this image with (red, thermal, ...)


def label_image(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> CalibImage:
    """Modality and identity of ``path`` from its folders below ``root`` (see the module docstring)."""
    p = Path(path)
    try:
        parts = [s.lower() for s in p.relative_to(root).parts[:-1]]
    except ValueError:
        parts = [s.lower() for s in p.parts[:-1]]
    modality = "ir" if any(s in IR_WORDS for s in parts) else "rgb"
    market = MARKET_NAME.match(p.name)  # a flat folder of "<pid>_c<cam>s..." files
    identity = market.group(1) if market else p.parent.name
    return CalibImage(str(p), modality, identity)


def scan_folders(folders: Iterable[str | os.PathLike[str]]) -> list[CalibImage]:
    """Every image file below each folder (recursively, sorted), labelled."""
    images: list[CalibImage] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: calibration folder not found; pass a folder of images (--calib DIR)")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            images += [label_image(Path(dirpath) / f, root) for f in sorted(filenames) if is_image_path(f)]
    return images


def _round_robin(images: Sequence[CalibImage], count: int, rng: random.Random) -> list[CalibImage]:
    by_id: dict[str, list[CalibImage]] = defaultdict(list)
    for im in images:
        by_id[im.identity].append(im)
    ids = sorted(by_id)
    rng.shuffle(ids)
    for i in ids:
        rng.shuffle(by_id[i])
    out: list[CalibImage] = []
    depth = 0
    while len(out) < count and any(depth < len(by_id[i]) for i in ids):
        out += [by_id[i][depth] for i in ids if depth < len(by_id[i])][: count - len(out)]
        depth += 1
    return out


def stratified_sample(images: Sequence[CalibImage], count: int, seed: int = 0,
                      modalities: Sequence[str] = MODALITIES) -> list[CalibImage]:
    """Up to ``count`` images, split evenly over ``modalities`` (those present), round-robin over identities.

    A modality with fewer images than its share gives its remainder to the others.
    """
    rng = random.Random(seed)
    pools = {m: [im for im in images if im.modality == m] for m in modalities}
    present = [m for m in modalities if pools[m]]
    out: list[CalibImage] = []
    left = count
    for k, m in enumerate(sorted(present, key=lambda m: len(pools[m]))):  # smallest pool first
        share = left // (len(present) - k)
        chosen = _round_robin(pools[m], share, rng)
        out += chosen
        left -= len(chosen)
    return out


def split_held_out(images: Sequence[CalibImage], used: Sequence[CalibImage], count: int,
                   seed: int = 1) -> list[CalibImage]:
    """``count`` images not in ``used`` (for accuracy checks on data the calibration never saw)."""
    taken = {im.path for im in used}
    return stratified_sample([im for im in images if im.path not in taken], count, seed)
