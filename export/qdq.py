"""int8 graphs from one set of calibrated ranges: one for ONNX Runtime on a CPU, one for TensorRT.

Both are explicit quantisation (QuantizeLinear/DequantizeLinear pairs) made from OUR ranges (calib/),
with per-channel symmetric int8 weights (axis 0 of every Conv weight). They differ where their
consumers differ (shared/DESIGN.md, measured facts; figures in docs/export.md):

- ``trt`` (``*.int8.onnx``), placed as TensorRT's developer guide recommends ("Q/DQ Layer-Placement
  Recommendations", explicit quantization; NVIDIA's pytorch-quantization ResNet example
  ``residual_quantizer``): Q/DQ on the activation input and the weights of every Conv/Gemm, and on the
  residual (identity) input of each skip-connection Add whose other input is a quantised Conv's output;
  never on the output of a weighted layer, so TensorRT fuses Conv+Add+ReLU with int8 in and out. A
  downsample block's identity is its downsample conv's output, so it stays float (NVIDIA's example
  quantises it; the guide's "outputs of weighted layers" rule, which issue 16 made the bar, does not).
  Inverted-residual (MBConv, EfficientNet-Lite) blocks: a projection conv's output is quantised because
  the next block's expansion conv reads it (the Q is that reader's; TensorRT fuses it into the
  producer's int8 output), and each skip Add's identity reads that same pair; ReLU6 (Clip) stays
  adjacent to its conv, the Q after it, so TensorRT fuses Conv+Clip into one int8 layer; TensorFlow
  "same" padding is folded into the Conv (`export.graph.fold_pads`), so no Pad sits between a DQ and
  its conv. Symmetric int8 activations (zero point 0, the only form TensorRT accepts), float biases
  (TensorRT quantises them itself). No Cast between a DequantizeLinear and its layer:
    * opset <= 18 (default 17, what TensorRT 8.5/8.6 parse): scales float32 (the only scale type
      before opset 19, and TensorRT 8.6's Dequantize operator takes float32 scales only), the graph
      float32 around the pairs. Weakly typed TensorRT 8.x runs the float layers in fp16 through the
      FP16 builder flag (TensorRT issue 3095); strongly typed 10.x runs them as typed, fp32;
    * opset >= 19 (TensorRT 10+; "opset 19 is the first to support fp16 scales in Q/DQ nodes",
      Model-Optimizer PR 809): float16 scales, so each DequantizeLinear yields float16 straight into its
      layer; fp16 around, the pooling, head output and L2 norms float32 (`export.fp16`).
- ``cpu`` (``*.int8-cpu.onnx``): uint8 asymmetric activations and int32 biases, the form ONNX Runtime's
  CPU kernels run fastest. ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv only when the Conv's
  output is quantised too (ReLU / ReLU6 folded into that Q's range), so this graph keeps ONNX Runtime's own QDQ
  placement (its quantiser, fed our ranges); the TensorRT placement was measured slower here. The
  head's fc conv stays float with float weights: its output (the embedding) is float in any case, and a
  float Conv reading DQ'd int8 weights makes ONNX Runtime dequantise them on every run (it folds no
  weight DequantizeLinear); Shape nodes read quantised tensors, not DQ copies made only for them. Measured
  (bench/backbone_table.py, 2 cores, ONNX Runtime 1.32, batch 1) and kept as ONNX Runtime's own: int8
  weights (uint8 weights: 2.4x slower), per-channel depthwise weights (per-tensor: no faster), QDQ (the
  QOperator format runs the same kernels), depthwise convs int8 (float ones are no faster in ONNX
  Runtime's float kernels, and ONNX Runtime re-quantises a float conv between DQ and Q itself, per
  tensor, 2x slower).

The stripe-pooling MatMul and everything after the head conv are never quantised, so the head's
output and the L2 norm stay float (in the ``cpu`` graph, the head conv too). ``exclude`` adds node names to keep in float (first conv, last
block, head fc) when the measured accuracy asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from calib.ranges import TensorRange

from .fp16 import to_fp16
from .graph import head_nodes, name_nodes, toposort

__all__ = ["FP16_SCALE_OPSET", "RECIPES", "QuantRecipe", "drop_qdq", "opset_of", "placement_problems", "quantize", "residual_inputs",
           "weighted_nodes", "with_placement"]

#: First opset whose QuantizeLinear/DequantizeLinear take float16 scales (and float16 activations).
FP16_SCALE_OPSET = 19
WEIGHTED_OPS = ("Conv", "Gemm")


@dataclass(frozen=True)
class QuantRecipe:
    activations: str  # "uint8" | "int8"
    placement: str  # "weighted-inputs" (TensorRT's guide) | "onnxruntime" (its QDQ quantiser)
    purpose: str


RECIPES: dict[str, QuantRecipe] = {
    "cpu": QuantRecipe("uint8", "onnxruntime",
                       "ONNX Runtime on a CPU: uint8 activations, per-channel int8 weights, fp32 around"),
    "trt": QuantRecipe("int8", "weighted-inputs",
                       "TensorRT: symmetric int8 Q/DQ on Conv inputs and residual inputs, per-channel int8 "
                       "weights; float around (fp16 from opset 19), reductions and L2 norm fp32"),
}


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# -- placement (graph walks) ----------------------------------------------------------------------
def weighted_nodes(model: onnx.ModelProto, keep_float: Iterable[str] = ()) -> list[onnx.NodeProto]:
    """Conv/Gemm nodes with an initializer weight that are not kept in float."""
    inits = {i.name for i in model.graph.initializer}
    skip = set(keep_float)
    return [n for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and n.name not in skip and len(n.input) > 1 and n.input[1] in inits]


def _depths(model: onnx.ModelProto) -> dict[str, int]:
    """Longest path (in nodes) from the graph input to each tensor; the graph is topologically sorted."""
    depth = {i.name: 0 for i in model.graph.input}
    for n in model.graph.node:
        d = 1 + max((depth.get(i, 0) for i in n.input if i), default=0)
        depth.update({o: d for o in n.output})
    return depth


def residual_inputs(model: onnx.ModelProto, quantized: set[str]) -> list[tuple[str, int]]:
    """(Add node name, input index) of each skip connection's identity input.

    A residual Add has two activation inputs; the main branch is the deeper one (it went through the
    block's convolutions) and is fused into its Conv by TensorRT when that Conv (in ``quantized``) is
    int8. The other, shallower input is the identity: the block input (quantised), or the downsample
    conv's output (left float: never a Q on a weighted layer's output that only the Add reads). In an
    inverted-residual (MBConv) block the identity is the previous block's projection conv output, which
    is quantised anyway because the block's own expansion conv reads it: the Add reads that same pair.
    """
    g = model.graph
    inits = {i.name for i in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}
    producer = {o: n for n in g.node for o in n.output}
    depth = _depths(model)
    conv_inputs = {n.input[0] for n in g.node if n.name in quantized}  # quantised in any case
    out = []
    for n in g.node:
        if n.op_type != "Add" or len(n.input) != 2 or any(i in inits for i in n.input):
            continue
        main = max((0, 1), key=lambda k: depth.get(n.input[k], 0))
        src = producer.get(n.input[main])
        identity = producer.get(n.input[1 - main])
        if identity is not None and identity.op_type in WEIGHTED_OPS and n.input[1 - main] not in conv_inputs:
            # A downsample block: its identity is the downsample conv's output. NVIDIA's ResNet example
            # quantises it; the placement rule ("do not quantize the outputs of weighted layers",
            # issue 16's bar) does not, and TensorRT then fuses the main conv + Add with a float
            # residual and picks that conv's output format itself.
            continue
        if src is not None and src.op_type in WEIGHTED_OPS and src.name in quantized:
            out.append((n.name, 1 - main))
    return out


# -- scales ---------------------------------------------------------------------------------------
def _activation_qparams(r: TensorRange, dtype: str) -> tuple[float, int]:
    if dtype == "int8":  # symmetric: TensorRT's form
        return max(r.absmax, 1e-8) / 127.0, 0
    lo, hi = min(r.lo, 0.0), max(r.hi, 0.0)  # the range must hold 0 exactly (zero padding)
    scale = max(hi - lo, 1e-8) / 255.0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def _weight_qparams(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric int8 (narrow range [-127, 127]) along ``axis``: (int8 weights, scales)."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=other) if other else np.abs(w)
    # A scale must stay positive once stored as float16 (opset 19+): no smaller than its least subnormal.
    scale = np.where(amax > 0, np.maximum(amax / 127.0, 2.0**-23), 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


# -- insertion ------------------------------------------------------------------------------------
class _Inserter:
    """Adds Q/DQ pairs to a graph; one shared pair per activation tensor (TensorRT's guide)."""

    def __init__(self, model: onnx.ModelProto, ranges: Mapping[str, TensorRange], activations: str) -> None:
        self.g, self.ranges, self.act = model.graph, ranges, activations
        self.inits = {i.name: i for i in self.g.initializer}
        self.nodes: list[onnx.NodeProto] = []
        self.act_scale: dict[str, float] = {}
        self.dq_of: dict[str, str] = {}

    def _init(self, name: str, array: np.ndarray) -> str:
        self.g.initializer.append(numpy_helper.from_array(array, name))
        return name

    def activation(self, tensor: str) -> str:
        """The dequantised copy of ``tensor`` (made once)."""
        if tensor in self.dq_of:
            return self.dq_of[tensor]
        if tensor not in self.ranges:
            raise ValueError(f"no calibrated range for tensor {tensor!r}; recalibrate (delete the range cache)")
        scale, zp = _activation_qparams(self.ranges[tensor], self.act)
        zdtype = np.int8 if self.act == "int8" else np.uint8
        s = self._init(f"{tensor}_scale", np.array(scale, np.float32))
        z = self._init(f"{tensor}_zero_point", np.array(zp, zdtype))
        self.nodes += [helper.make_node("QuantizeLinear", [tensor, s, z], [f"{tensor}_quantized"], name=f"{tensor}_Q"),
                       helper.make_node("DequantizeLinear", [f"{tensor}_quantized", s, z], [f"{tensor}_dequantized"],
                                        name=f"{tensor}_DQ")]
        self.act_scale[tensor] = scale
        self.dq_of[tensor] = f"{tensor}_dequantized"
        return self.dq_of[tensor]

    def weight(self, node: onnx.NodeProto, activation: str | None) -> None:
        """Replace ``node``'s float weight by int8 + DQ; its bias by int32 + DQ when the scale of its
        input ``activation`` is given (ONNX Runtime's QLinearConv wants an int32 bias; TensorRT a float one)."""
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 1 if node.op_type == "Gemm" and not trans_b else 0  # the output-channel axis
        name = node.input[1]
        q, scale = _weight_qparams(numpy_helper.to_array(self.inits[name]), axis)
        qn, sn = self._init(f"{name}_quantized", q), self._init(f"{name}_scale", scale)
        zn = self._init(f"{name}_zero_point", np.zeros_like(scale, np.int8))
        self.nodes.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [f"{name}_dequantized"],
                                           name=f"{name}_DQ", axis=axis))
        node.input[1] = f"{name}_dequantized"
        if activation is not None and len(node.input) > 2 and node.input[2] in self.inits:
            b = node.input[2]
            bscale = (self.act_scale[activation] * scale).astype(np.float32)
            bq = np.round(numpy_helper.to_array(self.inits[b]) / bscale).astype(np.int32)
            bqn, bsn = self._init(f"{b}_quantized", bq), self._init(f"{b}_scale", bscale)
            self.nodes.append(helper.make_node("DequantizeLinear", [bqn, bsn], [f"{b}_dequantized"],
                                               name=f"{b}_DQ", axis=0))
            node.input[2] = f"{b}_dequantized"

    def finish(self) -> None:
        self.g.node.extend(self.nodes)
        used = {i for n in self.g.node for i in n.input}
        for init in [i for i in self.g.initializer if i.name not in used]:  # float weights now quantised
            self.g.initializer.remove(init)


