"""Q/DQ placement of the int8 graphs, walked node by node.

TensorRT (developer guide, "Q/DQ Layer-Placement Recommendations"; issue 16's bar): every Conv reads
its activation and weight through a DequantizeLinear; no QuantizeLinear on any Conv/Gemm output (a
downsample block's identity, the downsample conv's output, stays float); the identity input of every
other skip Add is quantised. ONNX Runtime on a
CPU: every backbone Conv is DQ -> Conv -> Q, the pattern its QLinearConv fusion needs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers_export import graph_maps as _maps
from helpers_export import randomise_bn
from onnx import TensorProto

from calib.activations import ActivationRunner
from calib.ranges import collect
from export.fuse import deploy_encoder
from export.graph import export_onnx
from export.qdq import placement_problems, quantize
from train.models import create_model


def _assert_trt_placement(model: onnx.ModelProto) -> int:
    """The TensorRT rule, checked here independently of export.qdq; returns the quantised residual inputs."""
    producer, _ = _maps(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(producer[c.input[0]].op_type == "DequantizeLinear" for c in convs)
    assert all(producer[c.input[1]].op_type == "DequantizeLinear" for c in convs)
    on_weighted = [q.name for q in model.graph.node if q.op_type == "QuantizeLinear" and q.input[0] in producer
                   and producer[q.input[0]].op_type in ("Conv", "Gemm")]
    assert on_weighted == []
    adds = [a for a in model.graph.node if a.op_type == "Add" and len(a.input) == 2 and all(i in producer for i in a.input)
            and "Conv" in {producer[i].op_type for i in a.input}]
    downsample = [a for a in adds if {producer[i].op_type for i in a.input} == {"Conv"}]
    identity = [a for a in adds if a not in downsample]
    assert downsample and identity
    # every plain skip connection: the main branch enters unquantised (fused), the identity through a DQ
    assert all(sorted(producer[i].op_type for i in a.input) == ["Conv", "DequantizeLinear"] for a in identity)
    return len(identity)


def test_every_exported_trt_graph_keeps_the_placement(exported: tuple[Path, subprocess.CompletedProcess[str]],
                                                      report: dict) -> None:
    out, _ = exported
    graphs = sorted(out.glob("*.int8.onnx"))
    assert [g.name for g in graphs] == ["ir.int8.onnx", "rgb.int8.onnx"]
    for path in graphs:
        model = onnx.load(path)
        assert _assert_trt_placement(model) == 5  # ResNet-18: 8 blocks, 3 of them open with a downsample
        assert placement_problems(model, "trt") == []
        assert not [n for n in model.graph.node if n.op_type == "Cast"]
    for m in ("rgb", "ir"):
        for target in ("cpu", "trt"):
            checks = {c["name"]: c for c in report["encoders"][m]["int8"][target]["graph"]}
            assert checks["Q/DQ placement"]["passed"], checks["Q/DQ placement"]


def test_every_exported_cpu_graph_feeds_qlinearconv(exported: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = exported
    for path in sorted(out.glob("*.int8-cpu.onnx")):
        model = onnx.load(path)
        producer, consumers = _maps(model)
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        backbone = [c for c in convs if "head" not in c.name]
        assert all(producer[c.input[k]].op_type == "DequantizeLinear" for c in backbone for k in (0, 1))
        assert backbone and all({r.op_type for r in consumers[c.output[0]]} == {"QuantizeLinear"} for c in backbone)
        head = [c for c in convs if c not in backbone]  # float, weights included: no DQ of a weight at run time
        assert head and all(c.input[1] not in producer for c in head)
        assert placement_problems(model, "cpu") == []
        assert placement_problems(model, "trt")  # ONNX Runtime's form quantises conv outputs: not TensorRT's


@pytest.fixture(scope="module")
def tiny_graphs() -> dict[int, tuple[onnx.ModelProto, dict]]:
    torch.manual_seed(0)
    model = create_model("dat_resnet18", embed_dim=16).eval()
    randomise_bn(model)
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 255, (4, 3, 64, 32)).astype(np.float32) for _ in range(2)]
    out = {}
    for opset in (17, 19):
        g = export_onnx(deploy_encoder(model, "rgb", 64, 32), 64, 32, model.embedding_dim, opset)
        out[opset] = (g, collect(ActivationRunner(g).outputs(batches), "percentile"))
    return out


def _cosines(a: onnx.ModelProto, b: onnx.ModelProto) -> np.ndarray:
    x = np.random.default_rng(1).uniform(0, 255, (4, 3, 64, 32)).astype(np.float32)
    ya, yb = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
              for m in (a, b))
    return (ya * yb).sum(1) / np.linalg.norm(ya, axis=1) / np.linalg.norm(yb, axis=1)


def test_opset19_trt_graph_has_fp16_scales_and_no_cast_before_a_layer(tiny_graphs: dict) -> None:
    g, ranges = tiny_graphs[19]
    q = quantize(g, ranges, "trt", 3)
    _, consumers = _maps(q)
    inits = {i.name: i for i in q.graph.initializer}
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs and all(inits[n.input[1]].data_type == TensorProto.FLOAT16 for n in dqs)  # opset 19: fp16 scales
    assert all(consumers[n.output[0]][0].op_type != "Cast" for n in dqs)
    assert _assert_trt_placement(q) == 5 and placement_problems(q, "trt") == []
    assert _cosines(g, q).min() > 0.99


def test_opset17_trt_graph_is_float32_around_and_close_to_fp32(tiny_graphs: dict) -> None:
    g, ranges = tiny_graphs[17]
    q = quantize(g, ranges, "trt", 3)
    inits = {i.name: i for i in q.graph.initializer}
    scales = [inits[n.input[1]] for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and all(s.data_type == TensorProto.FLOAT for s in scales)
    assert _cosines(g, q).min() > 0.99


def test_excluded_layers_stay_float_and_lose_their_residual_quantizer(tiny_graphs: dict) -> None:
    g, ranges = tiny_graphs[17]
    last = [n.name for n in g.graph.node if "/layer4/layer4.1/" in n.name]
    q = quantize(g, ranges, "trt", 3, exclude=last)
    producer, _ = _maps(q)
    kept = [n for n in q.graph.node if n.name in last and n.op_type in ("Conv", "Add")]
    assert kept and all(producer[i].op_type != "DequantizeLinear" for n in kept for i in n.input if i in producer)
    problems = placement_problems(q, "trt")  # the rule reports exactly the float convs, nothing else
    assert len(problems) == 2 * sum(n.op_type == "Conv" for n in kept)
    assert all(any(name in p for name in last) for p in problems)


def test_report_exempts_only_the_layers_the_accuracy_search_kept_float(tiny_graphs: dict) -> None:
    from export.pipeline import _placement_check

    g, ranges = tiny_graphs[17]
    first = [n.name for n in g.graph.node if n.op_type == "Conv"][:1]
    for target in ("trt", "cpu"):
        q = quantize(g, ranges, target, 3, exclude=first)
        assert not _placement_check(q, target).passed  # a float conv breaks the rule ...
        check = _placement_check(q, target, first)  # ... unless the search chose to keep it float
        assert check.passed and "1 layer(s) kept float" in check.detail
        other = [n.name for n in g.graph.node if n.op_type == "Conv"][1:2]
        assert not _placement_check(q, target, other).passed  # exempting another layer does not hide it
