"""Hand-made matchers that a learned model must beat: the colour-histogram matcher of issue 3, and
grey-gradient and unsigned-HOG shape matchers for thermal <-> visible twins (issue 15).

``colour_histograms`` is the classic stripe histogram (joint RGB bins over horizontal stripes of the
image centre, Hellinger-normalised). Across modalities it must fail — an IR image has no colour — so
the learned model's cross-modal rank-1 is reported next to it (``sysu_histogram_rank1``), on the very
single-shot trials the model was tested on. numpy + Pillow only.

The shape matchers (``gradient_shapes``, ``hog_shapes``) are evaluation baselines only, never part of
an embedding: they compare outlines cell by cell, so they **register pixel-aligned twins** rather than
re-identify anyone. The unsigned-HOG matcher gets 52.4 % thermal -> visible rank-1 on LLVIP twins of
unseen scenes (issue 30, 164 pairs), 33.5 % when each visible crop is cut by its own detector
(re-framed) and 3.7 % when the re-framed crop is also mirrored left-right. (Session 7 joined such a
descriptor to the deploy embedding; issue 30 removed it for that reason: 1.8 % re-framed and mirrored.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from runtime.preprocess import decode_image

from ..data.records import Record

__all__ = ["colour_histograms", "gradient_shapes", "hog_shapes", "llvip_shape_rank1", "rank1", "sysu_histogram_rank1"]


def rank1(q_feat: np.ndarray, g_feat: np.ndarray, q: Sequence[Record], g: Sequence[Record], rule: str) -> float:
    """Rank-1 of cosine similarity; ``rule`` "sysu" drops cam2 for cam3 queries, "same_cam" drops same id+cam."""
    sim = q_feat @ g_feat.T  # (Q, G)
    qp, qc = np.array([r.pid for r in q]), np.array([r.camid for r in q])
    gp, gc = np.array([r.pid for r in g]), np.array([r.camid for r in g])
    if rule == "sysu":
        drop = (qc[:, None] == 3) & (gc[None, :] == 2)
    elif rule == "same_cam":
        drop = (qp[:, None] == gp[None, :]) & (qc[:, None] == gc[None, :])
    else:
        raise ValueError(f"rule must be 'sysu' or 'same_cam', got {rule!r}")
    sim = np.where(drop, -np.inf, sim)
    has_match = ((qp[:, None] == gp[None, :]) & ~drop).any(1)
    best = gp[sim.argmax(1)]
    return float((best == qp)[has_match].mean())


def colour_histograms(paths: Sequence[str], bins: int = 4, stripes: int = 6, centre: float = 0.4) -> np.ndarray:
    """Classic stripe colour histograms: joint RGB histograms (``bins`` per channel) of ``stripes``
    horizontal stripes of the central ``centre`` of the width (where the person is), square-rooted and
    L2-normalised, so cosine similarity is the Hellinger kernel. Whole-image histograms do worse (the
    background of a camera dominates them)."""
    out = []
    for p in paths:
        a = np.asarray(decode_image(p).convert("RGB"))
        h, w, _ = a.shape
        x0 = int(w * (1 - centre) / 2)
        a = a[:, x0:w - x0] // (256 // bins)
        feats = []
        for s in range(stripes):
            b = a[s * h // stripes:(s + 1) * h // stripes].reshape(-1, 3).astype(np.int64)  # (pixels, 3)
            hist = np.bincount((b[:, 0] * bins + b[:, 1]) * bins + b[:, 2], minlength=bins**3)
            feats.append(np.sqrt(hist / hist.sum()))
        v = np.concatenate(feats).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def sysu_histogram_rank1(root: str | os.PathLike[str], trials: int = 10, mode: str = "all") -> float:
    """The colour-histogram matcher's IR->RGB rank-1 on a SYSU-layout test split (mean over trials)."""
    from ..data.sysu import test_split

    splits = [test_split(root, mode, t) for t in range(trials)]
    paths = sorted({r.path for q, g in splits for r in (*q, *g)})
    feats = dict(zip(paths, colour_histograms(paths)))
    scores = [rank1(np.stack([feats[r.path] for r in q]), np.stack([feats[r.path] for r in g]), q, g, "sysu")
              for q, g in splits]
    return float(np.mean(scores))


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edges padded by reflection)."""
    r = max(1, round(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    a = np.pad(a, r, mode="reflect")
    a = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, a)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, a)


def _grey(item: str | Image.Image) -> Image.Image:
    """An image path or an already loaded image (e.g. an LLVIP view) as 8-bit grey."""
    return (item if isinstance(item, Image.Image) else decode_image(item)).convert("L")


def gradient_shapes(paths: Sequence[str | Image.Image], size: tuple[int, int] = (64, 32),
                    blur: float = 1.5) -> np.ndarray:
    """Grey-gradient shape descriptors: grey image resized to ``size`` (h, w), contrast-normalised,
    Sobel gradient magnitude, blurred, mean-removed and L2-normalised. Silhouettes and limbs keep
    their outline in thermal and visible alike, where brightness and colour do not."""
    h, w = size
    out = []
    for p in paths:
        g = _grey(p).resize((w, h))
        a = np.asarray(g, np.float32)
        a = (a - a.mean()) / max(float(a.std()), 1e-3)
        gy, gx = np.gradient(a)
        mag = np.hypot(gx, gy)
        mag = _blur(mag, blur)
        v = (mag - mag.mean()).ravel()
        out.append(v / max(float(np.linalg.norm(v)), 1e-12))
    return np.stack(out).astype(np.float32)


def hog_shapes(paths: Sequence[str | Image.Image], size: tuple[int, int] = (128, 64), cell: int = 4,
               bins: int = 9) -> np.ndarray:
    """Histograms of oriented gradients (Dalal & Triggs, CVPR 2005) with UNSIGNED orientation: grey
    image resized to ``size`` (h, w) and standardised, gradient orientation folded to [0, pi) in
    ``bins`` bins weighted by magnitude over ``cell`` x ``cell`` cells, 2 x 2-cell blocks L2-normalised,
    clipped at 0.2 and renormalised; the whole descriptor mean-removed and L2-normalised.

    Folding the orientation makes it blind to contrast polarity, which is what a thermal crop and its
    visible twin disagree on most (a body brighter than the street in thermal is often darker in a
    night-time colour photo), while the outline's layout is kept cell by cell. It needs the layout to
    match, so it is a same-instant matcher (registration of pixel-aligned twins), not a
    re-identification model: see the module's docstring for its figures on re-framed, mirrored twins."""
    h, w = size
    ch, cw = h // cell, w // cell
    out = []
    for p in paths:
        a = np.asarray(_grey(p).resize((w, h)), np.float32)
        a = (a - a.mean()) / max(float(a.std()), 1e-3)
        gy, gx = np.gradient(a)
        mag = np.hypot(gx, gy)[:ch * cell, :cw * cell]
        ang = np.mod(np.arctan2(gy, gx), np.pi)[:ch * cell, :cw * cell]
        b = np.minimum((ang * (bins / np.pi)).astype(np.int64), bins - 1)
        votes = np.zeros((ch * cell, cw * cell, bins), np.float32)
        np.put_along_axis(votes, b[..., None], mag[..., None], axis=2)
        cells = votes.reshape(ch, cell, cw, cell, bins).sum(axis=(1, 3))  # (ch, cw, bins)
        blocks = np.concatenate([cells[:-1, :-1], cells[1:, :-1], cells[:-1, 1:], cells[1:, 1:]], axis=2)
        blocks /= np.sqrt((blocks ** 2).sum(axis=2, keepdims=True) + 1e-6)
        blocks = np.minimum(blocks, 0.2)
        blocks /= np.sqrt((blocks ** 2).sum(axis=2, keepdims=True) + 1e-6)
        v = blocks.ravel() - blocks.mean()
        out.append(v / max(float(np.linalg.norm(v)), 1e-12))
    return np.stack(out).astype(np.float32)


