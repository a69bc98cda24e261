"""How hard is the synthetic cross-modal dataset? Generator speed and two baselines that must fail.

    python bench/synthetic_baselines.py [--ids 100] [--seed 0] [--trials 10] [--root DIR]

Prints (issue 3's bar):
- generator speed in images per minute on one core;
- on ``--ids`` test identities, a colour-histogram matcher's rank-1 for RGB->RGB (colour queries from
  cams 1,2,4,5 against the single-shot colour gallery, same-camera same-id entries removed) and for
  IR->RGB (the SYSU-MM01 all-search protocol: IR queries of cams 3 and 6, cam2 gallery dropped for cam3
  queries). RGB->RGB must be well above IR->RGB, and IR->RGB <= 10%: colour is useless across modalities;
- a randomly initialised ResNet-18's IR->RGB rank-1 (global-average-pooled features of ImageNet-normalised
  images), which must also stay <= 10%: the task is not solvable by low-level image statistics.
Rank-1 is the mean over ``--trials`` single-shot galleries (random.seed(trial), as the reference code).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.preprocess import decode_image, preprocess_image
from train.data.synthetic import generate
from train.data.sysu import read_sysu, test_split
from train.evaluate.baselines import colour_histograms, rank1


def random_resnet_features(paths: Sequence[str], seed: int = 0) -> np.ndarray:
    import torch
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()  # global-average-pooled 512-d features
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    feats = []
    with torch.no_grad():
        for i in range(0, len(paths), 128):
            im = decode_image(paths[i])
            batch = np.stack([preprocess_image(decode_image(p), im.height, im.width) for p in paths[i:i + 128]])
            f = net((torch.from_numpy(batch) - mean) / std)
            feats.append(torch.nn.functional.normalize(f, dim=1).numpy())
    return np.concatenate(feats)


def evaluate(root: Path, trials: int, feature_fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(RGB->RGB, IR->RGB) rank-1, averaged over single-shot trials."""
    test_ids = {r.pid for r in test_split(root, "all", 0)[0]}
    colour = [r for r in read_sysu(root, "test") if r.modality == 0 and r.pid in test_ids]
    queries, _ = test_split(root, "all", 0)
    everything = sorted({r.path for r in colour} | {r.path for r in queries})
    feats = dict(zip(everything, feature_fn(everything)))
    rgb, ir = [], []
    for t in range(trials):
        q, g = test_split(root, "all", t)
        gf = np.stack([feats[r.path] for r in g])
        ir.append(rank1(np.stack([feats[r.path] for r in q]), gf, q, g, "sysu"))
        rgb.append(rank1(np.stack([feats[r.path] for r in colour]), gf, colour, g, "same_cam"))
    return float(np.mean(rgb)), float(np.mean(ir))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", type=int, default=100, help="test identities")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--root", type=Path, default=None, help="keep the generated dataset here (default: a temp dir)")
    ap.add_argument("--mark-scale", type=float, default=1.0, help="rendering style (train.data.synthetic_render.Style)")
    ap.add_argument("--ir-dye", type=float, default=0.0, help="rendering style: IR intensity share that follows the dye")
    ap.add_argument("--clutter", type=float, default=1.0, help="rendering style: background clutter and occlusion")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = a.root or Path(tmp) / "synthetic"
        info = generate(root, ids=a.ids, seed=a.seed, test_ids=a.ids, val_ids=0, mark_scale=a.mark_scale,
                        ir_dye=a.ir_dye, clutter=a.clutter)
        if "cpu_seconds" in info:
            n, cpu, wall = info["images"], info["cpu_seconds"], info["seconds"]
            print(f"generator: {n} images of {a.ids} ids, {cpu:.1f} s CPU ({wall:.1f} s wall) = "  # type: ignore[str-format]
                  f"{60 * n / cpu:,.0f} images/min on one core")  # type: ignore[operator]
        t0 = time.perf_counter()
        rgb, ir = evaluate(root, a.trials, colour_histograms)
        print(f"colour histogram (4^3 bins x 6 stripes): RGB->RGB rank-1 {100 * rgb:.1f}%   IR->RGB rank-1 {100 * ir:.1f}%")
        rgb_n, ir_n = evaluate(root, a.trials, random_resnet_features)
        print(f"random ResNet-18 (GAP features):      RGB->RGB rank-1 {100 * rgb_n:.1f}%   IR->RGB rank-1 {100 * ir_n:.1f}%")
        chance = 1 / a.ids
        ok = ir <= 0.10 and ir_n <= 0.10 and rgb >= 2 * ir + 0.10
        print(f"chance ~{100 * chance:.1f}%; bar (IR->RGB <= 10% for both, RGB->RGB well above): "
              f"{'PASS' if ok else 'FAIL'}  ({time.perf_counter() - t0:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
