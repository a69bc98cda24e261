"""The paper's figures as PNG files, from arrays and images only (no torch here).

- :func:`rank_list_png`  — Fig. 1/4: each probe followed by its top-k gallery images, a green frame for
  the same identity and a red one for a different identity (PIL only, so it is fast and exact-sized).
- :func:`activation_png` — Fig. 4: the final feature map's activation (channel mean of |x|) over each
  image, stripe borders drawn and each stripe's share of the activation printed.
- :func:`correlation_png` — Fig. 3: per tapped level (g1..g4), the IR-colour correlation of same-id
  features, as bars with their spread.
- :func:`stripes_png`    — Fig. 5: rank-1 (and mAP) against the number of stripes, one line per series.

Computing the inputs (feature maps, correlations, result files) is train.evaluate.figures' job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runtime.preprocess import decode_image, to_rgb
from runtime.spec import atomic_write_bytes

__all__ = ["RankRow", "activation_png", "correlation_png", "rank_list_png", "stripes_png"]

GREEN, RED, GREY, WHITE, BLACK = (0, 170, 0), (220, 0, 0), (110, 110, 110), (255, 255, 255), (0, 0, 0)
ImageSource = str | os.PathLike[str] | Image.Image | np.ndarray


def _to_image(src: ImageSource, loader: Callable[[str], Image.Image] | None = None) -> Image.Image:
    if isinstance(src, Image.Image):
        return to_rgb(src)
    if isinstance(src, np.ndarray):  # (H, W, 3) or (H, W) uint8-range pixels
        return to_rgb(Image.fromarray(np.clip(src, 0, 255).astype(np.uint8)))
    return (loader or (lambda p: to_rgb(decode_image(p))))(str(src))


def _save_png(im: Image.Image, out: str | os.PathLike[str]) -> str:
    import io

    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    return str(out)


def _save_figure(fig, out: str | os.PathLike[str], dpi: int) -> str:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return str(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt

    return plt


# -- rank lists ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankRow:
    """One probe and its ranked gallery: ``gallery`` holds (image, pid, score) best first."""

    probe: ImageSource
    probe_pid: int
    gallery: Sequence[tuple[ImageSource, int, float]]
    label: str = ""


def _framed(im: Image.Image, tile_hw: tuple[int, int], colour: tuple[int, int, int], border: int) -> Image.Image:
    h, w = tile_hw
    out = Image.new("RGB", (w, h), colour)
    out.paste(im.resize((w - 2 * border, h - 2 * border), Image.Resampling.BILINEAR), (border, border))
    return out


def _wrap(text: str, width: float, length: Callable[[str], float]) -> list[str]:
    """``text`` in lines no wider than ``width`` (by ``length``), broken at spaces; a single word wider
    than ``width`` keeps a line to itself."""
    lines: list[str] = []
    for word in text.split():
        if lines and length(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def rank_list_png(
    rows: Sequence[RankRow],
    out: str | os.PathLike[str],
    top_k: int = 10,
    tile_hw: tuple[int, int] = (128, 64),
    border: int = 4,
    loader: Callable[[str], Image.Image] | None = None,
) -> str:
    """Write a rank-list grid: one row per probe, probe first (grey frame), then top_k results.

    Size: width = (top_k + 1) * (tile_w + gap) + gap + probe gap, height = rows * (tile_h + text + gap) + gap.
    """
    if not rows:
        raise ValueError("rank_list_png: no rows to draw")
    th, tw = tile_hw
    gap, line_h, probe_gap = 6, 14, 12
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # A probe's label wraps at spaces to its own column (it would run into rank 1's score otherwise).
    labels = [_wrap(row.label or f"id {row.probe_pid}", tw + probe_gap - 2,
                    lambda t: measure.textlength(t, font=font)) for row in rows]
    text_h = line_h * max(len(lines) for lines in labels)
    width = gap + tw + probe_gap + top_k * (tw + gap)
    height = gap + len(rows) * (th + text_h + gap)
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = gap + r * (th + text_h + gap)
        canvas.paste(_framed(_to_image(row.probe, loader), tile_hw, GREY, border), (gap, y))
        for i, line in enumerate(labels[r]):
            draw.text((gap, y + th + 1 + i * line_h), line, fill=BLACK, font=font)
        for k, (src, pid, score) in enumerate(row.gallery[:top_k]):
            x = gap + tw + probe_gap + k * (tw + gap)
            colour = GREEN if pid == row.probe_pid else RED
            canvas.paste(_framed(_to_image(src, loader), tile_hw, colour, border), (x, y))
            draw.text((x, y + th + 1), f"{k + 1}: {score:.2f}", fill=colour, font=font)
    return _save_png(canvas, out)


# -- activation maps ----------------------------------------------------------------------------
def _overlay(im: Image.Image, amap: np.ndarray, alpha: float) -> np.ndarray:
    import matplotlib

    a = np.asarray(amap, np.float64)
    a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
    heat = Image.fromarray((a * 255).astype(np.uint8)).resize(im.size, Image.Resampling.BILINEAR)
    rgb = matplotlib.colormaps["jet"](np.asarray(heat) / 255.0)[..., :3] * 255.0  # (H, W, 3)
    return ((1 - alpha) * np.asarray(im, np.float64) + alpha * rgb).astype(np.uint8)


def activation_png(
    images: Sequence[ImageSource],
    maps: Sequence[np.ndarray],
    stripe_bins: Sequence[tuple[int, int]],
    out: str | os.PathLike[str],
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    image_hw: tuple[int, int] = (256, 128),
    dpi: int = 100,
) -> str:
    """Activation map (h, w) of each image overlaid on it, with the stripe borders of ``stripe_bins``
    (row bins on the map, e.g. train.models.head.stripe_bins(h, n)) and each stripe's share.

    Size: (len(images) * 2.0 in) x 3.6 in at ``dpi``.
    """
    if len(images) != len(maps) or not images:
        raise ValueError(f"activation_png: {len(images)} images but {len(maps)} maps (need the same, >= 1)")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(images), figsize=(2.0 * len(images), 3.6), squeeze=False)
    for i, (src, amap) in enumerate(zip(images, maps)):
        im = _to_image(src).resize((image_hw[1], image_hw[0]), Image.Resampling.BILINEAR)
        ax = axes[0, i]
        ax.imshow(_overlay(im, amap, alpha))
        rows = np.asarray(amap, np.float64).clip(min=0).sum(axis=1)  # (h,) activation per map row
        # share of each stripe's pooled activation; bins may overlap (adaptive pooling), so the
        # shares are normalised over the stripes rather than over the map
        per_stripe = np.array([rows[a:b].mean() for a, b in stripe_bins])
        shares = per_stripe / max(per_stripe.sum(), 1e-12)
        n = len(stripe_bins)
        for s in range(n):  # nominal borders i*H/n: the pooling bins themselves may overlap
            y0 = s * image_hw[0] / n
            if s > 0:
                ax.axhline(y0, color="white", lw=1.5, ls="--")
            ax.text(2, y0 + image_hw[0] / (2 * n), f"{100 * shares[s]:.0f}%", color="white",
                    fontsize=8, va="center", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1})
        ax.set_axis_off()
        if titles:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, out, dpi)


# -- Fig. 3: per-level IR-colour correlation ----------------------------------------------------
def correlation_png(
    series: Mapping[str, Mapping[str, Sequence[float]]],
    out: str | os.PathLike[str],
    title: str = "IR–colour feature correlation, same identity",
    dpi: int = 100,
    figsize: tuple[float, float] = (6.0, 3.6),
) -> str:
    """Grouped bars: for each series (e.g. a checkpoint), for each level (g1..g4), the mean of the
    per-pair correlations with a one-standard-deviation bar. ``series[name][level] = values``."""
    if not series:
        raise ValueError("correlation_png: no series")
    plt = _pyplot()
    levels = list(dict.fromkeys(lv for s in series.values() for lv in s))
    fig, ax = plt.subplots(figsize=figsize)
    width = 0.8 / len(series)
    for j, (name, per_level) in enumerate(series.items()):
        means = [float(np.mean(per_level[lv])) if lv in per_level else np.nan for lv in levels]
        stds = [float(np.std(per_level[lv])) if lv in per_level else 0.0 for lv in levels]
        xs = np.arange(len(levels)) + (j - (len(series) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=name)
    ax.set_xticks(np.arange(len(levels)), levels)
    ax.set_xlabel("feature level (tap after block)")
    ax.set_ylabel("Pearson correlation")
    ax.set_title(title, fontsize=10)
    ax.axhline(0, color="black", lw=0.8)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, out, dpi)


# -- Fig. 5: rank-1 against the number of stripes -----------------------------------------------
def stripes_png(
    points: Mapping[str, Sequence[tuple[int, float, float | None]]],
    out: str | os.PathLike[str],
    title: str = "Rank-1 against the number of stripes",
    dpi: int = 100,
    figsize: tuple[float, float] = (6.0, 3.6),
) -> str:
    """``points[series] = [(stripes, rank1 %, mAP % or None), ...]``: rank-1 solid, mAP dashed."""
    if not points or not any(points.values()):
        raise ValueError("stripes_png: no points")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    for name, pts in points.items():
        pts = sorted(pts)
        xs = [p[0] for p in pts]
        line = ax.plot(xs, [p[1] for p in pts], marker="o", label=f"{name} rank-1")[0]
        maps = [p[2] for p in pts]
        if all(m is not None for m in maps):
            ax.plot(xs, maps, marker="s", ls="--", color=line.get_color(), label=f"{name} mAP")
    all_x = sorted({p[0] for pts in points.values() for p in pts})
    ax.set_xticks(all_x)
    ax.set_xlabel("number of stripes n")
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, out, dpi)