SHAPE_MATCHERS: dict[str, Callable[[Sequence[str | Image.Image]], np.ndarray]] = {
    "gradient": gradient_shapes, "hog": hog_shapes}


def llvip_shape_rank1(root: str | os.PathLike[str], split: str = "test", method: str = "gradient",
                      views: Sequence[str] = ("aligned",)) -> dict[str, float]:
    """A hand-made matcher's rank-1 on LLVIP twins: {"t2v": ..., "v2t": ...} as fractions. ``method``:
    "gradient" (``gradient_shapes``) or "hog" (``hog_shapes``). ``views`` (train.data.llvip_views) see
    the visible crops aligned (keys "t2v", "v2t"), mirrored, re-framed or both (keys "t2v-mirrored",
    ...), as ``python -m train.evaluate --llvip-view`` does; the thermal crops are never changed."""
    from dataclasses import replace

    from ..data.llvip import read_llvip_pairs
    from ..data.llvip_views import parse_views, view_direction
    from .features import load_record_image

    if method not in SHAPE_MATCHERS:
        raise ValueError(f"unknown shape matcher {method!r}; valid: {', '.join(SHAPE_MATCHERS)}")
    describe = SHAPE_MATCHERS[method]
    recs = read_llvip_pairs(root, split)
    stored, ir = [r for r in recs if r.modality == 0], [r for r in recs if r.modality == 1]
    fi = describe([r.path for r in ir])
    out = {}
    for view in parse_views(",".join(views)):
        vis = stored if view == "aligned" else [replace(r, view=view) for r in stored]
        fv = describe([r.path if r.view is None else load_record_image(r) for r in vis])
        out[view_direction("t2v", view)] = rank1(fi, fv, ir, vis, "same_cam")
        out[view_direction("v2t", view)] = rank1(fv, fi, vis, ir, "same_cam")
    return out
