"""fp16 graphs: weights and activations in float16, reductions and the L2 norms kept in float32.

Our own small converter rather than `onnxruntime.transformers.float16`: that one round-trips the
output of every blocked node through float16 (Cast to fp16 then back to fp32 between two fp32
nodes), which would put the L2 norm's inputs through fp16 after all. Here each node is in one
region, fp16 or fp32; a float tensor crossing regions gets exactly one Cast per direction, and
float initializers / Constant nodes are stored in their consumers' type.

Stays float32 (shared/DESIGN.md "Precision lives in the ONNX graph"):
- the stripe-pooling MatMul (a mean over h·w values; fp16 accumulation loses bits),
- everything after the fused head conv: the reshapes and both L2 normalisations (a ReduceL2 of a
  wide vector can overflow fp16's 65504, and the norm divides by it),
- every node of the op types in `FP32_OPS` (reductions; below opset 19 also Quantize/DequantizeLinear,
  whose scales and float side are float32 only before opset 19).

Input ``images`` and output ``embeddings`` stay float32, so every consumer feeds the same raw 0-255
float32 pixels whatever the precision.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graph import head_nodes, name_nodes, toposort

__all__ = ["FP32_OPS", "fp32_nodes", "to_fp16"]

FP32_OPS = frozenset({"ReduceL2", "ReduceMean", "ReduceSum", "QuantizeLinear", "DequantizeLinear"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Ops that read only their input's shape: no Cast needed whatever the input type.
SHAPE_ONLY = frozenset({"Shape"})
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    vis = [*g.value_info, *g.input, *g.output]
    names = {v.name for v in vis if v.type.tensor_type.elem_type == F32}
    names |= {i.name for i in g.initializer if i.data_type == F32}
    names |= {n.output[0] for n in g.node if n.op_type == "Constant" and n.attribute[0].t.data_type == F32}
    return names


def to_fp16(model: onnx.ModelProto, stripes: int, keep_fp32: Iterable[str] = ()) -> onnx.ModelProto:
    """A float16 copy of ``model`` (float32 I/O); nodes named in ``keep_fp32`` also stay float32."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    name_nodes(m)
    g = m.graph
    floats = _float_tensors(m)
    roles = head_nodes(m, stripes)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    ops = FP32_OPS if opset < 19 else FP32_OPS - QDQ_OPS  # opset 19 gave Q/DQ float16 scales
    fp32 = {*roles["pool"], *roles["tail"], *keep_fp32} | {n.name for n in g.node if n.op_type in ops}
    region = {i.name: F32 for i in g.input}  # type each float tensor is stored in
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, set[int]] = {}
    for n in g.node:
        want = F32 if n.name in fp32 else F16
        for i in n.input:
            if i in inits and i in floats:
                consumers.setdefault(i, set()).add(want)
        if n.op_type == "Constant" and n.output[0] in floats and want == F16:
            t = n.attribute[0].t
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
        for o in n.output:
            if o in floats:
                region[o] = want
    for name, types in consumers.items():  # initializers: stored in the type their consumers want
        region[name] = F16 if types == {F16} else F32
        if region[name] == F16:
            inits[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype(np.float16), name))
    casts: dict[tuple[str, int], str] = {}
    new_nodes = []
    for n in g.node:
        want = F32 if n.name in fp32 else F16
        for k, i in enumerate(n.input):
            if i in floats and region.get(i, want) != want and n.op_type not in SHAPE_ONLY:
                key = (i, want)
                if key not in casts:
                    casts[key] = f"{i}_to_{'fp32' if want == F32 else 'fp16'}"
                    new_nodes.append(helper.make_node("Cast", [i], [casts[key]], name=f"{casts[key]}_cast", to=want))
                n.input[k] = casts[key]
    out = g.output[0].name
    if region.get(out) == F16:  # the output stays float32
        for n in g.node:
            n.output[:] = [f"{out}_fp16" if o == out else o for o in n.output]
            n.input[:] = [f"{out}_fp16" if i == out else i for i in n.input]
        new_nodes.append(helper.make_node("Cast", [f"{out}_fp16"], [out], name=f"{out}_cast", to=F32))
    g.node.extend(new_nodes)
    for vi in list(g.value_info):  # stale float32 annotations would contradict the new types
        g.value_info.remove(vi)
    toposort(m)
    return m


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes of a converted graph whose float outputs are float32 (Casts excluded)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    return [n.name for n in inferred.graph.node if n.op_type != "Cast" and any(types.get(o) == F32 for o in n.output)]
