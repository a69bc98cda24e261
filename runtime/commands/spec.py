"""`irreid-edge spec`: describe a foreign ONNX re-ID model so every backend can run it.

Writes ``<model>.onnx.spec.json``. A foreign graph usually expects normalised input, so by default
the spec says ``normalize="preprocess"``: the runtime applies mean/std after its usual preprocessing
(raw 0-255 RGB, or BGR with --bgr). ``--no-l2`` says the graph's output is not L2-normalised; the
runtime then normalises it, so every encoder returns comparable embeddings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..base.choices import MODALITIES

HELP = "describe a foreign ONNX re-ID model with a spec so the runtime can use it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", required=True, help="the ONNX model (input [N,3,H,W], output [N,D])")
    p.add_argument("--height", type=int, required=True, help="input height the model was trained at")
    p.add_argument("--width", type=int, required=True, help="input width")
    p.add_argument("--modality", choices=MODALITIES, default="rgb", help="what it was trained on (default rgb)")
    p.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                   help="per-channel mean in RGB order, 0-1 units (0-255 values are recognised); default ImageNet")
    p.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                   help="per-channel std in RGB order, 0-1 or 0-255 units; default ImageNet")
    p.add_argument("--bgr", action="store_true", help="the model takes BGR channel order (OpenCV-trained)")
    p.add_argument("--no-l2", action="store_true", help="the output is not L2-normalised (the runtime will do it)")
    p.add_argument("--in-graph", action="store_true",
                   help="the graph normalises by itself: feed raw 0-255 pixels (mean/std only recorded)")
    p.add_argument("--name", help="model name recorded in the spec (default: the file name)")
    p.add_argument("--out", help="where to write the spec (default: <onnx>.spec.json)")


def _units(name: str, values: list[float] | None, default: tuple[float, float, float]) -> tuple[float, ...]:
    if values is None:
        return default
    if max(abs(v) for v in values) > 1.0:  # fast-reid style [123.675, 116.28, 103.53]
        print(f"irreid-edge spec: --{name} {values} read in 0-255 units", file=sys.stderr)
        return tuple(v / 255.0 for v in values)
    return tuple(values)


def _probe_graph(path: Path, height: int, width: int) -> tuple[int, str]:
    """(embedding dim, precision) from the graph itself; refuses an input that is not [N,3,H,W]."""
    import numpy as np

    from ..backends.ort import load_session

    sess = load_session(path)
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    shape = list(inp.shape)
    static = [d if isinstance(d, int) else None for d in shape]
    if len(shape) != 4 or static[1] not in (3, None):
        raise ValueError(f"{path}: input {inp.name!r} has shape {shape}; irreid-edge needs [N, 3, H, W]")
    for got, want, what in ((static[2], height, "height"), (static[3], width, "width")):
        if got is not None and got != want:
            raise ValueError(f"{path}: the graph's input {what} is {got}, --{what} says {want}; pass --{what} {got}")
    precision = "fp16" if inp.type == "tensor(float16)" else "fp32"
    dim = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else None
    if dim is None:  # dynamic output width: run one blank image to see it
        n = static[0] or 1
        x = np.zeros((n, 3, height, width), np.float16 if precision == "fp16" else np.float32)
        try:
            dim = int(sess.run([out.name], {inp.name: x})[0].reshape(n, -1).shape[1])  # (n, D)
        except Exception as e:  # ONNX Runtime's errors: the graph does not take this size
            raise ValueError(f"{path}: the graph refused a {height}x{width} input ({str(e).strip().splitlines()[0]}); "
                             "pass the size it was exported at with --height/--width") from None
    return int(dim), precision


def run(args: argparse.Namespace) -> int:
    from ..base.fileio import file_sha256
    from ..encoder import sidecar_spec_path
    from ..spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, write_spec_json

    path = Path(args.onnx)
    if not path.is_file():
        raise ValueError(f"{path}: not found; pass the ONNX file to describe")
    dim, precision = _probe_graph(path, args.height, args.width)
    fields: dict[str, Any] = {
        "name": args.name or path.stem, "modality": args.modality, "input_height": args.height,
        "input_width": args.width, "embedding_dim": dim, "stripes": 1,
        "channel_order": "BGR" if args.bgr else "RGB",
        "mean": _units("mean", args.mean, IMAGENET_MEAN), "std": _units("std", args.std, IMAGENET_STD),
        "normalize": "graph" if args.in_graph else "preprocess", "l2_normalized": not args.no_l2,
        "precision": precision, "onnx_sha256": file_sha256(path), "extra": {"foreign": True},
    }
    spec = ModelSpec(**fields)
    out = Path(args.out) if args.out else sidecar_spec_path(path)
    write_spec_json(spec, out)
    print(f"{out}: {spec.name} {args.height}x{args.width} -> {dim}-d, {spec.channel_order}, "
          f"normalize={spec.normalize}, l2={'graph' if spec.l2_normalized else 'runtime'}")
    return 0
