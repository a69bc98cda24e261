"""The export, stage by stage: load -> fuse -> ONNX -> check -> fp16 -> calibrate -> int8 -> rank -> write.

Everything is built and measured in memory first; files are written (each atomically) only at the
end. When a contract check fails (graph, normalisation, fp32 parity, collapse) no model file is
written, only the report saying why; a precision that misses its accuracy bar is written and
flagged in the report and on the console.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from calib.cache import CalibCacheError, RangeCache, read_cache, write_cache
from calib.ranges import DEFAULT_BINS, DEFAULT_PERCENTILE
from runtime.base.choices import MODALITIES
from runtime.base.fileio import atomic_write_bytes
from runtime.model_dir import model_file, write_model_dir_specs
from runtime.spec import ModelSpec, set_onnx_metadata

from . import checks as C
from .data import ExportData, for_modality, gather, load, load_images
from .fp16 import to_fp16
from .fuse import deploy_encoder
from .graph import Check, check_io, check_normalization, check_structure, export_onnx, op_counts
from .int8_calibration import calibrate, choose_float_layers
from .qdq import RECIPES, placement_problems
from .source import Source

__all__ = ["ExportConfig", "Exported", "run_export"]



@dataclass
class ExportConfig:
    checkpoint: Path
    out: Path
    fp16: bool = False
    int8: bool = False
    calib: list[str] = field(default_factory=list)
    calib_images: int = 512
    calib_method: str = "percentile"
    calib_cache: Path | None = None
    opset: int = 17
    batch_check: int = 4


@dataclass
class Exported:
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> serialised ONNX
    specs: dict[str, ModelSpec] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    hard_failures: list[str] = field(default_factory=list)
    soft_failures: list[str] = field(default_factory=list)


def _with_spec(model: onnx.ModelProto, spec: ModelSpec) -> bytes:
    set_onnx_metadata(model, spec)
    return model.SerializeToString()


def _fp32_stage(src: Source, cfg: ExportConfig, m: str, data: ExportData, out: Exported) -> tuple[onnx.ModelProto, C.OrtModel]:
    spec = src.specs[m].replace(precision="fp32", opset=cfg.opset)
    h, w, d = spec.input_height, spec.input_width, spec.embedding_dim
    graph = export_onnx(deploy_encoder(src.model, m, h, w), h, w, d, cfg.opset)
    checks = [*check_io(graph, h, w, d), *check_structure(graph, src.model.stripes, src.forbidden_shapes),
              check_normalization(graph, spec.mean, spec.std)]
    blob = _with_spec(graph, spec)
    ort_fp32 = C.OrtModel(blob)
    figures: dict[str, Any] = {"graph": [c.as_dict() for c in checks], "ops": op_counts(graph), "parity": {}}
    out.hard_failures += [f"{m}: {c.name}: {c.detail}" for c in checks if not c.passed]
    with torch.no_grad():
        for source, images in data.check.items():
            batch = load(for_modality(images, m), spec)
            reference = src.model.embed(torch.from_numpy(batch), m).numpy()  # the unfused training model
            onnx_out = ort_fp32(batch)
            figures["parity"][source] = C.parity(reference, onnx_out)
            if source == next(iter(data.check)):
                figures["distinct"] = C.distinct(onnx_out)
                figures["input_sensitivity"] = C.input_sensitivity(ort_fp32, batch, spec, onnx_out)
                figures["dynamic_batch"] = C.dynamic_batch(ort_fp32, batch, cfg.batch_check)
    for key in ("distinct", "input_sensitivity", "dynamic_batch"):
        if key in figures and not figures[key]["passed"]:
            out.hard_failures.append(f"{m}: {key}: {figures[key]}")
    out.hard_failures += [f"{m}: fp32 parity on {s}: {p}" for s, p in figures["parity"].items() if not p["passed"]]
    if not data.check:
        out.hard_failures.append(f"{m}: no images to check parity with (the run's data is missing; pass --calib DIR)")
    out.files[model_file("", m, "fp32").name] = blob
    out.specs[m] = spec
    out.report.setdefault("encoders", {})[m] = figures
    return graph, ort_fp32


def _fp16_stage(src: Source, m: str, graph: onnx.ModelProto, held: np.ndarray, ref: np.ndarray, out: Exported) -> None:
    half = to_fp16(graph, src.model.stripes)
    blob = _with_spec(half, out.specs[m].replace(precision="fp16"))
    fig = C.agreement(ref, C.OrtModel(blob)(held), C.BARS["fp16_mean_cos"])
    fig["graph"] = [c.as_dict() for c in check_io(half, *out.specs[m].input_shape[1:], out.specs[m].embedding_dim)]
    out.report["encoders"][m]["fp16"] = fig
    if not fig["passed"]:
        out.soft_failures.append(f"{m}: fp16 vs fp32: {fig}")
    out.files[model_file("", m, "fp16").name] = blob


def _int8_stage(src: Source, cfg: ExportConfig, m: str, graph: onnx.ModelProto, data: ExportData,
                held: np.ndarray, ref: np.ndarray, cache: RangeCache, out: Exported) -> dict[str, C.OrtModel]:
    import hashlib

    spec = out.specs[m]
    sha = hashlib.sha256(graph.SerializeToString()).hexdigest()
    ranges, summary = calibrate(graph, sha, spec, for_modality(data.calib, m), cfg.calib_method, cache,
                                loader=load_images)
    result = choose_float_layers(graph, ranges, src.model.stripes, held, ref)
    calibration = {"method": cfg.calib_method, "images": summary.get("used"), "skipped": summary.get("skipped"),
                   "modality_of_images": m, "float_layers": result.float_layers, "tensors": len(ranges)}
    fig: dict[str, Any] = {"calibration": summary, "float_layer_trials": result.trials,
                           "float_layers": result.float_layers}
    runners = {}
    for target, proto in (("cpu", result.cpu), ("trt", result.trt)):
        s = spec.replace(precision="int8", calibration={**calibration, "target": target,
                                                        "purpose": RECIPES[target].purpose})
        blob = _with_spec(proto, s)
        runners[target] = C.OrtModel(blob)
        fig[target] = {**C.agreement(ref, runners[target](held), C.BARS["int8_mean_cos"], C.BARS["int8_min_cos"]),
                       "file": model_file("", m, "int8", target).name, "purpose": RECIPES[target].purpose,
                       "graph": [c.as_dict() for c in [*check_io(proto, spec.input_height, spec.input_width,
                                                                 spec.embedding_dim),
                                                        _placement_check(proto, target, result.excluded_nodes)]],
                       "ops": {k: v for k, v in op_counts(proto).items()
                               if k in ("QuantizeLinear", "DequantizeLinear", "Cast")}}
        if not fig[target]["passed"]:
            out.soft_failures.append(f"{m}: int8 ({target}) vs fp32 on held-out images: {fig[target]['mean_cos']:.4f} mean")
        out.soft_failures += [f"{m}: int8 ({target}) graph: {c['name']}: {c['detail']}" for c in fig[target]["graph"]
                              if not c["passed"]]
        out.files[model_file("", m, "int8", target).name] = blob
    out.report["encoders"][m]["int8"] = fig
    out.specs[m] = spec.replace(calibration=calibration)
    return runners


def _placement_check(model: onnx.ModelProto, target: str, kept_float: list[str] | None = None) -> Check:
    """The target's Q/DQ rule; layers the accuracy search kept in float (``kept_float``) are exempt, and named."""
    kept = set(kept_float or ())
    problems = placement_problems(model, target, kept)
    rule = ("Conv/Gemm inputs, weights and residual inputs quantised, no Q on a weighted layer's output"
            if target == "trt" else "every Conv DQ -> Conv -> Q (ONNX Runtime's QLinearConv)")
    exempt = f" ({len(kept)} layer(s) kept float by the accuracy search exempt)" if kept else ""
    return Check("Q/DQ placement", not problems, f"{rule}: " + ("kept" + exempt if not problems else
                                                                 f"{len(problems)} breaks, e.g. {problems[0]}"))