def _weighted_inputs(model: onnx.ModelProto, ranges: Mapping[str, TensorRange], keep_float: set[str],
                     recipe: QuantRecipe) -> onnx.ModelProto:
    """TensorRT's placement: Conv/Gemm inputs and weights, and the residual inputs of skip connections."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    weighted = weighted_nodes(m, keep_float)
    residual = residual_inputs(m, {n.name for n in weighted})
    ins = _Inserter(m, ranges, recipe.activations)
    for node in weighted:
        x = node.input[0]
        node.input[0] = ins.activation(x)
        ins.weight(node, x if recipe.activations == "uint8" else None)
    by_name = {n.name: n for n in m.graph.node}
    for add, k in residual:
        by_name[add].input[k] = ins.activation(by_name[add].input[k])
    ins.finish()
    return m


def _tensors_data(ranges: Mapping[str, TensorRange]) -> object:
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    data = {name: TensorData(lowest=np.float32(r.lo), highest=np.float32(r.hi)) for name, r in ranges.items()}
    return TensorsData(CalibrationMethod.MinMax, data)


def _onnxruntime_qdq(model: onnx.ModelProto, ranges: Mapping[str, TensorRange], keep_float: list[str],
                     fc: list[str], recipe: QuantRecipe) -> onnx.ModelProto:
    """ONNX Runtime's QDQ quantiser with our ranges: Conv/MatMul/Add/MaxPool/ReLU/Clip, outputs quantised.

    Relu and Clip (ReLU6, EfficientNet-Lite) after a quantised Conv are removed by the quantiser: the
    Conv's output Q takes the activation's range (uint8, low end 0), so DQ -> Conv -> Q fuses into
    QLinearConv; a Clip left between Conv and Q would keep every conv of a ReLU6 network in float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    symmetric = recipe.activations == "int8"
    extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": not symmetric,
             "DedicatedQDQPair": False}
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # the quantiser's advice
    quantizer = QDQQuantizer(
        model, True, False, QuantType.QInt8, QuantType.QInt8 if symmetric else QuantType.QUInt8,
        _tensors_data(ranges), None, keep_float, ["Conv", "MatMul", "Add", "MaxPool", "Relu", "Clip"], extra,
    )
    quantizer.quantize_model()
    out: onnx.ModelProto = quantizer.model.model
    for conv in fc:  # the head's output stays float (ORT's Conv handler quantises outputs too)
        head = next(n for n in out.graph.node if n.name == conv)
        drop_qdq(out, head.output[0])
    _shapes_read_quantized(out)
    return out


