"""An export with the fixed shape descriptor (--shape-weight): one graph, the descriptor in float32 in
every precision, polarity-blind after export too, and the graph contract still checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[2]
LEARNED = 3 * 32  # stripes x embed_dim of helpers_export.make_checkpoint
SHAPE = 9 * 4 * 36  # 64x32 input, 6-pixel cells: (62 // 6 - 1) x (30 // 6 - 1) blocks x 4 cells x 9 bins


@pytest.fixture(scope="module")
def shaped(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shape") / "export"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "export.onnx", "--checkpoint", str(tiny_run / "best.pt"),
                           "--shape-weight", "0.6", "--fp16", "--int8", "--calib-images", "48", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


def test_the_report_passes_with_the_joined_width(shaped: Path) -> None:
    report = json.loads((shaped / "report.json").read_text())
    spec = json.loads((shaped / "spec.json").read_text())
    for m in ("rgb", "ir"):
        checks = {c["name"]: c for c in report["encoders"][m]["graph"]}
        assert checks["output"]["passed"] and f"[N,{LEARNED + SHAPE}]" in checks["output"]["detail"]
        assert checks["normalisation inside, once"]["passed"] and checks["stripe head fused"]["passed"]
    assert {s["embedding_dim"] for s in spec["encoders"].values()} == {LEARNED + SHAPE}


def test_the_descriptor_stays_float32_in_every_precision_and_blind_to_polarity(shaped: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.random((4, 1, 64, 32)).astype(np.float32) * 255
    x = np.ascontiguousarray(np.repeat(np.concatenate([grey, 255 - grey]), 3, axis=1))  # 4 images, 4 negatives
    ref = _run(shaped / "ir.onnx", x)
    assert ref.shape == (8, LEARNED + SHAPE)
    shape = ref[:, LEARNED:] / np.sqrt(0.6)
    np.testing.assert_allclose(np.linalg.norm(shape, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(shape[:4], shape[4:], atol=1e-5)  # a negative has the same descriptor
    for name in ("ir.fp16.onnx", "ir.int8.onnx", "ir.int8-cpu.onnx"):
        out = _run(shaped / name, x)
        # fp16 normalises the input in fp16 before the descriptor's float32 (1e-5 here); int8: exact
        np.testing.assert_allclose(out[:, LEARNED:], ref[:, LEARNED:], atol=5e-5 if "fp16" in name else 2e-6,
                                   err_msg=name)
        graph = onnx.load(str(shaped / name)).graph
        nodes = [n for n in graph.node if n.name.startswith("/shape/")]
        assert nodes, name
        made_by_qdq = {o for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for o in n.output}
        cast_to_half = {o for n in graph.node if n.op_type == "Cast"
                        and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in n.attribute) for o in n.output}
        assert not any(i in made_by_qdq | cast_to_half for n in nodes for i in n.input), name


# ONNX op -> the TensorRT layer kind its ONNX parser makes (the ops these graphs hold)
_TRT_KIND = {"Conv": "CONVOLUTION", "Relu": "ACTIVATION", "Clip": "ACTIVATION", "Add": "ELEMENTWISE",
             "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Div": "ELEMENTWISE", "Pow": "ELEMENTWISE",
             "Min": "ELEMENTWISE", "Max": "ELEMENTWISE", "Sqrt": "UNARY", "ReduceMean": "REDUCE",
             "ReduceSum": "REDUCE", "ReduceL2": "REDUCE", "AveragePool": "POOLING", "MaxPool": "POOLING",
             "GlobalAveragePool": "REDUCE", "Concat": "CONCATENATION", "Slice": "SLICE", "Expand": "SLICE",
             "MatMul": "MATRIX_MULTIPLY", "Reshape": "SHUFFLE", "Flatten": "SHUFFLE", "Transpose": "SHUFFLE",
             "Unsqueeze": "SHUFFLE", "Squeeze": "SHUFFLE", "Constant": "CONSTANT", "Shape": "SHAPE",
             "Gather": "GATHER", "Cast": "CAST"}


def test_a_weakly_typed_fp16_build_would_pin_the_whole_descriptor_to_fp32(shaped: Path) -> None:
    """runtime.trt_compat.fp32_layer_indices on the exported graph's layers (ONNX ops mapped to the
    layer kinds TensorRT's parser makes; TensorRT itself is not here): every math node of the
    descriptor is pinned, no conv of the backbone is."""
    from runtime import trt_compat as tc

    graph = onnx.load(str(shaped / "ir.onnx")).graph
    unknown = {n.op_type for n in graph.node} - set(_TRT_KIND)
    assert not unknown, f"map these ops to TensorRT layer kinds: {unknown}"
    layers = [tc.LayerView(_TRT_KIND[n.op_type], tuple(n.input), tuple(n.output), n.op_type not in ("Shape",))
              for n in graph.node]
    pinned = {graph.node[i].name for i in tc.fp32_layer_indices(layers)}
    shape = [n for n in graph.node if n.name.startswith("/shape/") and n.op_type not in ("Constant", "Cast", "Shape")]
    assert shape and all(n.name in pinned for n in shape), sorted({n.name for n in shape} - pinned)[:5]
    assert not any(n.op_type == "Conv" and n.name in pinned for n in graph.node if "/head/" not in n.name)
