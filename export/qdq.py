"""int8 graphs from one set of calibrated ranges: one for ONNX Runtime on a CPU, one for TensorRT.

Both are explicit quantisation (QuantizeLinear/DequantizeLinear pairs) made by ONNX Runtime's QDQ
quantiser from OUR ranges (calib/; the quantiser's own calibrators are not used), with per-channel
symmetric int8 weights (axis 0 of every Conv weight). They differ where their consumers differ
(shared/DESIGN.md, measured facts):

- ``cpu`` (``*.int8-cpu.onnx``): uint8 asymmetric activations, the form ONNX Runtime's CPU kernels
  run fastest (u8s8 QLinearConv); float32 between the Q/DQ pairs; biases int32.
- ``trt`` (``*.int8.onnx``): symmetric int8 activations (zero point 0, what TensorRT accepts),
  Q/DQ on the inputs of Conv / MatMul and of the residual Adds as TensorRT's explicit-quantisation
  guide places them; float biases (TensorRT fuses them itself); then converted to fp16 around the
  pairs with reductions, the head's output and the L2 norms in float32 (`export.fp16`), since
  TensorRT 10+ builds strongly typed networks in the graph's own types.

The stripe-pooling MatMul and everything after the head conv are never quantised, so the head's
output and the L2 norm stay float. `exclude` adds node names to keep in float (first conv, last
block, head fc) when the measured accuracy asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from calib.ranges import TensorRange

from .fp16 import to_fp16
from .graph import head_nodes, name_nodes, toposort

__all__ = ["RECIPES", "QuantRecipe", "drop_qdq", "quantize"]


@dataclass(frozen=True)
class QuantRecipe:
    activations: str  # "uint8" | "int8"
    symmetric: bool
    op_types: tuple[str, ...]
    quantize_bias: bool
    fp16_around: bool
    purpose: str


RECIPES: dict[str, QuantRecipe] = {
    "cpu": QuantRecipe("uint8", False, ("Conv", "MatMul", "Add", "MaxPool", "Relu"), True, False,
                       "ONNX Runtime on a CPU: uint8 activations, per-channel int8 weights, fp32 around"),
    "trt": QuantRecipe("int8", True, ("Conv", "MatMul", "Add"), False, True,
                       "TensorRT: symmetric int8 Q/DQ, per-channel int8 weights, fp16 around, "
                       "reductions and L2 norm fp32"),
}


def _tensors_data(ranges: Mapping[str, TensorRange]) -> object:
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    data = {name: TensorData(lowest=np.float32(r.lo), highest=np.float32(r.hi)) for name, r in ranges.items()}
    return TensorsData(CalibrationMethod.MinMax, data)


def drop_qdq(model: onnx.ModelProto, tensor: str) -> None:
    """Remove the QuantizeLinear -> DequantizeLinear pair(s) on ``tensor``; consumers read it directly."""
    g = model.graph
    qs = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    dqs = [n for n in g.node if n.op_type == "DequantizeLinear" and any(n.input[0] == q.output[0] for q in qs)]
    gone = {dq.output[0] for dq in dqs}
    for n in g.node:
        n.input[:] = [tensor if i in gone else i for i in n.input]
    for n in [*qs, *dqs]:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:  # the pair's scale and zero point
        g.initializer.remove(init)


def quantize(model: onnx.ModelProto, ranges: Mapping[str, TensorRange], target: str, stripes: int,
             exclude: Iterable[str] = ()) -> onnx.ModelProto:
    """The ``target`` ("cpu" | "trt") int8 graph of fp32 ``model``; nodes in ``exclude`` stay float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    if target not in RECIPES:
        raise ValueError(f"int8 target {target!r} is invalid; valid: {', '.join(RECIPES)}")
    recipe = RECIPES[target]
    m = onnx.shape_inference.infer_shapes(model)
    name_nodes(m)
    roles = head_nodes(m, stripes)
    keep_float = sorted({*roles["pool"], *roles["tail"], *exclude})
    extra = {"ActivationSymmetric": recipe.symmetric, "WeightSymmetric": True,
             "QuantizeBias": recipe.quantize_bias, "DedicatedQDQPair": False}
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # the quantiser's advice
    quantizer = QDQQuantizer(
        m, True, False, QuantType.QInt8,
        QuantType.QUInt8 if recipe.activations == "uint8" else QuantType.QInt8,
        _tensors_data(ranges), None, keep_float, list(recipe.op_types), extra,
    )
    quantizer.quantize_model()
    out = quantizer.model.model
    for conv in roles["fc"]:  # the head's output stays float (ORT's Conv handler quantises outputs too)
        head = next(n for n in out.graph.node if n.name == conv)
        drop_qdq(out, head.output[0])
    name_nodes(out)
    toposort(out)
    if recipe.fp16_around:
        out = to_fp16(out, stripes)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    return out