def _ranking(title: str, queries: list[Any], gallery: list[Any], sessions: dict[str, dict[str, C.Embed]],
             out: Exported, trials: list[list[int]] | None = None) -> dict[str, Any]:
    """IR queries -> colour gallery, rank-1 / mAP per graph set (the mean over ``trials``, the gallery
    rows of each single-shot trial, when given), with the int8 drops against fp32."""
    qb, gb = load_records(queries, out.specs["ir"]), load_records(gallery, out.specs["rgb"])
    q_meta, g_meta = [(r.pid, r.camid) for r in queries], [(r.pid, r.camid) for r in gallery]
    results = {name: C.ranking(s["ir"], s["rgb"], qb, gb, q_meta, g_meta, trials) for name, s in sessions.items()}
    fp32 = results["fp32"]
    for name, r in results.items():
        if name != "fp32":
            r["rank1_drop"], r["mAP_drop"] = fp32["rank1"] - r["rank1"], fp32["mAP"] - r["mAP"]
            r["passed"] = bool(max(r["rank1_drop"], r["mAP_drop"]) <= C.BARS["rank_drop_points"])
            if not r["passed"]:
                out.soft_failures.append(f"ranking {name} ({title.split(' ')[0]}): rank-1 drop {r['rank1_drop']:.2f}, "
                                         f"mAP drop {r['mAP_drop']:.2f} points")
    return {"split": title, **results, "bar": f"drop <= {C.BARS['rank_drop_points']} point"}


