"""Parameters and FLOPs of the DAT networks, per configuration.

    python bench/model_stats.py                                    # the default table
    python bench/model_stats.py --models dat_resnet50 --sizes 288x144 --stripes 3 6 9 --json

Columns
- params_both: both modality branches + shared blocks + stripe head (no classifiers, no domain heads).
- params_encoder: one deployable modality encoder (`model.encoder(m)`, what one ONNX file holds).
- params_domain: the domain heads D_1..D_4 (training only).
- GMACs / GFLOPs: per image, one modality encoder, counted by torch.utils.flop_counter.FlopCounterMode,
  which counts matmuls and convolutions only, as 2 FLOPs per multiply-accumulate (GFLOPs = 2 x GMACs).
  BatchNorm, ReLU, pooling, additions and the L2 normalisation are not counted (well under 1 %).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.models import create_model, list_models


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is invalid; valid: HxW, e.g. 288x144") from None
    return h, w


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    p.add_argument("--sizes", nargs="+", type=_size, default=[(288, 144), (128, 64)], help="HxW")
    p.add_argument("--stripes", nargs="+", type=int, default=[3])
    p.add_argument("--share-from", nargs="+", type=int, default=[4])
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    return p


def _count(params: object) -> int:
    return sum(p.numel() for p in params)  # type: ignore[attr-defined]


def stats(name: str, size: tuple[int, int], stripes: int, share_from: int) -> dict[str, Any]:
    model = create_model(name, num_classes=0, stripes=stripes, share_from=share_from).eval()
    groups = model.param_groups()
    encoder = model.encoder("rgb")
    with torch.no_grad():
        fmap, _ = model.forward_features(torch.zeros(1, 3, *size), 0)
        with FlopCounterMode(display=False) as counter:
            encoder(torch.zeros(1, 3, *size))
    flops = counter.get_total_flops()  # one image, one encoder
    return {
        "model": name,
        "input": f"{size[0]}x{size[1]}",
        "stripes": stripes,
        "share_from": share_from,
        "feature_map": f"{fmap.shape[2]}x{fmap.shape[3]}",
        "embedding_dim": model.embedding_dim,
        "params_both": _count(groups["pretrained"]) + _count(groups["new"]),
        "params_encoder": _count(encoder.parameters()),
        "params_domain": _count(groups["domain"]),
        "gmacs": flops / 2 / 1e9,  # FlopCounterMode counts 2 FLOPs per multiply-accumulate
        "gflops": flops / 1e9,
    }


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    header = (
        f"{'model':<13} {'input':>8} {'n':>2} {'share':>5} {'map':>6} {'dim':>5} "
        f"{'params_both':>12} {'params_enc':>11} {'params_D':>9} {'GMACs':>7} {'GFLOPs':>7}"
    )
    if not args.json:
        print(header)
    for name in args.models:
        for size in args.sizes:
            for stripes in args.stripes:
                for share in args.share_from:
                    row = stats(name, size, stripes, share)
                    if args.json:
                        print(json.dumps(row))
                        continue
                    print(
                        f"{row['model']:<13} {row['input']:>8} {stripes:>2} {share:>5} {row['feature_map']:>6} "
                        f"{row['embedding_dim']:>5} {row['params_both'] / 1e6:>11.2f}M "
                        f"{row['params_encoder'] / 1e6:>10.2f}M {row['params_domain'] / 1e6:>8.2f}M "
                        f"{row['gmacs']:>7.2f} {row['gflops']:>7.2f}"
                    )
    if not args.json:
        print(
            "GFLOPs = 2 x GMACs per image, one modality encoder (convolutions + matmuls; "
            "FlopCounterMode). params_both excludes classifiers and domain heads."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
