"""Procedural people seen by colour and near-infrared cameras (the synthetic dataset's renderer).

Why it is built this way (issue 3): identity lives in body shape, clothing pattern and part-level
marks (logo, collar, bag, sleeves, hat) that show in BOTH modalities; colour comes from a small shared
palette, so colour alone is ambiguous within colour images; the infrared rendering takes its
intensity from each garment's MATERIAL (independent of its colour), so colour is useless across
modalities. Each camera has its own viewpoint mix, scale, background, clutter, occlusion rate and
lighting; infrared cameras add noise, blur and their own contrast.

A person is drawn once as a region map (one small integer per pixel: skin, hair, upper garment, ...);
per-image lookup tables turn regions into colour or infrared values. Everything is drawn at the
output size with PIL and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["CAMERAS", "Identity", "Style", "render", "sample_identity"]

# Small shared palette (RGB 0-255): black, white, grey, red, blue, green, yellow, brown.
PALETTE = np.array(
    [[28, 28, 30], [222, 222, 215], [125, 125, 128], [170, 40, 38], [40, 62, 150], [45, 115, 60],
     [205, 175, 50], [105, 70, 42]], np.float32)
HAIR_COLOURS = np.array([[20, 16, 14], [70, 45, 25], [160, 130, 80]], np.float32)
SKIN_COLOURS = np.array([[230, 190, 160], [190, 140, 105], [120, 85, 60]], np.float32)
# Near-infrared intensity (0-1) by material: unrelated to the garment's colour.
MATERIALS = np.array([0.12, 0.25, 0.38, 0.5, 0.62, 0.75, 0.88], np.float32)
SKIN_IR, HAIR_IR = 0.9, 0.3
LUMA = (PALETTE @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0  # a dye's brightness, 0-1

BG, SKIN, HAIR, UPPER, UPPER2, LOWER, LOWER2, SHOES, BAG, LOGO, TRIM, HAT, OCCL = range(13)
CLUTTER0, N_REGIONS = 13, 20

UPPER_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "band", "twotone")
LOWER_PATTERNS = ("solid", "sidestripe", "hstripes")
LOWER_KINDS = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder", "handbag")
LOGOS = ("none", "circle", "square", "triangle", "bar")
VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class Camera:
    ir: bool
    views: tuple[float, float, float]  # P(front), P(back), P(side)
    scale: tuple[float, float]  # person height / image height
    bg: tuple[float, float, float] | float  # colour, or IR intensity
    clutter: tuple[int, int]
    occlusion: float
    light: tuple[float, float, float] | tuple[float, float]  # RGB gains, or IR (contrast lo, hi)
    noise: float
    blur: tuple[float, float]


# SYSU-MM01's set-up: cams 1, 2 indoor colour, 3 indoor IR, 4, 5 outdoor colour, 6 outdoor IR.
CAMERAS = {
    1: Camera(False, (0.6, 0.2, 0.2), (0.80, 0.95), (200, 190, 170), (1, 3), 0.10, (1.06, 1.0, 0.92), 3.0, (0.3, 0.6)),
    2: Camera(False, (0.2, 0.6, 0.2), (0.72, 0.88), (150, 160, 175), (2, 4), 0.15, (0.95, 1.0, 1.06), 3.0, (0.3, 0.7)),
    3: Camera(True, (0.5, 0.3, 0.2), (0.80, 0.95), 0.30, (1, 3), 0.10, (0.8, 1.2), 9.0, (0.7, 1.2)),
    4: Camera(False, (0.3, 0.2, 0.5), (0.65, 0.85), (120, 150, 120), (3, 6), 0.25, (1.03, 1.03, 0.97), 4.0, (0.4, 0.8)),
    5: Camera(False, (0.35, 0.35, 0.3), (0.70, 0.92), (170, 165, 160), (3, 6), 0.25, (1.0, 0.95, 1.05), 4.0, (0.4, 0.8)),
    6: Camera(True, (0.3, 0.4, 0.3), (0.65, 0.88), 0.22, (3, 6), 0.25, (0.6, 1.0), 13.0, (0.9, 1.5)),
}


@dataclass(frozen=True)
class Style:
    """How hard the rendering is; the defaults are generator version 1 exactly.

    mark_scale: multiplies the size of part-level marks (pattern period, logo, collar, straps), so
        that they survive downscaling to a small training size (64x32 keeps 2-3 px stripes blurred away).
    ir_dye: share of a garment's infrared intensity that follows its dye's brightness (0 = material
        only, colour useless across modalities; real near-infrared sits in between: many dyes are
        transparent in NIR, dark carbon-black ones are not).
    clutter: multiplies the number of background objects and the occlusion rate.
    """

    mark_scale: float = 1.0
    ir_dye: float = 0.0
    clutter: float = 1.0


DEFAULT_STYLE = Style()


@dataclass(frozen=True)
class Identity:
    pid: int
    shoulder: float  # half-widths and lengths as fractions of the person's height
    hip: float
    head: float
    torso: float
    arm: float
    skin: int
    hair: int
    long_hair: bool
    hat: tuple[int, int]  # colour (-1 = no hat), material
    upper: tuple[int, int, str, int, int, float, bool]  # colour, material, pattern, colour2, material2, period, long sleeves
    lower: tuple[int, int, str, str, int, int]  # colour, material, kind, pattern, colour2, material2
    shoes: tuple[int, int]
    bag: tuple[str, int, int, int]  # kind, colour, material, side (+1 / -1)
    logo: tuple[str, int, int, float, float]  # shape, colour, material, size, x offset
    collar: tuple[int, int]  # colour, material; -1 colour = none


def _other(rng: np.random.Generator, n: int, avoid: int) -> int:
    return int((avoid + rng.integers(1, n)) % n)


def _contrast_material(rng: np.random.Generator, m: int) -> int:
    """A material whose IR intensity differs clearly from ``m`` (so patterns show in IR too)."""
    choices = [i for i in range(len(MATERIALS)) if abs(MATERIALS[i] - MATERIALS[m]) >= 0.24]
    return int(rng.choice(choices))


def sample_identity(seed: int, pid: int) -> Identity:
    rng = np.random.default_rng([seed, 1, pid])
    npal, nmat = len(PALETTE), len(MATERIALS)
    uc, um = int(rng.integers(npal)), int(rng.integers(nmat))
    upper = (uc, um, str(rng.choice(UPPER_PATTERNS)), _other(rng, npal, uc), _contrast_material(rng, um),
             float(rng.uniform(0.035, 0.07)), bool(rng.random() < 0.6))
    lc, lm = int(rng.integers(npal)), int(rng.integers(nmat))
    lower = (lc, lm, str(rng.choice(LOWER_KINDS, p=[0.6, 0.25, 0.15])), str(rng.choice(LOWER_PATTERNS, p=[0.6, 0.2, 0.2])),
             _other(rng, npal, lc), _contrast_material(rng, lm))
    bag = (str(rng.choice(BAGS)), int(rng.integers(npal)), int(rng.integers(nmat)), int(rng.choice([-1, 1])))
    logo = (str(rng.choice(LOGOS)), int(rng.integers(npal)), _contrast_material(rng, um),
            float(rng.uniform(0.05, 0.085)), float(rng.uniform(-0.5, 0.5)))
    collar = (_other(rng, npal, uc) if rng.random() < 0.4 else -1, _contrast_material(rng, um))
    return Identity(
        pid=pid, shoulder=float(rng.uniform(0.10, 0.17)), hip=float(rng.uniform(0.08, 0.14)),
        head=float(rng.uniform(0.055, 0.08)), torso=float(rng.uniform(0.28, 0.38)), arm=float(rng.uniform(0.035, 0.055)),
        skin=int(rng.integers(len(SKIN_COLOURS))), hair=int(rng.integers(len(HAIR_COLOURS))),
        long_hair=bool(rng.random() < 0.35),
        hat=(int(rng.integers(npal)) if rng.random() < 0.2 else -1, int(rng.integers(nmat))),
        upper=upper, lower=lower, shoes=(int(rng.choice([0, 1, 2, 7])), int(rng.integers(nmat))), bag=bag,
        logo=logo, collar=collar,
    )


@dataclass
class _Geom:
    cx: float
    top: float
    hp: float  # person height in pixels
    ys: float  # shoulder line
    yh: float  # hip line
    sw: float  # half shoulder width as drawn (narrower from the side)
    hw: float


def _rect(d: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float, fill: int) -> None:
    d.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=fill)


def _draw_legs(d: ImageDraw.ImageDraw, p: Identity, view: str, g: _Geom) -> None:
    legw = g.hw * (0.55 if view == "side" else 0.48)
    bottom = g.top + g.hp
    kind = p.lower[2]
    legs = [g.cx] if view == "side" else [g.cx - g.hw + legw, g.cx + g.hw - legw]
    low_end = {"trousers": bottom - 0.03 * g.hp, "shorts": g.yh + 0.4 * (bottom - g.yh), "skirt": g.yh}[kind]
    for lx in legs:  # skin first, garments over it
        _rect(d, lx - legw, g.yh, lx + legw * 0.9, bottom - 0.03 * g.hp, SKIN)
        _rect(d, lx - legw, g.yh - 1, lx + legw * 0.9, low_end, LOWER)
        _rect(d, lx - legw * 1.1, bottom - 0.045 * g.hp, lx + legw * (1.6 if view == "side" else 1.0), bottom, SHOES)
    if kind == "skirt":
        knee = g.yh + 0.45 * (bottom - g.yh)
        d.polygon([(g.cx - g.hw, g.yh - 1), (g.cx + g.hw, g.yh - 1), (g.cx + g.hw * 1.35, knee),
                   (g.cx - g.hw * 1.35, knee)], fill=LOWER)


def _draw_torso(d: ImageDraw.ImageDraw, p: Identity, view: str, g: _Geom, side: int) -> None:
    arm = max(1.5, p.arm * g.hp)
    d.polygon([(g.cx - g.sw, g.ys), (g.cx + g.sw, g.ys), (g.cx + g.hw, g.yh + 2), (g.cx - g.hw, g.yh + 2)], fill=UPPER)
    arm_x = [g.cx + side * g.sw * 0.2] if view == "side" else [g.cx - g.sw - arm * 0.6, g.cx + g.sw + arm * 0.6]
    hand = g.yh + 0.06 * g.hp
    long_sleeves = p.upper[6]
    for ax in arm_x:
        _rect(d, ax - arm, g.ys + 1, ax + arm, hand, SKIN)
        sleeve_end = hand - 0.03 * g.hp if long_sleeves else g.ys + 0.35 * (hand - g.ys)
        _rect(d, ax - arm, g.ys + 1, ax + arm, sleeve_end, UPPER)
        if p.collar[0] >= 0:  # cuffs in the collar's colour
            _rect(d, ax - arm, sleeve_end - max(1.0, 0.015 * g.hp), ax + arm, sleeve_end, TRIM)


def _draw_head(d: ImageDraw.ImageDraw, p: Identity, view: str, g: _Geom, side: int) -> None:
    hr = p.head * g.hp
    hy = g.top + hr
    hx = g.cx + (side * 0.15 * hr if view == "side" else 0.0)
    d.rectangle([g.cx - hr * 0.3, hy + hr * 0.8, g.cx + hr * 0.3, g.ys + 1], fill=SKIN)  # neck
    d.ellipse([hx - hr * 0.85, hy - hr, hx + hr * 0.85, hy + hr], fill=HAIR if view == "back" else SKIN)
    if view != "back":  # hair over the forehead; from the side also the back of the head
        d.pieslice([hx - hr * 0.9, hy - hr * 1.05, hx + hr * 0.9, hy + hr * 0.7], 180, 360, fill=HAIR)
    if view == "side":
        bx = hx - side * hr * 0.5
        d.ellipse([bx - hr * 0.5, hy - hr * 0.85, bx + hr * 0.5, hy + hr * 0.6], fill=HAIR)
    if p.long_hair:
        if view == "front":
            spans = [(hx - hr * 1.05, hx - hr * 0.6), (hx + hr * 0.6, hx + hr * 1.05)]
        elif view == "back":
            spans = [(hx - hr, hx + hr)]
        else:
            spans = [(hx - side * hr * 0.6 - hr * 0.45, hx - side * hr * 0.6 + hr * 0.45)]
        for x0, x1 in spans:
            _rect(d, x0, hy, x1, g.ys + 0.12 * g.hp, HAIR)
    if p.hat[0] >= 0:
        d.chord([hx - hr * 0.95, hy - hr * 1.15, hx + hr * 0.95, hy + hr * 0.3], 180, 360, fill=HAT)
        if view == "front":
            _rect(d, hx - hr * 0.95, hy - hr * 0.45, hx + hr * 0.95, hy - hr * 0.3, HAT)
        elif view == "side":  # the peak points where the face looks
            _rect(d, hx, hy - hr * 0.45, hx + side * hr * 1.4, hy - hr * 0.3, HAT)


def _draw_marks(d: ImageDraw.ImageDraw, p: Identity, view: str, g: _Geom, side: int, scale: float = 1.0) -> None:
    """Collar, logo and bag: part-level marks that identify a person in both modalities."""
    th = max(1.0, 0.02 * g.hp * scale)
    if p.collar[0] >= 0:
        if view == "front":
            d.polygon([(g.cx - 0.4 * g.sw, g.ys), (g.cx + 0.4 * g.sw, g.ys), (g.cx, g.ys + 0.1 * g.hp)], fill=TRIM)
        else:
            _rect(d, g.cx - 0.45 * g.sw, g.ys, g.cx + 0.45 * g.sw, g.ys + 1.5 * th, TRIM)
    shape, size = p.logo[0], p.logo[3] * g.hp * scale
    lx, ly = g.cx + p.logo[4] * g.sw * 0.6, g.ys + 0.3 * (g.yh - g.ys)
    if (shape == "bar" and view != "side") or (shape != "bar" and view == "front"):
        box = [lx - size, ly - size, lx + size, ly + size]
        if shape == "circle":
            d.ellipse(box, fill=LOGO)
        elif shape == "square":
            d.rectangle(box, fill=LOGO)
        elif shape == "triangle":
            d.polygon([(lx, ly - size), (lx + size, ly + size), (lx - size, ly + size)], fill=LOGO)
        elif shape == "bar":  # printed front and back
            _rect(d, g.cx - 0.8 * g.sw, ly - 0.4 * size, g.cx + 0.8 * g.sw, ly + 0.4 * size, LOGO)
    _draw_bag(d, p, view, g, side, th)


def _draw_bag(d: ImageDraw.ImageDraw, p: Identity, view: str, g: _Geom, side: int, th: float) -> None:
    kind = p.bag[0]
    # The bag hangs on the person's own side: image-left from the front is image-right from the back.
    s = p.bag[3] if view == "front" else -p.bag[3] if view == "back" else -side
    mid = g.ys + 0.5 * (g.yh - g.ys)
    if kind == "backpack":
        if view == "back":
            _rect(d, g.cx - 0.75 * g.sw, g.ys + 0.04 * g.hp, g.cx + 0.75 * g.sw, g.ys + 0.8 * (g.yh - g.ys), BAG)
        elif view == "front":
            for x in (g.cx - 0.6 * g.sw, g.cx + 0.6 * g.sw):
                d.line([(x, g.ys), (x, mid)], fill=BAG, width=round(th))
        else:
            x0 = g.cx - side * g.sw * 0.9
            _rect(d, x0, g.ys + 0.04 * g.hp, x0 - side * 0.11 * g.hp, g.ys + 0.8 * (g.yh - g.ys), BAG)
    elif kind == "shoulder":
        bx = g.cx + s * (g.hw + 0.03 * g.hp) if view != "side" else g.cx
        if view != "side":
            d.line([(g.cx - s * g.sw * 0.7, g.ys), (bx, g.yh - 0.04 * g.hp)], fill=BAG, width=round(th))
        _rect(d, bx - 0.05 * g.hp, g.yh - 0.07 * g.hp, bx + 0.05 * g.hp, g.yh + 0.04 * g.hp, BAG)
    elif kind == "handbag":
        hx = g.cx + s * (g.sw + p.arm * g.hp) if view != "side" else g.cx + side * 0.2 * g.sw
        hand = g.yh + 0.06 * g.hp
        _rect(d, hx - 0.045 * g.hp, hand, hx + 0.045 * g.hp, hand + 0.08 * g.hp, BAG)


def _apply_patterns(reg: np.ndarray, p: Identity, g: _Geom, view: str, style: Style) -> np.ndarray:
    """Clothing patterns in garment coordinates (they move with the person, not the frame)."""
    yy, xx = np.indices(reg.shape)
    period = max(2, round(p.upper[5] * g.hp * style.mark_scale))
    dy, dx = (yy - g.ys) // period, (xx - g.cx + 1000 * period) // (period if view != "side" else max(2, period // 2))
    mask = {
        "solid": None,
        "hstripes": dy % 2 == 1,
        "vstripes": dx % 2 == 1,
        "checks": (dy + dx) % 2 == 1,
        "band": (yy > g.ys + 0.45 * (g.yh - g.ys)) & (yy < g.ys + 0.65 * (g.yh - g.ys)),
        "twotone": yy > g.ys + 0.55 * (g.yh - g.ys),
    }[p.upper[2]]
    out = reg.copy()
    if mask is not None:
        out[(reg == UPPER) & mask] = UPPER2
    lower_pattern = p.lower[3]
    if lower_pattern == "sidestripe":
        ax = np.abs(xx - g.cx)
        out[(reg == LOWER) & (ax > g.hw * 0.62) & (ax < g.hw * 0.85)] = LOWER2
    elif lower_pattern == "hstripes":
        out[(reg == LOWER) & (((yy - g.yh) // (period + 1)) % 2 == 1)] = LOWER2
    return out


def _background(d: ImageDraw.ImageDraw, rng: np.random.Generator, cam: Camera, h: int, w: int, clutter: float) -> None:
    """Floor band and clutter objects (regions CLUTTER0..), drawn before the person."""
    _rect(d, 0, h * rng.uniform(0.72, 0.88), w, h, CLUTTER0)
    n = int(rng.integers(cam.clutter[0], cam.clutter[1] + 1))
    for i in range(n if clutter == 1.0 else round(n * clutter)):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.1, 0.9) * h
        bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.1, 0.6) * h
        box = [x0, y0, x0 + bw, y0 + bh]
        region = CLUTTER0 + 1 + i % (N_REGIONS - CLUTTER0 - 1)
        d.ellipse(box, fill=region) if rng.random() < 0.3 else d.rectangle(box, fill=region)


def _occluder(d: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int) -> None:
    r = rng.random()
    if r < 0.4:  # something at the bottom of the frame (a bench, a car bonnet)
        _rect(d, 0, h * rng.uniform(0.72, 0.88), w, h, OCCL)
    else:  # something entering from one side (a pillar, a passer-by)
        cover = rng.uniform(0.15, 0.35) * w
        x0 = 0 if r < 0.7 else w - cover
        _rect(d, x0, h * rng.uniform(0.0, 0.5), x0 + cover, h, OCCL)


def _region_map(p: Identity, cam: Camera, rng: np.random.Generator, h: int, w: int,
                style: Style = DEFAULT_STYLE) -> np.ndarray:
    """(H, W) uint8 map of region codes for one image of person ``p`` seen by ``cam``."""
    view = str(rng.choice(VIEWS, p=cam.views))
    side = int(rng.choice([-1, 1]))
    hp = h * rng.uniform(*cam.scale)
    top = (h - hp) / 2 + rng.uniform(-0.05, 0.05) * h
    ys = top + 2.1 * p.head * hp
    narrow = view == "side"
    g = _Geom(cx=w / 2 + rng.uniform(-0.08, 0.08) * w, top=top, hp=hp, ys=ys, yh=ys + p.torso * hp,
              sw=p.shoulder * hp * (0.6 if narrow else 1.0), hw=p.hip * hp * (0.7 if narrow else 1.0))
    im = Image.new("L", (w, h), BG)
    d = ImageDraw.Draw(im)
    _background(d, rng, cam, h, w, style.clutter)
    _draw_legs(d, p, view, g)
    _draw_torso(d, p, view, g, side)
    im = Image.fromarray(_apply_patterns(np.asarray(im), p, g, view, style))
    d = ImageDraw.Draw(im)
    _draw_head(d, p, view, g, side)
    _draw_marks(d, p, view, g, side, style.mark_scale)
    if rng.random() < cam.occlusion * style.clutter:
        _occluder(d, rng, h, w)
    return np.asarray(im)


def _person_table(p: Identity, values: np.ndarray, skin: object, hair: object, none: object,
                  ir_dye: float = 0.0) -> dict[int, object]:
    """Region -> palette colour or material intensity of this person (``values`` = PALETTE or MATERIALS)."""
    uc, um, _, uc2, um2, _, _ = p.upper
    lc, lm, _, _, lc2, lm2 = p.lower
    colour = values is PALETTE
    if colour:
        pick = lambda c, m: values[c]  # noqa: E731
    elif ir_dye == 0.0:
        pick = lambda c, m: values[m]  # noqa: E731
    else:
        pick = lambda c, m: (1.0 - ir_dye) * values[m] + ir_dye * LUMA[c]  # noqa: E731
    return {
        SKIN: skin, HAIR: hair, UPPER: pick(uc, um), UPPER2: pick(uc2, um2), LOWER: pick(lc, lm),
        LOWER2: pick(lc2, lm2), SHOES: pick(*p.shoes), BAG: pick(p.bag[1], p.bag[2]),
        LOGO: pick(p.logo[1], p.logo[2]), TRIM: pick(*p.collar) if p.collar[0] >= 0 else none,
        HAT: pick(*p.hat) if p.hat[0] >= 0 else none,
    }


def _render_rgb(reg: np.ndarray, p: Identity, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    lut = np.empty((N_REGIONS, 3), np.float32)
    bg = np.asarray(cam.bg, np.float32)
    lut[BG] = bg + rng.uniform(-12, 12, 3)
    lut[CLUTTER0] = bg * rng.uniform(0.55, 0.8)
    lut[CLUTTER0 + 1:] = PALETTE[rng.integers(len(PALETTE), size=N_REGIONS - CLUTTER0 - 1)] * rng.uniform(0.7, 1.0)
    lut[OCCL] = PALETTE[rng.integers(len(PALETTE))]
    for region, value in _person_table(p, PALETTE, SKIN_COLOURS[p.skin], HAIR_COLOURS[p.hair], PALETTE[0]).items():
        lut[region] = np.asarray(value) + rng.uniform(-6, 6, 3)  # fabric / dye variation per shot
    img = lut[reg]  # (H, W, 3)
    h, w = reg.shape
    light = rng.uniform(0.8, 1.15) * (1 + rng.uniform(-0.2, 0.2) * (np.arange(w, dtype=np.float32) / w - 0.5))
    img = img * light[None, :, None] * np.asarray(cam.light, np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(*cam.blur)))
    noisy = np.asarray(out, np.float32) + rng.normal(0, cam.noise, (h, w, 3)).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def _render_ir(reg: np.ndarray, p: Identity, cam: Camera, rng: np.random.Generator, ir_dye: float = 0.0) -> np.ndarray:
    lut = np.empty(N_REGIONS, np.float32)
    lut[BG] = float(cam.bg) + rng.uniform(-0.06, 0.06)  # type: ignore[arg-type]
    lut[CLUTTER0] = lut[BG] * rng.uniform(0.6, 0.9)
    lut[CLUTTER0 + 1:] = rng.uniform(0.05, 0.7, N_REGIONS - CLUTTER0 - 1)
    lut[OCCL] = rng.uniform(0.05, 0.7)
    heat = rng.uniform(-0.06, 0.06)  # body temperature / distance to the illuminator
    for region, value in _person_table(p, MATERIALS, SKIN_IR, HAIR_IR, MATERIALS[0], ir_dye).items():
        lut[region] = float(value) + heat + rng.uniform(-0.03, 0.03)  # type: ignore[arg-type]
    v = lut[reg]  # (H, W)
    h, w = reg.shape
    contrast = rng.uniform(*cam.light)
    v = 0.5 + (v - 0.5) * contrast + rng.uniform(-0.08, 0.08)
    yy, xx = np.indices((h, w), dtype=np.float32)
    r2 = ((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 2  # vignetting of the active illuminator
    v = v * (1 - 0.3 * r2) * 255
    out = Image.fromarray(np.clip(v, 0, 255).astype(np.uint8), mode="L")
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(*cam.blur)))
    rows = rng.normal(0, 2.5, (h, 1))  # line noise of cheap sensors
    noisy = np.asarray(out, np.float32) + rng.normal(0, cam.noise, (h, w)) + rows
    g = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)  # stored as 3 equal channels, like SYSU-MM01's IR images


def render(p: Identity, cam_id: int, shot: int, seed: int, height: int = 128, width: int = 64,
           style: Style = DEFAULT_STYLE) -> np.ndarray:
    """One (height, width, 3) uint8 image of ``p`` from camera ``cam_id``; a pure function of its arguments."""
    cam = CAMERAS[cam_id]
    rng = np.random.default_rng([seed, 2, p.pid, cam_id, shot])
    reg = _region_map(p, cam, rng, height, width, style)
    return _render_ir(reg, p, cam, rng, style.ir_dye) if cam.ir else _render_rgb(reg, p, cam, rng)