def _shapes_read_quantized(model: onnx.ModelProto) -> None:
    """Shape nodes read the quantised tensor, not its DequantizeLinear copy (the same shape).

    The head's ``reshape(b, c, -1)`` reads the last feature map's shape; left on the DQ output, ONNX
    Runtime moves the Reshape into the quantised domain but keeps that DQ alive for the Shape alone,
    dequantising the whole last feature map (1280 x 16 x 8 floats for EfficientNet-Lite0 at 256x128)
    on every run only to read its dimensions."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        src = producer.get(n.input[0]) if n.op_type == "Shape" else None
        if src is not None and src.op_type == "DequantizeLinear":
            n.input[0] = src.input[0]


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
             exclude: Iterable[str] = (), recipe: QuantRecipe | None = None) -> onnx.ModelProto:
    """The ``target`` ("cpu" | "trt") int8 graph of fp32 ``model``; nodes in ``exclude`` stay float.

    ``recipe`` replaces the target's recipe (bench/int8_speed.py measures the placements against each other).
    """
    if target not in RECIPES:
        raise ValueError(f"int8 target {target!r} is invalid; valid: {', '.join(RECIPES)}")
    recipe = recipe or RECIPES[target]
    m = onnx.shape_inference.infer_shapes(model)
    name_nodes(m)
    toposort(m)
    roles = head_nodes(m, stripes)
    keep_float = sorted({*roles["pool"], *roles["tail"], *exclude})
    if recipe.placement == "onnxruntime":
        # The head's fc stays float, weights included: its output is float anyway (the embedding), and
        # ONNX Runtime runs a float Conv on DQ'd int8 weights by dequantising them on every run (it folds
        # no DequantizeLinear of a weight): 1536 x 427 weights for Lite0, 0.45 ms of a 2.5 ms run at batch 1.
        out = _onnxruntime_qdq(m, ranges, sorted({*keep_float, *roles["fc"]}), [], recipe)
    else:
        out = _weighted_inputs(m, ranges, set(keep_float), recipe)
    _drop_unread_constants(out)
    del out.graph.value_info[:]  # stale float annotations of tensors that now hold int8
    name_nodes(out)
    toposort(out)
    if target == "trt" and opset_of(out) >= FP16_SCALE_OPSET:
        out = to_fp16(out, stripes)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    return out


def _drop_unread_constants(model: onnx.ModelProto) -> None:
    """Constant nodes nothing reads any more (the min/max of a Clip the quantiser removed)."""
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for n in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        model.graph.node.remove(n)


def with_placement(target: str, placement: str) -> QuantRecipe:
    """``target``'s recipe with another placement (for measuring one against the other)."""
    return replace(RECIPES[target], placement=placement)



