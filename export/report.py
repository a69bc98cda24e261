"""The report of one export: report.json (every figure, assembled by `build_report`) and report.md (the
same, for people, `render_markdown`), both written by `write_report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.base.fileio import atomic_write_text, file_sha256

from .pipeline import ExportConfig, Exported
from .qdq import RECIPES
from .source import Source

__all__ = ["build_report", "render_markdown", "write_report"]


def _f(x: Any, digits: int = 6) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ok(passed: Any) -> str:
    return "PASS" if passed else "**FAIL**"


def _encoder_md(m: str, e: dict[str, Any]) -> list[str]:
    lines = [f"## Encoder `{m}`", "", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {_ok(c['passed'])} | {c['detail']} |" for c in e.get("graph", [])]
    for source, p in e.get("parity", {}).items():
        lines.append(f"| fp32 ORT vs PyTorch ({source}, {p['images']} images) | {_ok(p['passed'])} | "
                     f"min cos {_f(p['min_cos'], 7)}, max abs diff {p['max_abs_diff']:.2e} ({p['bar']}) |")
    if "distinct" in e:
        d = e["distinct"]
        lines.append(f"| different images differ | {_ok(d['passed'])} | min pairwise distance {_f(d['min_pairwise_dist'], 4)}, "
                     f"mean {_f(d['mean_pairwise_dist'], 4)} ({d['bar']}) |")
    if "input_sensitivity" in e:
        s = e["input_sensitivity"]
        what = ", ".join(f"{k.replace('_mean_cos', '')} input: cos {_f(v, 4)}" for k, v in s.items() if k.endswith("cos"))
        lines.append(f"| wrong input convention is visible | {_ok(s['passed'])} | {what} ({s['bar']}) |")
    if "dynamic_batch" in e:
        b = e["dynamic_batch"]
        lines.append(f"| dynamic batch (1 vs {b['batch']}) | {_ok(b['passed'])} | max abs diff {b['max_abs_diff']:.1e} |")
    if "fp16" in e:
        h = e["fp16"]
        lines.append(f"| fp16 vs fp32 ({h['images']} held-out) | {_ok(h['passed'])} | mean cos {_f(h['mean_cos'])}, "
                     f"min {_f(h['min_cos'])} ({h['bar']}) |")
    if "int8" in e:
        q = e["int8"]
        for t in ("cpu", "trt"):
            lines.append(f"| int8 {t} `{q[t]['file']}` vs fp32 ({q[t]['images']} held-out) | {_ok(q[t]['passed'])} | "
                         f"mean cos {_f(q[t]['mean_cos'], 5)}, min {_f(q[t]['min_cos'], 5)} ({q[t]['bar']}) |")
        lines += ["", f"Layers kept in float (measured on the CPU graph, first candidate meeting the bar): "
                      f"**{q['float_layers']}**", "", "| candidate | mean cos | min cos | meets bar |", "|---|---|---|---|"]
        lines += [f"| {t['float_layers']} | {_f(t['mean_cos'], 5)} | {_f(t['min_cos'], 5)} | {_ok(t['passed'])} |"
                  for t in q["float_layer_trials"]]
        c = q["calibration"]
        lines += ["", f"Calibration: {c.get('used')} images used of {c.get('requested')} "
                      f"({c.get('skipped')} unreadable, skipped){' — from the range cache' if c.get('from_cache') else ''}."]
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    x = report["export"]
    lines = [f"# Export report: {x['model']}", "",
             f"- checkpoint: `{x['checkpoint']}` (sha256 {x['checkpoint_sha256'][:16]}...)",
             f"- result: **{'PASSED' if report['passed'] else 'FAILED'}**",
             f"- exporter: {x['exporter']}; opset {x['opset']}; torch {x['torch']}, onnx {x['onnx']}, "
             f"onnxruntime {x['onnxruntime']}", ""]
    if report.get("failures"):
        lines += ["## Failures", "", *[f"- {f}" for f in report["failures"]], ""]
    lines += ["## Files", "", "| file | precision | for | sha256 | MB |", "|---|---|---|---|---|"]
    lines += [f"| `{n}` | {f['precision']} | {f['for']} | {f['sha256'][:12]} | {f['bytes'] / 1e6:.1f} |"
              for n, f in report.get("files", {}).items()]
    lines.append("")
    for m, e in report.get("encoders", {}).items():
        lines += _encoder_md(m, e)
    for heading, r in ([("Cross-modal ranking (IR query -> colour gallery)", report["ranking"])] if "ranking" in report
                       else []) + [("Cross-modal ranking on real photographs", r) for r in report.get("rankings_real", [])]:
        lines += [f"## {heading}", "", f"{r['split']}; bar: {r['bar']}.", "",
                  "| graphs | rank-1 % | mAP % | drop rank-1 | drop mAP | |", "|---|---|---|---|---|---|"]
        for name in ("fp32", "int8-cpu", "int8-trt"):
            if name in r:
                v = r[name]
                lines.append(f"| {name} | {v['rank1']:.2f} | {v['mAP']:.2f} | {_f(v.get('rank1_drop', '-'), 2)} | "
                             f"{_f(v.get('mAP_drop', '-'), 2)} | {_ok(v['passed']) if 'passed' in v else ''} |")
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    js, md = out_dir / "report.json", out_dir / "report.md"
    atomic_write_text(js, json.dumps(report, indent=2, sort_keys=False) + "\n")
    atomic_write_text(md, render_markdown(report))
    return js, md


EXPORTER = ("torch.onnx.export(dynamo=False) (TorchScript exporter: emits the requested opset; the dynamo "
            "exporter in torch 2.14 only emits opset 18+ here and is ~5x slower)")


def _file_entry(path: Path) -> dict[str, Any]:
    name = path.name
    if name.endswith(".int8-cpu.onnx"):
        precision, target = "int8", RECIPES["cpu"].purpose
    elif name.endswith(".int8.onnx"):
        precision, target = "int8", RECIPES["trt"].purpose
    elif name.endswith(".fp16.onnx"):
        precision, target = "fp16", "ONNX Runtime / TensorRT fp16 (reductions and L2 norm fp32)"
    elif name.endswith(".onnx"):
        precision, target = "fp32", "reference; ONNX Runtime CPU/GPU, TensorRT fp32"
    else:
        precision, target = "-", "model folder spec (one ModelSpec per modality)"
    return {"precision": precision, "for": target, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def build_report(src: Source, cfg: ExportConfig, result: Exported, written: list[Path], seconds: float) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    failures = [*result.hard_failures, *result.soft_failures]
    return {
        "export": {**src.info, "exporter": EXPORTER, "opset": cfg.opset, "torch": torch.__version__,
                   "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "out": str(cfg.out),
                   "fp16": cfg.fp16, "int8": cfg.int8, "calib_method": cfg.calib_method if cfg.int8 else None,
                   "calib_folders": cfg.calib or ([src.train_root] if cfg.int8 else []),
                   "calib_cache": str(cfg.calib_cache) if cfg.calib_cache else None, "seconds": round(seconds, 1)},
        "passed": not failures,
        "contract_passed": not result.hard_failures,
        "failures": failures,
        "files": {p.name: _file_entry(p) for p in written},
        **result.report,
    }
