"""Frames per second of the whole `watch` pipeline on this CPU, split into decode / detect / track /
embed / match / output, on a rendered 1280x1024 thermal street video.

    python bench/watch_bench.py                         # dat_resnet18 128x64 (the market-cpu preset's), random weights
    python bench/watch_bench.py --model runs/x/export   # an exported folder instead
    python bench/watch_bench.py --people 8 --seconds 10 --video

The encoder's speed does not depend on its weights, so the default is the real-photo preset's network
(dat_resnet18 at 128x64, docs/training.md) with random weights, exported as `export.onnx` exports it
(BN folded, head fused). "decode" inside the loop is the time spent waiting for the next frame, the
reader thread decoding beside the loop; the decode-only pass (every frame, nothing else) is printed
on its own line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def random_export(folder: Path, arch: str = "dat_resnet18", height: int = 128, width: int = 64) -> Path:
    """ir.onnx and rgb.onnx of ``arch`` with random weights, with their specs (no checkpoint needed)."""
    import onnx
    import torch

    from export.fuse import deploy_encoder
    from export.graph import export_onnx
    from runtime.model_dir import write_model_dir_specs
    from runtime.spec import ModelSpec, set_onnx_metadata
    from train.models import create_model

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    model = create_model(arch).eval()
    specs = {}
    for m in ("rgb", "ir"):
        graph = export_onnx(deploy_encoder(model, m, height, width), height, width, model.embedding_dim, 17)
        specs[m] = ModelSpec(name=f"{arch}-random", modality=m, input_height=height, input_width=width,
                             embedding_dim=model.embedding_dim, stripes=model.stripes, opset=17)
        set_onnx_metadata(graph, specs[m])
        onnx.save(graph, str(folder / f"{m}.onnx"))
    write_model_dir_specs(folder, specs)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    from runtime.api import watch
    from runtime.watch.pipeline import STAGES
    from runtime.watch.source import open_source
    from runtime.watch.synthetic import make_gallery, make_walkers, write_video

    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="exported model folder (default: random dat_resnet18)")
    p.add_argument("--people", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=10.0, help="the rendered video's frame rate")
    p.add_argument("--size", default="1024x1280", help="HEIGHTxWIDTH (default 1024x1280, LLVIP's)")
    p.add_argument("--detector", default=None, help="as watch --detector (default: the thermal default)")
    p.add_argument("--video", action="store_true", help="also write the annotated video (the output stage)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        walkers = make_walkers(args.people, duration=args.seconds)
        video = root / "street.mp4"
        write_video(video, walkers, args.seconds, args.fps, (h, w), ir=True)
        make_gallery(root / "gallery", walkers)
        model = args.model or random_export(root / "model")
        t0 = time.perf_counter()
        n = sum(1 for _ in open_source(str(video)))
        decode_ms = 1000 * (time.perf_counter() - t0) / max(1, n)
        r = watch(str(video), model, gallery=root / "gallery", out=root / "out", detector=args.detector,
                  threads=args.threads, video=args.video, quiet=True)
    total = sum(r.seconds.values())
    print(f"watch on a {w}x{h} thermal video, {r.processed} frames, {args.people} people, model {model}")
    print(f"decode only: {decode_ms:.1f} ms/frame ({1000 / decode_ms:.1f} frames/s)")
    print("ms/frame: " + ", ".join(f"{k} {1000 * r.seconds[k] / max(1, r.processed):.1f}" for k in STAGES))
    print(f"whole pipeline: {r.processed / total:.1f} frames/s; {len(r.tracks)} tracks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