def placement_problems(model: onnx.ModelProto, target: str, kept_float: Iterable[str] = ()) -> list[str]:
    """Where an int8 graph breaks its target's placement rule (empty when it keeps it); the layers named
    in ``kept_float`` (left float on purpose, e.g. by the export's accuracy search) are not checked.

    Both: every Conv reads its activation and its weight through a DequantizeLinear (nothing, not
    even a Cast, in between: TensorRT and ONNX Runtime fuse DQ -> Conv only when adjacent).
    ``trt``: no QuantizeLinear on a Conv/Gemm output, not even a downsample block's identity branch
    (issue 16's bar; NVIDIA's ``residual_quantizer`` would quantise that one), unless another quantised
    Conv/Gemm reads it as its input (an MBConv projection conv feeds the next block's expansion conv:
    the Q belongs to the reader, and TensorRT fuses it into the producer's int8 output); no activation
    (Clip = ReLU6, Relu) reading a DequantizeLinear (Conv -> Clip must stay adjacent for TensorRT's
    Conv+Clip fusion; the Q/DQ goes after the Clip); no Pad between a DequantizeLinear and its Conv (TF
    "same" pads are folded into the Conv, `export.graph.fold_pads`). ``cpu``: every Conv but the head's
    feeds QuantizeLinear nodes only (ONNX Runtime's QLinearConv needs the output Q); the head's convs
    (``/head/``) are float, weights included, read straight from float initializers.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    problems = []
    exempt = set(kept_float)
    inits = {i.name for i in g.initializer}
    for conv in (n for n in g.node if n.op_type == "Conv" and n.name not in exempt):
        if target == "cpu" and conv.name.startswith("/head/"):
            src = producer.get(conv.input[1])
            if (src is not None and src.op_type == "DequantizeLinear") or conv.input[1] not in inits:
                problems.append(f"Conv {conv.name}: the head's float conv reads its weight from "
                                f"{src.op_type if src else conv.input[1]}, not a float initializer (ONNX Runtime "
                                f"would dequantise the weight on every run)")
            continue
        for k, what in ((0, "activation"), (1, "weight")):
            src = producer.get(conv.input[k])
            if src is None or src.op_type != "DequantizeLinear":
                problems.append(f"Conv {conv.name}: {what} input from {src.op_type if src else 'an initializer'}, "
                                f"not a DequantizeLinear" + (" (fold the Pad into the Conv, or put the Q/DQ before it)"
                                                              if src is not None and src.op_type == "Pad" else ""))
        outs = consumers.get(conv.output[0], [])
        if target == "cpu" and not conv.name.startswith("/head/") and any(c.op_type != "QuantizeLinear" for c in outs):
            problems.append(f"Conv {conv.name}: output read by {[c.op_type for c in outs]}, not only QuantizeLinear")
    if target == "trt":
        for act in (n for n in g.node if n.op_type in ("Clip", "Relu") and n.name not in exempt):
            src = producer.get(act.input[0])
            if src is not None and src.op_type == "DequantizeLinear":
                problems.append(f"{act.op_type} {act.name} reads a DequantizeLinear: Q/DQ between a Conv and its "
                                f"activation stops TensorRT's Conv+{act.op_type} fusion")
        for q in (n for n in g.node if n.op_type == "QuantizeLinear"):
            src = producer.get(q.input[0])
            if src is not None and src.op_type in WEIGHTED_OPS and src.name not in exempt:
                dq_out = {dq.output[0] for dq in consumers.get(q.output[0], [])}
                read = [c for t in dq_out for c in consumers.get(t, [])]
                if any(c.op_type in WEIGHTED_OPS and c.name not in exempt and c.input[0] in dq_out for c in read):
                    continue  # the input Q of a quantised weighted layer (MBConv: projection -> expansion conv)
                readers = [c.op_type for c in read]
                problems.append(f"QuantizeLinear on the output of {src.op_type} {src.name} (read by {readers}): "
                                f"TensorRT's placement quantises weighted layers' inputs, never their outputs")
    return problems
