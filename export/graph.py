"""torch -> ONNX, and the graph contract checked by walking the graph.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. Measured in torch 2.14.1 on
the fused ResNet-18 encoder: both exporters give the same graph numerically (max |diff| 2.6e-7 to
PyTorch), but the dynamo exporter cannot emit opset 17 (it exports opset 18 and its down-conversion
fails on ReduceL2's axes input, so TensorRT 8.5's opset-17 parser would be unusable), takes ~5x
longer (20 s vs 4 s) and prints pages of progress. The legacy exporter takes ``opset_version``
literally and is what TensorRT's own samples use.

Contract (shared/DESIGN.md "Export"): input ``images`` float32 [N, 3, H, W] (N dynamic, H/W static),
output ``embeddings`` float32 [N, D]; one output only; no BatchNormalization left; the stripe head as
one grouped Conv (group = stripes) after one pooling MatMul; nothing of the classifiers or domain
heads (no initializer of their shapes, no Gemm).
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "Check", "check_io", "check_structure", "export_onnx", "flush_denormals",
           "fold_pads", "op_counts"]

INPUT_NAME, OUTPUT_NAME = "images", "embeddings"


@dataclass(frozen=True)
class Check:
    """One verified property of an export; the report lists every one."""

    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def export_onnx(module: torch.nn.Module, height: int, width: int, dim: int, opset: int) -> onnx.ModelProto:
    """Trace ``module`` (raw images -> embeddings (N, dim)) to an ONNX model with a dynamic batch."""
    x = torch.rand(2, 3, height, width) * 255.0  # (N, 3, H, W) raw pixels; batch 2 keeps N symbolic
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            module.eval(), (x,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamo=False, do_constant_folding=True,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    model = onnx.load_from_string(buf.getvalue())
    # The tracer leaves the embedding width symbolic (it comes out of a Div); it is static: say so.
    out_dim = model.graph.output[0].type.tensor_type.shape.dim[1]
    out_dim.Clear()
    out_dim.dim_value = dim
    inline_identities(model)
    fold_pads(model)
    flush_denormals(model)
    name_nodes(model)
    model.producer_name = "irreid-edge export.onnx"
    return model


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node))


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in value_info.type.tensor_type.shape.dim]


def check_io(model: onnx.ModelProto, height: int, width: int, dim: int) -> list[Check]:
    """Input/output names, types and shapes; the onnx checker's full check."""
    g = model.graph
    checks: list[Check] = []
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    ok_in = (len(inputs) == 1 and inputs[0].name == INPUT_NAME
             and inputs[0].type.tensor_type.elem_type == TensorProto.FLOAT)
    in_dims = _dims(inputs[0]) if inputs else []
    ok_in = ok_in and len(in_dims) == 4 and isinstance(in_dims[0], str) and in_dims[1:] == [3, height, width]
    checks.append(Check("input", ok_in, f"{[i.name for i in inputs]} float32 {in_dims} (want images [N,3,{height},{width}], N dynamic)"))
    out_dims = _dims(g.output[0]) if g.output else []
    ok_out = (len(g.output) == 1 and g.output[0].name == OUTPUT_NAME
              and g.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
              and len(out_dims) == 2 and isinstance(out_dims[0], str) and out_dims[1] == dim)
    checks.append(Check("output", ok_out, f"{[o.name for o in g.output]} {out_dims} (want one output embeddings [N,{dim}])"))
    try:
        onnx.checker.check_model(model, full_check=True)
        checks.append(Check("onnx.checker", True, "full check passed"))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        checks.append(Check("onnx.checker", False, str(e).splitlines()[0]))
    return checks


def check_structure(model: onnx.ModelProto, stripes: int, forbidden_shapes: Iterable[tuple[int, ...]]) -> list[Check]:
    """Fusion and stripping of the fp32 graph, by walking its nodes and initializers."""
    ops = op_counts(model)
    checks = [Check("batchnorm folded", ops.get("BatchNormalization", 0) == 0,
                    f"{ops.get('BatchNormalization', 0)} BatchNormalization nodes")]
    grouped = [n for n in model.graph.node if n.op_type == "Conv"
               and any(a.name == "group" and a.i == stripes for a in n.attribute)]
    heads = ops.get("MatMul", 0) == 1 and ops.get("Gemm", 0) == 0 and len(grouped) == 1
    checks.append(Check("stripe head fused", heads or stripes == 1,
                        f"{ops.get('MatMul', 0)} MatMul (pooling), {len(grouped)} Conv with group={stripes} "
                        f"(FC+BN of all stripes), {ops.get('Gemm', 0)} Gemm; want 1, 1, 0"))
    forbidden = {tuple(s) for s in forbidden_shapes}
    hits = [f"{i.name}{tuple(i.dims)}" for i in model.graph.initializer if tuple(i.dims) in forbidden]
    checks.append(Check("training-only parts stripped", not hits,
                        "no classifier / domain-head / tap tensors" if not hits else f"found {hits[:3]}"))
    return checks


