"""Rank-list picture: one row per probe, the probe then its top-k gallery crops.

Frames: green = same identity as the probe, red = different, grey = unknown. Identities are read
from file names where a dataset convention gives them (``person_id_from_path``): Market-1501 /
DukeMTMC ``0001_c1s1_....jpg`` (leading digits before "_"), SYSU-MM01 / RegDB
``.../<pid>/<n>.jpg`` (a folder named by digits). Anything else is unknown -> neutral frame.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

__all__ = ["person_id_from_path", "render_rank_list"]

THUMB_W, THUMB_H = 64, 128
FRAME = 4
LABEL_H = 14
GREEN, RED, GREY, PROBE_BLUE = (0, 170, 0), (210, 0, 0), (150, 150, 150), (40, 90, 220)
_LEADING_ID = re.compile(r"^(-?\d+)_")


def person_id_from_path(path: str | os.PathLike[str]) -> int | None:
    p = Path(path)
    m = _LEADING_ID.match(p.name)
    if m:
        return int(m.group(1))
    if p.parent.name.isdigit():
        return int(p.parent.name)
    return None


def _thumb(path: Path, color: tuple[int, int, int], label: str) -> Image.Image:
    from .preprocess import ImageDecodeError, decode_image, to_rgb

    tile = Image.new("RGB", (THUMB_W + 2 * FRAME, THUMB_H + 2 * FRAME + LABEL_H), (255, 255, 255))
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, THUMB_W + 2 * FRAME - 1, THUMB_H + 2 * FRAME - 1], fill=color)
    try:
        im = to_rgb(decode_image(path)).resize((THUMB_W, THUMB_H))
    except ImageDecodeError:
        im = Image.new("RGB", (THUMB_W, THUMB_H), (0, 0, 0))  # a file removed since indexing
    tile.paste(im, (FRAME, FRAME))
    draw.text((2, THUMB_H + 2 * FRAME + 1), label, fill=(0, 0, 0))
    return tile


def render_rank_list(ranked: list[dict[str, Any]], gallery_root: Path, out: str | os.PathLike[str]) -> Path:
    """``ranked``: match's per-probe dicts ({"probe", "results": [{"rank", "distance", "path"}]})."""
    from .base.fileio import atomic_write_bytes

    tile_w, tile_h = THUMB_W + 2 * FRAME, THUMB_H + 2 * FRAME + LABEL_H
    cols = 1 + max((len(p["results"]) for p in ranked), default=0)
    gap = 10  # between the probe and its ranks
    canvas = Image.new("RGB", (cols * tile_w + gap, max(1, len(ranked)) * tile_h), (255, 255, 255))
    for r, p in enumerate(ranked):
        pid = person_id_from_path(p["probe"])
        canvas.paste(_thumb(Path(p["probe"]), PROBE_BLUE, "probe"), (0, r * tile_h))
        for c, res in enumerate(p["results"], start=1):
            gid = person_id_from_path(res["path"])
            color = GREY if pid is None or gid is None else (GREEN if gid == pid else RED)
            tile = _thumb(gallery_root / res["path"], color, f"{res['rank']}: {res['distance']:.3f}")
            canvas.paste(tile, (c * tile_w + gap, r * tile_h))
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)
