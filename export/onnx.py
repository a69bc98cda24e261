"""`python -m export.onnx`: a training checkpoint -> a verified model folder (ONNX fp32 / fp16 / int8).

    python -m export.onnx                                  # newest run under ./runs, fp32 -> runs/<run>/export
    python -m export.onnx --checkpoint runs/demo/best.pt --fp16 --int8
    python -m export.onnx --int8 --calib /data/cams --calib-images 512 --calib-method entropy

Writes rgb.onnx / ir.onnx (+ *.fp16.onnx, *.int8.onnx for TensorRT, *.int8-cpu.onnx for ONNX
Runtime on a CPU), spec.json, report.json and report.md. Run it only as ``python -m export.onnx``:
as a script its folder would shadow the ``onnx`` package.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from calib.ranges import METHODS

__all__ = ["get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m export.onnx", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="training checkpoint (default: best.pt, else last.pt, of the newest run "
                                        "under $IRREID_RUNS or ./runs)")
    p.add_argument("--out", help="output folder (default: <run>/export)")
    p.add_argument("--fp16", action="store_true", help="also write *.fp16.onnx (reductions and L2 norm in fp32)")
    p.add_argument("--int8", action="store_true", help="also write *.int8.onnx (TensorRT) and *.int8-cpu.onnx (ORT CPU)")
    p.add_argument("--calib", action="append", default=[], metavar="DIR",
                   help="calibration image folder (repeatable; default: the run's own training images)")
    p.add_argument("--calib-images", type=int, default=512, help="calibration images, both modalities (default 512)")
    p.add_argument("--calib-method", default="percentile",
                   help=f"range method: {', '.join(METHODS)} (default percentile 99.99: measured closest to fp32 "
                        "here; entropy clipped too hard, see report.md of an export)")
    p.add_argument("--calib-cache", help="JSON range cache to reuse and update (default: <out>/calib_cache.json)")
    p.add_argument("--opset", type=int, default=17,
                   help="ONNX opset (default 17: TensorRT 8.5+ parses it; 19+: the TensorRT int8 graph gets fp16 "
                        "Q/DQ scales and fp16 around them, for TensorRT 10+ only)")
    p.add_argument("--batch-check", type=int, default=4, help="batch size of the dynamic-batch check (default 4)")
    return p


def _validate(a: argparse.Namespace) -> str | None:
    if a.calib_method not in METHODS:
        return f"--calib-method {a.calib_method!r} is invalid; valid: {', '.join(METHODS)}"
    if a.calib_images < 1:
        return f"--calib-images must be >= 1, got {a.calib_images}"
    if not 13 <= a.opset <= 21:
        return f"--opset {a.opset} is invalid; valid: 13..21 (17 recommended)"
    if (a.calib or a.calib_cache) and not a.int8:
        return "--calib / --calib-cache need --int8"
    return None


def _summary(report: dict, written: list[Path], out_dir: Path) -> None:
    for m, e in report.get("encoders", {}).items():
        par = "; ".join(f"{s}: min cos {p['min_cos']:.7f}, max|diff| {p['max_abs_diff']:.1e}"
                        for s, p in e.get("parity", {}).items())
        print(f"  {m}: fp32 parity {par}")
        if "fp16" in e:
            print(f"  {m}: fp16 mean cos {e['fp16']['mean_cos']:.6f}")
        if "int8" in e:
            q = e["int8"]
            print(f"  {m}: int8 cpu mean/min cos {q['cpu']['mean_cos']:.5f}/{q['cpu']['min_cos']:.5f}, trt "
                  f"{q['trt']['mean_cos']:.5f}/{q['trt']['min_cos']:.5f} (float: {q['float_layers']})")
    for split in ([report["ranking"]] if "ranking" in report else []) + list(report.get("rankings_real", [])):
        where = str(split.get("split", "")).split(" ")[0]
        for name, r in split.items():
            if isinstance(r, dict):
                print(f"  ranking {name}: rank-1 {r['rank1']:.2f}%, mAP {r['mAP']:.2f}% ({where})")
    print(f"export.onnx: wrote {len(written)} model/spec files and report.md to {out_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    a = get_args_parser().parse_args(argv)
    problem = _validate(a)
    if problem:
        print(f"export.onnx: error: {problem}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        from .pipeline import ExportConfig, run_export, write_outputs
        from .report import build_report, write_report
        from .source import find_checkpoint, load_source

        ckpt = Path(a.checkpoint) if a.checkpoint else find_checkpoint()
        out_dir = Path(a.out) if a.out else ckpt.parent / "export"
        cfg = ExportConfig(ckpt, out_dir, a.fp16, a.int8, list(a.calib), a.calib_images, a.calib_method,
                           Path(a.calib_cache) if a.calib_cache else (out_dir / "calib_cache.json" if a.int8 else None),
                           a.opset, a.batch_check)
        print(f"export.onnx: {ckpt} -> {out_dir}")
        src = load_source(ckpt)
        result = run_export(src, cfg)
        written = write_outputs(result, out_dir)
        report = build_report(src, cfg, result, written, time.perf_counter() - t0)
        write_report(report, out_dir)
    except (ValueError, OSError) as e:
        print(f"export.onnx: error: {e}", file=sys.stderr)
        return 2
    _summary(report, written, out_dir)
    if result.hard_failures:
        print("export.onnx: FAILED (no model written):\n  " + "\n  ".join(result.hard_failures), file=sys.stderr)
        return 1
    if result.soft_failures:
        print("export.onnx: WARNING, below the accuracy bar (files written, see report.md):\n  "
              + "\n  ".join(result.soft_failures), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
