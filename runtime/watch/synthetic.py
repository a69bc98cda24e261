"""A synthetic street for `watch`: people of known identity walking across a night scene, rendered as a
video (colour, or thermal: people warm and bright on a cool background), with their true boxes, and a
gallery of colour crops of the same people seen elsewhere (another scale, pose phase and background).

For tests, demos and the bench (``python -m runtime.watch.synthetic OUT_DIR``); no download, numpy,
Pillow and PyAV only. The thermal rendering of a person is the mean of its colour rendering's
channels, so an encoder that sees only channel means (the tests' tiny one) gets the same crop in both
modalities: what is tested is the pipeline, not how well a model crosses modalities.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["Walker", "make_gallery", "make_walkers", "render_frame", "write_video"]

_PATTERNS = ("solid", "hstripes", "vstripes", "band")


@dataclass(frozen=True)
class Walker:
    pid: int
    torso: tuple[int, int, int]
    legs: tuple[int, int, int]
    head: tuple[int, int, int]
    pattern: str
    width: float  # shoulder width / height
    start: float  # seconds when it enters
    speed: float  # frame widths per second (sign: direction)
    lane: float  # feet at this fraction of the frame height
    height: float  # fraction of the frame height

    def box(self, t: float, w: int, h: int) -> tuple[float, float, float, float] | None:
        """x1, y1, x2, y2 at time ``t``, or None while it is off screen."""
        if t < self.start:
            return None
        ph = self.height * h
        pw = self.width * ph
        travel = (t - self.start) * abs(self.speed) * w
        x = -pw + travel if self.speed > 0 else w - travel
        if x > w or x + pw < 0:
            return None
        y2 = self.lane * h
        return x, y2 - ph, x + pw, y2


def make_walkers(n: int, seed: int = 0, duration: float = 8.0) -> list[Walker]:
    """``n`` people with distinct looks (bright, for a thermal camera), in separate lanes."""
    rng = np.random.default_rng(seed)
    # Warmth (mean brightness) spread over the people, torso against legs (one bright above and dull
    # below, another the reverse): what tells them apart in a thermal frame. Hues are random.
    order = rng.permutation(n)
    torso_levels = np.linspace(140, 240, n)[order] if n > 1 else np.array([200.0])
    leg_levels = np.linspace(235, 150, n)[order] if n > 1 else np.array([190.0])
    out = []
    for i in range(n):
        torso, legs = (_rgb(lv * _hue(rng)) for lv in (torso_levels[i], leg_levels[i]))
        head = _rgb(rng.integers(170, 256, 3))
        speed = float(rng.uniform(0.12, 0.2)) * (1 if i % 2 == 0 else -1)
        out.append(Walker(i, torso, legs, head, _PATTERNS[i % len(_PATTERNS)], float(rng.uniform(0.3, 0.42)),
                          start=float(i * duration / (n + 1)), speed=speed, lane=0.2 + 0.78 * (i + 0.5) / n,
                          height=float(rng.uniform(0.12, 0.15))))
    return out


def _rgb(v: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(v, 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def _hue(rng: np.random.Generator) -> np.ndarray:
    """A random colour direction with channel mean 1 (times a level: that mean brightness)."""
    c = rng.uniform(0.55, 1.45, 3)
    return c / c.mean()


def _draw_person(d: ImageDraw.ImageDraw, p: Walker, x1: float, y1: float, x2: float, y2: float, phase: float) -> None:
    ph, pw = y2 - y1, x2 - x1
    cx = (x1 + x2) / 2
    head_r = 0.09 * ph
    d.ellipse([cx - head_r, y1, cx + head_r, y1 + 2 * head_r], fill=p.head)
    ty1, ty2 = y1 + 2 * head_r, y1 + 0.58 * ph
    d.rectangle([x1 + 0.1 * pw, ty1, x2 - 0.1 * pw, ty2], fill=p.torso)
    dark = tuple(int(v * 0.7) for v in p.torso)
    if p.pattern == "hstripes":
        for k in range(4):
            yy = ty1 + (ty2 - ty1) * (k + 0.5) / 4
            d.rectangle([x1 + 0.1 * pw, yy - 0.02 * ph, x2 - 0.1 * pw, yy + 0.02 * ph], fill=dark)
    elif p.pattern == "vstripes":
        for k in range(3):
            xx = x1 + 0.1 * pw + (0.8 * pw) * (k + 0.5) / 3
            d.rectangle([xx - 0.04 * pw, ty1, xx + 0.04 * pw, ty2], fill=dark)
    elif p.pattern == "band":
        d.rectangle([x1 + 0.1 * pw, ty1 + 0.4 * (ty2 - ty1), x2 - 0.1 * pw, ty1 + 0.6 * (ty2 - ty1)], fill=dark)
    swing = 0.12 * pw * np.sin(phase)  # legs alternate as it walks
    for side, s in ((-1, swing), (1, -swing)):
        lx = cx + side * 0.16 * pw + s
        d.rectangle([lx - 0.11 * pw, ty2, lx + 0.11 * pw, y2], fill=p.legs)


def _background(h: int, w: int, ir: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.full((h, w, 3), (22, 24, 30) if not ir else (40, 40, 40), np.float32)
    base += np.linspace(0, 25, h, dtype=np.float32)[:, None, None]  # the road brightens toward the camera
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(6):  # kerbs and walls: long, low, never person-shaped
        x, y = rng.integers(0, w), rng.integers(0, h)
        d.rectangle([float(x), float(y), float(x + rng.integers(w // 6, w // 2)), float(y + rng.integers(4, 12))],
                    fill=(60, 60, 66))
    return np.asarray(im)


def render_frame(walkers: Sequence[Walker], t: float, h: int, w: int, ir: bool, seed: int = 0,
                 background: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, tuple[float, float, float, float]]]:
    """(H, W, 3) uint8 RGB frame at time ``t`` and the true box of each visible walker (pid -> box)."""
    bg = background if background is not None else _background(h, w, ir, seed)
    im = Image.fromarray(bg.copy())
    d = ImageDraw.Draw(im)
    boxes = {}
    for p in walkers:
        b = p.box(t, w, h)
        if b is None:
            continue
        _draw_person(d, p, *b, phase=6.0 * t)
        boxes[p.pid] = (max(0.0, b[0]), b[1], min(float(w), b[2]), b[3])
    a = np.asarray(im).astype(np.float32)
    if ir:
        a = np.repeat(a.mean(axis=2, keepdims=True), 3, axis=2)  # warmth = mean of the colour channels
    rng = np.random.default_rng([seed, int(t * 1000)])
    a += rng.normal(0, 3.0, a.shape[:2])[:, :, None]  # sensor noise
    return a.clip(0, 255).astype(np.uint8), boxes


def write_video(path: str | Path, walkers: Sequence[Walker], seconds: float, fps: float = 10.0,
                size: tuple[int, int] = (480, 640), ir: bool = True, seed: int = 0,
                codec: str = "mpeg4", options: dict[str, str] | None = None) -> list[dict[int, list[float]]]:
    """Render the walkers to a video file; the true boxes per frame ([{pid: box}, ...])."""
    import av

    h, w = size
    bg = _background(h, w, ir, seed)
    truth = []
    with av.open(str(path), "w", options=options or {}) as out:
        stream: Any = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "3"} if codec == "mpeg4" else {}
        for i in range(round(seconds * fps)):
            rgb, boxes = render_frame(walkers, i / fps, h, w, ir, seed, bg)
            truth.append({k: [round(v, 1) for v in b] for k, b in boxes.items()})
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return truth


def make_gallery(folder: str | Path, walkers: Sequence[Walker], shots: int = 2, seed: int = 1) -> list[Path]:
    """Colour crops of each walker on another background: ``<pid:04d>_c9_<shot>.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for p in walkers:
        for s in range(shots):
            ph = int(rng.integers(150, 200))
            pw = int(p.width * ph)
            im = Image.fromarray(_background(ph + 4, pw + 4, False, seed + 7 * p.pid + s))
            _draw_person(ImageDraw.Draw(im), p, 2, 2, 2 + pw, 2 + ph, phase=float(rng.uniform(0, 6)))
            path = folder / f"{p.pid:04d}_c9_{s}.png"
            im.save(path)
            paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description="render a synthetic street video and gallery")
    ap.add_argument("out", type=Path)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--size", default="480x640", help="HEIGHTxWIDTH (default 480x640)")
    ap.add_argument("--rgb", action="store_true", help="a colour video (default thermal)")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    walkers = make_walkers(args.people, duration=args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    truth = write_video(args.out / "street.mp4", walkers, args.seconds, args.fps, (h, w), ir=not args.rgb)
    (args.out / "truth.json").write_text(json.dumps(truth))
    make_gallery(args.out / "gallery", walkers)
    print(f"{args.out}/street.mp4 ({len(truth)} frames), {args.out}/gallery ({2 * len(walkers)} crops), "
          f"{args.out}/truth.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