def constant_arrays(model: onnx.ModelProto) -> dict[str, object]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def downstream(model: onnx.ModelProto, tensor: str) -> list[str]:
    """Names of the nodes that depend on ``tensor`` (graph order)."""
    live, names = {tensor}, []
    for node in model.graph.node:
        if any(i in live for i in node.input):
            live.update(node.output)
            names.append(node.name)
    return names


def head_nodes(model: onnx.ModelProto, stripes: int) -> dict[str, list[str]]:
    """Node names by role: 'first_conv', 'pool' (the stripe-pooling MatMul), 'fc' (the fused FC+BN
    Conv), 'tail' (everything after it: reshape and the L2 norms), 'last_block' (layer4's last block)."""
    nodes = list(model.graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    fc = [n for n in convs if any(a.name == "group" and a.i == stripes for a in n.attribute) and "head" in n.name]
    pool = [n.name for n in nodes if n.op_type == "MatMul"]
    blocks = sorted({n.name.split("/layer4/")[1].split("/")[0] for n in nodes if "/layer4/" in n.name})
    last = f"/layer4/{blocks[-1]}/" if blocks else None
    return {
        "first_conv": [convs[0].name] if convs else [],
        "pool": pool,
        "fc": [n.name for n in fc],
        "tail": downstream(model, fc[0].output[0]) if fc else [],
        "last_block": [n.name for n in nodes if last and last in n.name],
    }


def flush_denormals(model: onnx.ModelProto) -> int:
    """Set every subnormal float32 initializer value (0 < |w| < 2^-126) to 0; returns how many there were.

    Training leaves a few (BatchNorm folded into the conv of a channel ReLU6 has silenced: a trained
    market-cpu Lite0 had 700 such weights, 23 of them in the stem), and a CPU multiplies a subnormal
    operand through a microcode assist, so the float convs that read them crawl: that graph ran in 9.7
    ms at batch 1 on ONNX Runtime 1.32 (2 cores), 3.8 ms with them zeroed, like the same network with
    random weights. A flushed weight changes an output by under 2^-126 per input unit."""
    tiny = np.finfo(np.float32).tiny
    flushed = 0
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        w = numpy_helper.to_array(init)
        sub = (w != 0) & (np.abs(w) < tiny)
        if sub.any():
            flushed += int(sub.sum())
            init.CopyFrom(numpy_helper.from_array(np.where(sub, np.float32(0), w).astype(np.float32), init.name))
    return flushed


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (quantisers and block lists refer to nodes by name)."""
    seen: set[str] = set()
    for k, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{k}"
        seen.add(node.name)


def _constant(model: onnx.ModelProto, name: str) -> object | None:
    for i in model.graph.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def check_normalization(model: onnx.ModelProto, mean: Iterable[float], std: Iterable[float]) -> Check:
    """The graph normalises its raw 0-255 input exactly once: Sub(255·mean) then Div(255·std) on ``images``.

    A graph with no such pair expects pre-normalised input (every consumer would feed it wrong); a
    second pair would normalise twice. Both are refused here, at export.
    """
    import numpy as np

    want_mean = 255.0 * np.asarray(list(mean), np.float32)
    want_std = 255.0 * np.asarray(list(std), np.float32)
    users = [n for n in model.graph.node if INPUT_NAME in n.input]
    subs = [n for n in users if n.op_type == "Sub"]
    ok, detail = False, f"input consumed by {[n.op_type for n in users]}, want one Sub(255*mean)"
    if len(users) == 1 and len(subs) == 1:
        m = _constant(model, subs[0].input[1])
        divs = [n for n in model.graph.node if subs[0].output[0] in n.input]
        s = _constant(model, divs[0].input[1]) if len(divs) == 1 and divs[0].op_type == "Div" else None
        ok = (m is not None and s is not None and np.allclose(np.ravel(m), want_mean, atol=1e-3)
              and np.allclose(np.ravel(s), want_std, atol=1e-3))
        detail = (f"Sub({np.round(np.ravel(m), 3).tolist() if m is not None else '?'}) then "
                  f"Div({np.round(np.ravel(s), 3).tolist() if s is not None else '?'}) on images; "
                  f"want 255*mean={np.round(want_mean, 3).tolist()}, 255*std={np.round(want_std, 3).tolist()}")
    # A second per-channel Sub (a 3-value constant) would normalise twice; a Sub of another kind (no
    # constant, or not 3 values) is not a normalisation.
    channel_subs = [n for n in model.graph.node if n.op_type == "Sub" and (c := _constant(model, n.input[1])) is not None
                    and np.size(c) == 3]
    if len(channel_subs) > 1:
        ok, detail = False, f"{len(channel_subs)} per-channel Sub nodes: the input may be normalised twice"
    return Check("normalisation inside, once", ok, detail)


def toposort(model: onnx.ModelProto) -> None:
    """Order the nodes so each comes after its inputs' producers (converters append nodes at the end)."""
    g = model.graph
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        left = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                left.append(n)
        if len(left) == len(pending):
            raise ValueError(f"graph has a cycle or a dangling input at node {left[0].name!r}")
        pending = left
    new = [onnx.NodeProto() for _ in ordered]
    for dst, src in zip(new, ordered):
        dst.CopyFrom(src)
    del g.node[:]
    g.node.extend(new)


def inline_identities(model: onnx.ModelProto) -> None:
    """Remove Identity nodes. The TorchScript exporter deduplicates equal initializers (e.g. the zero
    biases of folded convs) through Identity nodes; a Conv whose bias comes from a node rather than an
    initializer is not fused into QLinearConv by ONNX Runtime, which cost the int8 graph its speed."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    rename: dict[str, str] = {}
    for node in [n for n in g.node if n.op_type == "Identity"]:
        src, dst = node.input[0], node.output[0]
        if src in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[src])
            copy.name = dst
            g.initializer.append(copy)
        else:
            rename[dst] = src
        g.node.remove(node)
    if rename:
        for n in g.node:
            n.input[:] = [rename.get(i, i) for i in n.input]


def fold_pads(model: onnx.ModelProto) -> int:
    """Fold each constant zero Pad (spatial axes only) read by a single Conv into that Conv's ``pads``;
    returns how many were folded. TensorFlow-style "same" padding (EfficientNet's strided convs) pads
    asymmetrically, which PyTorch's Conv2d cannot hold but ONNX's Conv can (begin and end pads): so no
    Pad sits between a Conv and the DequantizeLinear of its input, where TensorRT would otherwise have
    to move or fuse it to run the conv in int8, and ONNX Runtime's QLinearConv fusion needs DQ -> Conv."""
    import numpy as np

    g = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    folded = []
    for pad in [n for n in g.node if n.op_type == "Pad"]:
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        pads = _constant_subgraph(model, pad.input[1]) if len(pad.input) > 1 else None
        value = _constant(model, pad.input[2]) if len(pad.input) > 2 and pad.input[2] else 0.0
        readers = consumers.get(pad.output[0], [])
        if (mode != "constant" or pads is None or value is None or np.any(np.asarray(value) != 0)
                or (len(pad.input) > 3 and pad.input[3]) or pad.output[0] in outputs or len(readers) != 1
                or readers[0].op_type != "Conv" or readers[0].input[0] != pad.output[0]):
            continue
        p = np.asarray(pads, np.int64).ravel()
        conv = readers[0]
        if p.size != 8 or np.any(p[[0, 1, 4, 5]] != 0) or np.any(p < 0) or any(
                a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in conv.attribute):
            continue
        old = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
        new = [int(x) for x in np.add(old, [p[2], p[3], p[6], p[7]])]
        kept = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend([*kept, onnx.helper.make_attribute("pads", new)])
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        g.node.remove(pad)
    while folded:  # the pads' arithmetic (the exporter's Constant -> ConstantOfShape -> Concat -> ... nodes), now unread
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        for n in dead:
            g.node.remove(n)
        if not dead:
            for i in [i for i in g.initializer if i.name not in used]:
                g.initializer.remove(i)
            break
    return len(folded)


def _constant_subgraph(model: onnx.ModelProto, name: str) -> object | None:
    """The value of ``name`` when it depends on constants only (the TorchScript exporter leaves F.pad's pads
    as a small Concat/Reshape/Slice computation over Constant nodes); None when it reads a graph input."""
    from onnx.reference import ReferenceEvaluator

    direct = _constant(model, name)
    if direct is not None:
        return direct
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    need, todo = set(), [name]
    while todo:
        t = todo.pop()
        if t in inits or not t:
            continue
        node = producer.get(t)
        if node is None:
            return None  # a graph input
        if node.name in need:
            continue
        need.add(node.name)
        todo += list(node.input)
    nodes = [n for n in model.graph.node if n.name in need]
    used = {i for n in nodes for i in n.input}
    graph = onnx.helper.make_graph(nodes, "constant", [], [onnx.helper.make_empty_tensor_value_info(name)],
                                   [i for i in model.graph.initializer if i.name in used])
    sub = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    return ReferenceEvaluator(sub).run(None, {})[0]
