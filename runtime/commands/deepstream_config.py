"""`irreid-edge deepstream-config`: an nvinfer config that runs an encoder as a DeepStream secondary model.

The file follows the Gst-nvinfer configuration reference (DeepStream SDK developer guide, "Gst-nvinfer
File Configuration Specifications"): nvinfer computes ``y = net-scale-factor * (x - offsets)`` on the
scaled crop, so a graph that takes raw 0-255 pixels and normalises inside (every irreid-edge export)
gets ``net-scale-factor=1`` and zero offsets; a foreign model normalised by the runtime gets
``1/(255*std)`` and ``255*mean`` (one scale factor only: per-channel std is refused). ``network-type=100``
with ``output-tensor-meta=1`` attaches the raw embedding to each object's user meta for a probe to read;
the crop is stretched to the model's H x W like runtime.preprocess (``maintain-aspect-ratio=0``,
bilinear scaling).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..base.choices import MODALITIES, PRECISION_CHOICES

HELP = "write a DeepStream nvinfer config running an encoder as a secondary (per-object) model"
#: nvinfer's network-mode and model-color-format values
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
COLOR_FORMAT = {"RGB": 0, "BGR": 1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="exported model folder or a foreign .onnx (default: the newest export)")
    p.add_argument("--modality", choices=MODALITIES, default="rgb",
                   help="encoder for the camera's crops (rgb for colour cameras, ir for thermal/night)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="auto: the fastest engine built here (int8 > fp16 > fp32), else the fp32 graph")
    p.add_argument("--batch-size", type=int, default=16, help="objects per inference batch (nvinfer batch-size)")
    p.add_argument("--gie-id", type=int, default=2, help="this model's gie-unique-id")
    p.add_argument("--operate-on-gie-id", type=int, default=1, help="the detector whose objects are embedded")
    p.add_argument("--class-ids", default="0", help="detector classes to embed, ';'-separated (default 0: person)")
    p.add_argument("--dla-core", type=int, default=None, metavar="N",
                   help="use the engine built for DLA core N (`irreid-edge build --dla-core N`); default: the GPU "
                        "engine, else a DLA one")
    p.add_argument("--out", required=True, help="config file to write (.txt)")


def _files(model: Path, modality: str, precision: str, dla_core: int | None = None) -> tuple[Path, Path | None, str]:
    """(onnx, engine or None, precision) for the config; per precision the GPU engine, else a DLA one
    (``dla_core``: that core's only), as the runtime picks them (runtime.backends.engine.built_engines)."""
    from ..backends.engine import built_engines
    from ..base.choices import ENGINE_PRECISION_ORDER
    from ..encoder import resolve_onnx

    is_dir = model.is_dir()
    order = ENGINE_PRECISION_ORDER if precision == "auto" else (precision,)
    for prec in order:
        for eng in built_engines(model, modality, prec, is_dir, dla_core):
            onnx = resolve_onnx(model, modality, prec, "trt", fallback=False)[0] if is_dir else model
            return onnx, eng, prec
    prec = "fp32" if precision == "auto" else precision
    onnx = resolve_onnx(model, modality, prec, "trt", fallback=False)[0] if is_dir else model
    return onnx, None, prec


def _scaling(spec: Any) -> tuple[float, list[float]]:
    from ..base.errors import UserError

    if spec.normalize == "graph":
        return 1.0, [0.0, 0.0, 0.0]
    if len(set(spec.std)) != 1:
        raise UserError(f"{spec.name}: std {list(spec.std)} differs per channel and nvinfer has one net-scale-factor; "
                        "put the normalisation in the graph (re-export) or use a model with equal std")
    return 1.0 / (255.0 * spec.std[0]), [round(255.0 * m, 4) for m in spec.mean]


def render(spec: Any, onnx: Path, engine: Path | None, precision: str, args: argparse.Namespace,
           base: Path, dla_core: int | None = None) -> str:
    """``dla_core``: the engine was built for that DLA core; nvinfer must load it there
    (``enable-dla=1``, ``use-dla-core=N``), or it deserialises it for the GPU."""
    scale, offsets = _scaling(spec)
    rel = lambda p: os.path.relpath(p.resolve(), base.resolve())  # noqa: E731  nvinfer resolves paths from the config
    lines = ["# written by `irreid-edge deepstream-config`; nvinfer secondary model (per-object embeddings)",
             "[property]", "gpu-id=0", f"net-scale-factor={scale:.10g}", f"offsets={';'.join(f'{o:g}' for o in offsets)}",
             f"model-color-format={COLOR_FORMAT[spec.channel_order]}", f"onnx-file={rel(onnx)}"]
    if engine is not None:
        lines.append(f"model-engine-file={rel(engine)}")
    lines += [f"infer-dims=3;{spec.input_height};{spec.input_width}", f"batch-size={args.batch_size}",
              f"network-mode={NETWORK_MODE[precision]}",
              *(["enable-dla=1", f"use-dla-core={dla_core}"] if dla_core is not None else []),
              "network-type=100", "output-tensor-meta=1",
              "process-mode=2", f"gie-unique-id={args.gie_id}", f"operate-on-gie-id={args.operate_on_gie_id}",
              f"operate-on-class-ids={args.class_ids}", "maintain-aspect-ratio=0", "scaling-filter=1",
              "# output: one float tensor per object, "
              f"{spec.embedding_dim} values, {'L2-normalised' if spec.l2_normalized else 'not normalised'}"]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from ..base.fileio import atomic_write_text
    from ..encoder import onnx_spec, read_onnx_metadata
    from ..model_dir import read_model_dir_specs
    from ._common import model_path, positive

    positive(args.batch_size, "--batch-size")
    model = model_path(args)
    if args.dla_core is not None and args.dla_core < 0:
        from ..base.errors import UserError

        raise UserError(f"--dla-core {args.dla_core} is invalid; DLA cores are numbered from 0")
    onnx, engine, prec = _files(model, args.modality, args.precision, args.dla_core)
    folder = read_model_dir_specs(model).get(args.modality) if model.is_dir() else None
    spec = onnx_spec(onnx, read_onnx_metadata(onnx), folder, prec)
    if engine is None and prec != "fp32":
        print(f"irreid-edge: no {prec} engine built here; nvinfer will build one from {onnx.name} on first start")
    dla_core = None
    if engine is not None:
        from ..backends.engine import read_sidecar

        key = read_sidecar(engine, verify_engine=False)[0]
        dla_core, (low, _, top) = key.dla_core, key.profile
        if args.batch_size > top:
            print(f"irreid-edge: warning: --batch-size {args.batch_size} is above {engine.name}'s profile max {top}; "
                  f"rebuild with `irreid-edge build --max-batch {args.batch_size}` or lower --batch-size")
        elif dla_core is not None and args.batch_size != low:  # a DLA profile is one fixed batch
            print(f"irreid-edge: warning: {engine.name} runs one fixed batch of {low} on DLA core {dla_core}; "
                  f"pass --batch-size {low}, or rebuild with `irreid-edge build --dla-core {dla_core} --max-batch "
                  f"{args.batch_size}`")
    out = Path(args.out)
    atomic_write_text(out, render(spec, onnx, engine, prec, args, out.parent, dla_core))
    print(f"wrote {out} ({args.modality} encoder, {prec}, {'engine ' + engine.name if engine else 'ONNX ' + onnx.name})")
    return 0