def _ranking_stage(data: ExportData, sessions: dict[str, dict[str, C.Embed]], out: Exported) -> None:
    from train.data.sysu import test_split

    if data.test_root is not None:
        queries, gallery = test_split(data.test_root, "all", 0)
        out.report["ranking"] = _ranking(f"{data.test_root} SYSU test split, mode all, trial 0", queries, gallery,
                                         sessions, out)
    if data.real_splits:  # real photographs (a Market-1501 run): held-out dev ids, LLVIP held-out frames
        out.report["rankings_real"] = [_ranking(r.title, r.queries, r.gallery, sessions, out, r.trials)
                                       for r in data.real_splits]


def load_records(records: list[Any], spec: ModelSpec) -> np.ndarray:
    """Test records -> a batch, each in its pseudo-IR rendering (``pseudo_ir``) when it has one."""
    from train.evaluate.features import load_record_batch

    return load_record_batch(records, spec)


def _open_cache(cfg: ExportConfig) -> RangeCache:
    if cfg.calib_cache is not None and cfg.calib_cache.is_file():
        try:
            return read_cache(cfg.calib_cache)
        except CalibCacheError as e:
            print(f"export.onnx: warning: {e}; recalibrating")
    return RangeCache(cfg.calib_method, DEFAULT_PERCENTILE, DEFAULT_BINS)


def run_export(src: Source, cfg: ExportConfig) -> Exported:
    out = Exported()
    data = gather(src.train_root, cfg.calib, cfg.calib_images, data_config=src.data_config)
    out.report["notes"] = list(data.notes)
    if cfg.int8:
        out.report["notes"].append(
            f"calibration: {len(data.calib)} images stratified over modality and identity "
            f"({', '.join(f'{m} {sum(im.modality == m for im in data.calib)}' for m in MODALITIES)}); each encoder "
            f"is calibrated on its own modality's images (it only ever sees those), with {cfg.calib_method} ranges "
            f"shared by its TensorRT and CPU graphs; held-out images for the int8 bars: {len(data.held_out)}")
    cache = _open_cache(cfg) if cfg.int8 else None
    sessions: dict[str, dict[str, C.Embed]] = {"fp32": {}, "int8-cpu": {}, "int8-trt": {}}
    for m in MODALITIES:
        graph, ort_fp32 = _fp32_stage(src, cfg, m, data, out)
        sessions["fp32"][m] = ort_fp32
        if out.hard_failures:
            continue
        held = load(for_modality(data.held_out, m), out.specs[m])
        ref = ort_fp32(held)
        out.report["encoders"][m]["held_out_images"] = len(held)
        if cfg.fp16:
            _fp16_stage(src, m, graph, held, ref, out)
        if cfg.int8 and cache is not None:
            runners = _int8_stage(src, cfg, m, graph, data, held, ref, cache, out)
            sessions["int8-cpu"][m], sessions["int8-trt"][m] = runners["cpu"], runners["trt"]
    if cfg.int8 and cache is not None and cfg.calib_cache is not None and not out.hard_failures:
        write_cache(cache, cfg.calib_cache)
    if (data.test_root is not None or data.real_splits) and not out.hard_failures:
        _ranking_stage(data, {k: v for k, v in sessions.items() if len(v) == 2}, out)
    return out


def write_outputs(out: Exported, out_dir: Path) -> list[Path]:
    """Model files and spec.json (only when no contract check failed); each written atomically."""
    if out.hard_failures:
        return []
    written = []
    for name, blob in out.files.items():
        atomic_write_bytes(out_dir / name, blob)
        written.append(out_dir / name)
    written.append(write_model_dir_specs(out_dir, out.specs))
    return written
