"""`irreid-edge build`: TensorRT engines from an exported model, on the device that will run them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backends.engine import DEFAULT_MAX_BATCH
from ..base.choices import ENGINE_PRECISION_ORDER, MODALITIES, PRECISION_CHOICES

HELP = "build TensorRT engines from an exported model, on the device that will run them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="exported model folder, or a foreign .onnx described by `irreid-edge spec` "
                                    "(default: the newest export under ./runs)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="engine precision; it lives in the graph: fp16 uses <m>.fp16.onnx, int8 <m>.int8.onnx, fp32 "
                        "<m>.onnx (default auto: the fastest graph exported, int8 > fp16 > fp32)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                   help="largest batch of the profile (larger ones are split)")
    p.add_argument("--opt-batch", type=int, default=None, help="batch the kernels are tuned for (default min(8, max))")
    p.add_argument("--workspace", type=int, default=1024, metavar="MB", help="builder workspace in MB")
    p.add_argument("--timing-cache", metavar="PATH",
                   help="timing cache file, reused and updated (default: engines/timing-<gpu>-<trt>.cache)")
    p.add_argument("--modality", default="rgb,ir", help="comma-separated encoders to build (default rgb,ir)")
    p.add_argument("--dla-core", type=int, default=None, metavar="N",
                   help="build for DLA core N (Jetson AGX Orin and Orin NX; with TensorRT 11, AGX Orin on JetPack 7.2.2+) "
                        "with GPU fallback for the layers DLA cannot run; the profile is one fixed batch (--max-batch; "
                        "smaller calls are padded); fp16/int8 only; engines/<m>.<precision>.dla<N>.engine")
    p.add_argument("--detailed-profile", action="store_true",
                   help="keep each layer's precision and formats in the engine (read them with TensorRT's engine inspector)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose builder log")


def _not_installed_message(reason: str) -> str:
    from ..backends.trt_compat import INSTALL_HINT

    return (f"{reason}: {INSTALL_HINT}; until then irreid-edge runs the ONNX models with ONNX Runtime "
            f"(index/match/embed work as they are)")


def _modalities(text: str) -> list[str]:
    mods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods:
        raise ValueError(f"--modality {text!r} is invalid; valid values: {', '.join(MODALITIES)} (comma-separated)")
    return mods


def auto_precision(model: Path, modality: str, dla_trt_version: str | None = None) -> str:
    """--precision auto for a build: the fastest graph the export has for TensorRT (int8 > fp16 >
    fp32), the same rule as the native `irreid-edge-native build`. ``dla_trt_version``: a DLA build
    with that TensorRT, which runs fp16 and int8 only, and int8 (Q/DQ) only from TensorRT 9."""
    from ..backends.trt_compat import dla_has_explicit_quantization
    from ..model_dir import model_file
    from ..spec import SpecError

    dla = dla_trt_version is not None
    skip = {"fp32"} if dla else set()
    if dla_trt_version is not None and not dla_has_explicit_quantization(dla_trt_version):
        skip.add("int8")
    order = [p for p in ENGINE_PRECISION_ORDER if p not in skip]
    for prec in order:
        if model_file(model, modality, prec, "trt").is_file():
            return prec
    if dla:
        raise SpecError(f"{model}: no fp16 or int8 graph for {modality!r}, and DLA runs fp16 and int8 only; export one "
                        "with `python -m export.onnx --fp16` (or --int8 --calib DIR), or build without --dla-core")
    raise SpecError(f"{model_file(model, modality, 'fp32', 'trt')}: not found; export the model with `python -m export.onnx`")


def _requests(args: argparse.Namespace) -> list[object]:
    from ..backends.trt_build import BuildRequest
    from ..backends.trt_compat import import_trt
    from ..encoder import onnx_spec, read_onnx_metadata, resolve_onnx
    from ..model_dir import default_model_dir, read_model_dir_specs

    model = Path(args.model) if args.model else default_model_dir()
    common = {"max_batch": args.max_batch, "opt_batch": args.opt_batch, "workspace_mb": args.workspace,
              "timing_cache": Path(args.timing_cache) if args.timing_cache else None, "verbose": args.verbose,
              "dla_core": args.dla_core, "detailed": args.detailed_profile}
    if model.is_file():
        spec = onnx_spec(model, read_onnx_metadata(model), None, "fp32")
        precision = spec.precision if args.precision == "auto" else args.precision  # auto: the graph's own
        return [BuildRequest(model, False, spec.modality, precision, model, spec, **common)]
    specs = read_model_dir_specs(model)
    dla_version = None if args.dla_core is None else str(import_trt().__version__)
    out: list[object] = []
    for m in _modalities(args.modality):
        if m not in specs:
            raise ValueError(f"{model}/spec.json has no {m!r} encoder; pass --modality {','.join(specs)}")
        wanted = auto_precision(model, m, dla_version) if args.precision == "auto" else args.precision
        if args.precision == "auto":
            print(f"irreid-edge: {m} encoder: building {wanted} (auto: the fastest graph exported)", file=sys.stderr)
        path, prec = resolve_onnx(model, m, wanted, "trt", fallback=False)
        spec = onnx_spec(path, read_onnx_metadata(path), specs[m], prec)
        out.append(BuildRequest(model, True, m, wanted, path, spec, **common))
    return out


def run(args: argparse.Namespace) -> int:
    from ..backends.engine import profile_batches
    from ..backends.trt import trt_unavailable_reason
    from ..base.errors import UserError

    profile_batches(args.max_batch, args.opt_batch)  # refuse bad values before anything slow
    if args.workspace <= 0:
        raise UserError(f"--workspace {args.workspace} is invalid; it must be a positive number of MB")
    if args.dla_core is not None and args.dla_core < 0:
        raise UserError(f"--dla-core {args.dla_core} is invalid; DLA cores are numbered from 0")
    if args.dla_core is not None and args.precision == "fp32":
        raise UserError("--dla-core: DLA runs fp16 and int8 only; add --precision fp16 or --precision int8")
    reason = trt_unavailable_reason()
    if reason is not None:
        raise UserError(_not_installed_message(reason))
    from ..backends.trt_build import build_engine_file

    for req in _requests(args):
        path = build_engine_file(req)  # type: ignore[arg-type]
        print(path)
    return 0
