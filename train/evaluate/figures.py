"""``python -m train.evaluate.figures``: the paper's figures from checkpoints and result files.

    python -m train.evaluate.figures activations --checkpoint C [--root DIR | --images a.jpg ...] --out act.png
    python -m train.evaluate.figures correlation --checkpoint C [C2 ...] [--root DIR] --out corr.png
    python -m train.evaluate.figures stripes results1.json results2.json ... --out stripes.png
    (rank lists: python -m train.evaluate ... --rank-list ranks.png)

activations (Fig. 4): the final feature map's channel mean over each image, with the stripe borders
    and each stripe's share of the activation; images from --images or from the dataset's test ids
    (IR and colour images of the same people, each through its own branch).
correlation (Fig. 3): for same-identity IR / colour pairs of the test ids, the Pearson correlation
    between the mean-pooled features g1..g4 of the IR image (IR branch) and of the colour image
    (colour branch); bars = mean over pairs, error bars = one standard deviation. One bar group per
    checkpoint, so a baseline and a DAT model compare side by side.
stripes (Fig. 5): rank-1 and mAP (plain rows, mean over trials) against the model's number of
    stripes, one series per dataset / mode / direction, from python -m train.evaluate result files.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.base.choices import MODALITIES

from .drawing import activation_png, correlation_png, stripes_png

__all__ = ["get_args_parser", "layer_correlations", "main", "stripe_points"]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m train.evaluate.figures",
                                description="The paper's figures from checkpoints and result files.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    sub = p.add_subparsers(dest="figure", required=True)
    a = sub.add_parser("activations", allow_abbrev=False, help="Fig. 4: activation maps per stripe")
    a.add_argument("--checkpoint", required=True)
    a.add_argument("--images", nargs="+", help="image files (default: test images of --root)")
    a.add_argument("--modality", default="ir", choices=MODALITIES, help="branch for --images (default ir)")
    a.add_argument("--count", type=int, default=4, help="people drawn from --root (IR + colour each)")
    c = sub.add_parser("correlation", allow_abbrev=False, help="Fig. 3: per-layer IR-colour correlation of same-id features")
    c.add_argument("--checkpoint", nargs="+", required=True)
    c.add_argument("--labels", nargs="+", help="one legend label per checkpoint")
    c.add_argument("--pairs", type=int, default=64, help="same-identity IR/colour pairs")
    s = sub.add_parser("stripes", allow_abbrev=False, help="Fig. 5: rank-1 against the number of stripes")
    s.add_argument("results", nargs="+", help="result JSON files of python -m train.evaluate")
    for q in (a, c):
        q.add_argument("--root", help="SYSU-layout dataset (default: the demo's synthetic dataset)")
        q.add_argument("--seed", type=int, default=0)
    for q in (a, c, s):
        q.add_argument("--out", required=True, help="PNG file to write")
    return p


# -- shared -------------------------------------------------------------------------------------
def _load(checkpoint: str) -> Any:
    from .features import TorchEmbedder

    if not Path(checkpoint).is_file():
        raise ValueError(f"{checkpoint}: checkpoint not found; train one with python -m train.fit")
    return TorchEmbedder.from_checkpoint(checkpoint)


def _root(args: argparse.Namespace, embedder: Any) -> str:
    if args.root:
        return args.root
    from .cli import synthetic_default_root

    return str(synthetic_default_root(embedder.config))


def _same_id_pairs(root: str, pairs: int, seed: int) -> list[tuple[Any, Any]]:
    """(IR record, colour record) of the same test identity, identities taken in turn."""
    from ..data.records import IR, RGB
    from ..data.sysu import read_sysu

    by_id: dict[int, dict[int, list[Any]]] = {}
    for r in read_sysu(root, split="test"):
        by_id.setdefault(r.pid, {IR: [], RGB: []})[r.modality].append(r)
    ids = sorted(p for p, d in by_id.items() if d[IR] and d[RGB])
    if not ids:
        raise ValueError(f"{root}: no test identity has both IR and colour images")
    rng = random.Random(seed)
    return [(rng.choice(by_id[ids[i % len(ids)]][IR]), rng.choice(by_id[ids[i % len(ids)]][RGB]))
            for i in range(pairs)]


def _forward(embedder: Any, records: Sequence[Any], modality: int) -> tuple[Any, list[Any]]:
    import torch

    from .features import load_record_batch

    x = torch.from_numpy(load_record_batch(records, embedder.specs[modality]))
    with torch.inference_mode():
        return embedder.model.forward_features(x, modality)  # fmap (N, C, h, w), taps [(N, C_j)] * 4


# -- Fig. 4 -------------------------------------------------------------------------------------
def _activations(args: argparse.Namespace) -> str:
    from ..data.records import IR, RGB, Record
    from ..models import stripe_bins
    from .features import load_record_image

    emb = _load(args.checkpoint)
    if args.images:
        m = IR if args.modality == "ir" else RGB
        recs = [Record(str(p), 0, 0, m) for p in args.images]
    else:
        pairs = _same_id_pairs(_root(args, emb), args.count, args.seed)
        recs = [r for pair in pairs for r in pair]
    maps, titles = [], []
    for r in recs:
        fmap, _ = _forward(emb, [r], r.modality)
        maps.append(fmap[0].mean(dim=0).numpy())  # (h, w) channel mean (post-ReLU, so >= 0)
        titles.append(f"id {r.pid} {'IR' if r.modality == IR else 'colour'}" if not args.images else Path(r.path).name)
    bins = stripe_bins(maps[0].shape[0], emb.model.stripes)
    spec = emb.specs[1]
    return activation_png([load_record_image(r) for r in recs], maps, bins, args.out, titles=titles,
                          image_hw=(spec.input_height, spec.input_width))


# -- Fig. 3 -------------------------------------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (N, C) arrays."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(den, 1e-12)


def layer_correlations(embedder: Any, pairs: Sequence[tuple[Any, Any]], batch: int = 32) -> dict[str, list[float]]:
    """Level -> per-pair Pearson correlation of the g_j taps of an IR image and a colour image."""
    out: dict[str, list[float]] = {}
    for s in range(0, len(pairs), batch):
        chunk = pairs[s : s + batch]
        _, taps_ir = _forward(embedder, [p[0] for p in chunk], 1)
        _, taps_rgb = _forward(embedder, [p[1] for p in chunk], 0)
        for j, (t_ir, t_rgb) in enumerate(zip(taps_ir, taps_rgb)):
            out.setdefault(f"g{j + 1}", []).extend(_pearson(t_ir.numpy(), t_rgb.numpy()).tolist())
    return out


def _correlation(args: argparse.Namespace) -> str:
    labels = args.labels or [Path(c).parent.name or Path(c).stem for c in args.checkpoint]
    if len(labels) != len(args.checkpoint):
        raise ValueError(f"--labels: {len(labels)} labels for {len(args.checkpoint)} checkpoints")
    if args.pairs < 2:
        raise ValueError(f"--pairs must be >= 2, got {args.pairs}")
    series = {}
    for label, ckpt in zip(labels, args.checkpoint):
        emb = _load(ckpt)
        pairs = _same_id_pairs(_root(args, emb), args.pairs, args.seed)
        series[label] = layer_correlations(emb, pairs)
        means = ", ".join(f"{k} {np.mean(v):.3f}" for k, v in series[label].items())
        print(f"{label}: {means}")
    return correlation_png(series, args.out)


# -- Fig. 5 -------------------------------------------------------------------------------------
def stripe_points(result_files: Sequence[str]) -> dict[str, list[tuple[int, float, float | None]]]:
    """Series label -> [(stripes, rank-1 %, mAP %)] from the 'plain' summary rows of result files."""
    points: dict[str, list[tuple[int, float, float | None]]] = {}
    for f in result_files:
        res = json.loads(Path(f).read_text(encoding="utf-8"))
        if res.get("format") != "irreid-edge-evaluation":
            raise ValueError(f"{f}: not a python -m train.evaluate result file")
        stripes = int(res["model"]["stripes"])
        for s in res["summary"]:
            if s["variant"] != "plain":
                continue
            label = res["data"] + (f" {res['mode']}" if res["protocol"] == "sysu" else "")
            label += f" {s['direction']}" if s["direction"] else ""
            points.setdefault(label, []).append((stripes, s["mean"]["r1"], s["mean"].get("mAP")))
    if not points:
        raise ValueError("no 'plain' summary rows in the result files")
    return points


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.figure == "activations":
            out = _activations(args)
        elif args.figure == "correlation":
            out = _correlation(args)
        else:
            out = stripes_png(stripe_points(args.results), args.out)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
