"""The whole export through its CLI (one subprocess run, shared), then its files walked and read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

from export.fp16 import fp32_nodes
from export.graph import head_nodes
from runtime.model_dir import model_file, read_model_dir_specs
from runtime.spec import get_onnx_metadata

FILES = ["rgb.onnx", "ir.onnx", "rgb.fp16.onnx", "ir.fp16.onnx", "rgb.int8.onnx", "ir.int8.onnx",
         "rgb.int8-cpu.onnx", "ir.int8-cpu.onnx", "spec.json", "report.json", "report.md", "calib_cache.json"]


def test_cli_writes_every_file(exported: tuple[Path, subprocess.CompletedProcess[str]], report: dict) -> None:
    out, proc = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES), proc.stdout
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp file
    assert report["contract_passed"] is True
    md = (out / "report.md").read_text()
    assert "fp32 ORT vs PyTorch" in md and "int8 cpu" in md and "Cross-modal ranking" in md


def test_graph_contract_and_metadata(exported: tuple[Path, subprocess.CompletedProcess[str]], report: dict) -> None:
    out, _ = exported
    specs = read_model_dir_specs(out)
    for m in ("rgb", "ir"):
        checks = {c["name"]: c["passed"] for c in report["encoders"][m]["graph"]}
        assert all(checks.values()) and len(checks) == 7, checks
        for precision, target in (("fp32", "cpu"), ("fp16", "cpu"), ("int8", "cpu"), ("int8", "trt")):
            model = onnx.load(model_file(out, m, precision, target))
            spec = get_onnx_metadata(model)
            assert (spec.modality, spec.precision, spec.opset) == (m, precision, 17)
            assert spec.checkpoint_sha256 == report["export"]["checkpoint_sha256"]
            assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == ["embeddings"]
            assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
            if precision == "int8":
                assert spec.calibration["target"] == target and spec.calibration["images"] > 0
        assert specs[m].embedding_dim == 96 and specs[m].input_height == 64


def test_parity_figures(report: dict) -> None:
    for m in ("rgb", "ir"):
        e = report["encoders"][m]
        for figures in e["parity"].values():
            assert figures["min_cos"] >= 0.99999 and figures["max_abs_diff"] <= 1e-4
        assert e["distinct"]["passed"] and e["distinct"]["min_pairwise_dist"] > 1e-3
        assert e["input_sensitivity"]["prenormalised_mean_cos"] < 0.9999
        assert e["dynamic_batch"]["passed"]
        assert e["fp16"]["mean_cos"] >= 0.9995
        for target in ("cpu", "trt"):  # a random-weights model: the bar holds with percentile ranges
            assert e["int8"][target]["mean_cos"] >= 0.99 and e["int8"][target]["min_cos"] >= 0.97
        assert e["int8"]["calibration"]["used"] > 0
    assert report["encoders"]["rgb"]["input_sensitivity"]["bgr_mean_cos"] < 0.9999
    assert {"fp32", "int8-cpu", "int8-trt"} <= set(report["ranking"])


def test_fp16_keeps_reductions_and_l2_in_fp32(exported: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = exported
    model = onnx.load(out / "ir.fp16.onnx")
    kept = set(fp32_nodes(model))
    roles = head_nodes(model, stripes=3)
    must = {n.name for n in model.graph.node if n.op_type not in ("Cast", "Shape")} & {*roles["pool"], *roles["tail"]}
    assert must <= kept and {n.name for n in model.graph.node if n.op_type == "ReduceL2"} <= kept
    assert any(n.startswith("/ReduceL2") for n in must)
    convs = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert convs and all(i.data_type == TensorProto.FLOAT16 for i in convs)


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]


def test_int8_qdq_structure(exported: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = exported
    trt, cpu = onnx.load(out / "rgb.int8.onnx"), onnx.load(out / "rgb.int8-cpu.onnx")
    trt_zp, cpu_zp = _zero_points(trt), _zero_points(cpu)
    assert trt_zp and all(z.dtype == np.int8 and not z.any() for z in trt_zp)  # symmetric int8
    assert cpu_zp and all(z.dtype == np.uint8 for z in cpu_zp)  # uint8 activations
    for model in (trt, cpu):
        inits = {i.name: i for i in model.graph.initializer}
        weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                     and len(inits[n.input[0]].dims) == 4]
        assert weight_dq and all(inits[n.input[0]].data_type == TensorProto.INT8 for n in weight_dq)
        assert all(len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1 for n in weight_dq)  # per channel
        # the L2 norm and the head's output stay float: no Q/DQ after the fused head conv
        head = next(n for n in model.graph.node if n.op_type == "Conv" and "head/fc" in n.name)
        assert not [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == head.output[0]]
    # opset 17: float32 scales and float32 around the pairs, so no Cast anywhere (export/qdq.py)
    assert not [n for n in trt.graph.node if n.op_type == "Cast"]
    assert not [i for i in trt.graph.initializer if i.data_type == TensorProto.FLOAT16]
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 32)).astype(np.float32)
    for model in (trt, cpu):
        y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-3)


def test_calib_cache_is_reused(tiny_run: Path, exported: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    from export.pipeline import ExportConfig, run_export
    from export.source import load_source

    out, _ = exported
    cache = json.loads((out / "calib_cache.json").read_text())
    assert set(cache["encoders"]) == {"rgb", "ir"} and cache["method"] == "percentile"
    src = load_source(tiny_run / "best.pt")
    cfg = ExportConfig(tiny_run / "best.pt", tmp_path, int8=True, calib_images=48, calib_cache=out / "calib_cache.json")
    result = run_export(src, cfg)
    assert result.report["encoders"]["ir"]["int8"]["calibration"]["from_cache"] is True
