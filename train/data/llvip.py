"""LLVIP person crops (Jia et al., ICCVW 2021): thermal / visible twins of one person at one instant.

Layout (the llvip-dev folder, ../shared/data/llvip-dev/README.md): ``ir/<frame>_<box>.jpg`` and
``vis/<frame>_<box>.jpg`` with the same names are one pair (the frames are pixel-registered, so one
box cuts both); ``ir_only/`` holds thermal crops without a visible twin (not read here).

A pair is one person at one instant, not an identity across time: each pair gets its own pid, so the
data measures (and can teach) thermal <-> visible correspondence, not re-identification across cameras.
Records: visible crop = modality 0 (camid 1), thermal crop = modality 1 (camid 2).

The split is by frame (``frame_split``): frames up to ``HELD_OUT_FROM - 1`` may train, frames from
``HELD_OUT_FROM`` on are held out for testing. All frames come from one street, so a figure on the
held-out frames is a same-scene figure (the README's warning): label it so.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .records import IR, RGB, DataLayoutError, Record, list_images, require_dir

__all__ = ["HELD_OUT_FROM", "LLVIP_SPLITS", "frame_of", "read_llvip_pairs"]

#: First held-out frame of llvip-dev (frames 010036-010050, 73 of its 222 pairs; the rest may train).
HELD_OUT_FROM = 10036
LLVIP_SPLITS = ("train", "test", "all")
_NAME = re.compile(r"^(\d+)_(\d+)\.")


def frame_of(name: str) -> tuple[int, int]:
    """``010041_3.jpg`` -> (frame 10041, box 3). ValueError for another name."""
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{name}: not an LLVIP crop name <frame>_<box>.jpg")
    return int(m.group(1)), int(m.group(2))


def _in_split(frame: int, split: str) -> bool:
    if split == "all":
        return True
    return frame >= HELD_OUT_FROM if split == "test" else frame < HELD_OUT_FROM


def read_llvip_pairs(root: str | os.PathLike[str], split: str = "test") -> list[Record]:
    """Visible and thermal records of the pairs in ``split`` (train | test | all); pid = the pair."""
    if split not in LLVIP_SPLITS:
        raise ValueError(f"unknown LLVIP split {split!r}; valid: {', '.join(LLVIP_SPLITS)}")
    r = require_dir(root, "the LLVIP crops folder (ir/ and vis/ with the same file names)")
    ir_dir = require_dir(r / "ir", f"thermal crops {r / 'ir'} (LLVIP layout: ir/ and vis/)")
    vis_dir = require_dir(r / "vis", f"visible crops {r / 'vis'} (LLVIP layout: ir/ and vis/)")
    visible = {os.path.basename(p) for p in list_images(vis_dir)}
    records: list[Record] = []
    for path in list_images(ir_dir):
        name = os.path.basename(path)
        try:
            frame, box = frame_of(name)
        except ValueError as e:
            raise DataLayoutError(f"{path}: {str(e).split(': ', 1)[1]}; remove or rename it") from None
        if name not in visible:
            raise DataLayoutError(f"{path}: no visible twin {vis_dir / name}; move unpaired crops to ir_only/")
        if not _in_split(frame, split):
            continue
        pid = frame * 1000 + box  # one identity per pair
        records += [Record(str(Path(vis_dir) / name), pid, 1, RGB), Record(path, pid, 2, IR)]
    if not records:
        raise DataLayoutError(f"{ir_dir}: no LLVIP pairs in split {split!r}; check the copy")
    return records
