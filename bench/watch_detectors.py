"""The built-in person detectors of `irreid-edge watch` on LLVIP's real night frames: recall and
precision at IoU 0.5 against LLVIP's own person boxes, thermal and visible, and ms per frame.

    python bench/watch_detectors.py                      # ../shared/data/llvip-dev/frames, every candidate
    python bench/watch_detectors.py --frames DIR --detectors hot hog --json

The frames folder holds ir/*.jpg, vis/*.jpg (the same instants, registered) and annotations/*.xml
(VOC boxes shared by both modalities). All of it is one street (same-scene figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_FRAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "llvip-dev" / "frames"


def read_voc_boxes(path: Path) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 of the 'person' objects of a VOC annotation file."""
    boxes = []
    for obj in ET.parse(path).getroot().iter("object"):
        name = obj.findtext("name", "person")
        bb = obj.find("bndbox")
        if name != "person" or bb is None:
            continue
        boxes.append([float(bb.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax")])
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def evaluate(detector: object, frames: list[Path], annotations: Path) -> dict[str, float]:
    from PIL import Image

    from runtime.watch.boxes import match_counts

    tp = nd = ng = 0
    seconds = 0.0
    for f in frames:
        bgr = np.ascontiguousarray(np.asarray(Image.open(f).convert("RGB"))[:, :, ::-1])
        t0 = time.perf_counter()
        dets = detector.detect(bgr)  # type: ignore[attr-defined]
        seconds += time.perf_counter() - t0
        a, b, c = match_counts(dets, read_voc_boxes(annotations / f"{f.stem}.xml"), 0.5)
        tp, nd, ng = tp + a, nd + b, ng + c
    return {"frames": len(frames), "truth": ng, "detections": nd, "true_positives": tp,
            "recall": tp / ng if ng else 0.0, "precision": tp / nd if nd else 0.0,
            "ms_per_frame": 1000 * seconds / max(1, len(frames))}


def main(argv: Sequence[str] | None = None) -> int:
    from runtime.watch.detect import BUILTIN_DETECTORS, builtin_detector

    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=Path, default=DEFAULT_FRAMES)
    p.add_argument("--detectors", nargs="+", choices=sorted(BUILTIN_DETECTORS), default=sorted(BUILTIN_DETECTORS))
    p.add_argument("--modalities", nargs="+", choices=("ir", "vis"), default=["ir", "vis"])
    p.add_argument("--limit", type=int, default=0, help="only the first N frames of each modality")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not (args.frames / "annotations").is_dir():
        print(f"{args.frames}: no annotations/ folder; pass --frames DIR (llvip-dev/frames)", file=sys.stderr)
        return 2
    rows = []
    for name in args.detectors:
        for mod in args.modalities:
            frames = sorted((args.frames / mod).glob("*.jpg"))
            if args.limit:
                frames = frames[:args.limit]
            r = evaluate(builtin_detector(name), frames, args.frames / "annotations")
            rows.append({"detector": name, "modality": mod, **r})
            if not args.json:
                print(f"{name:6} {mod:4} frames {r['frames']:3d}  boxes {r['truth']:4d}  detections "
                      f"{r['detections']:5d}  recall {r['recall']:6.1%}  precision {r['precision']:6.1%}  "
                      f"{r['ms_per_frame']:7.1f} ms/frame", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
