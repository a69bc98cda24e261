"""A tiny ONNX encoder that honours the graph contract (no torch needed), for runtime tests.

images float32 [N,3,H,W] raw 0-255 -> (x/255 - mean)/std inside the graph -> Conv -> Relu ->
GlobalAveragePool -> MatMul -> LpNormalization -> embeddings [N,D]. Batch is dynamic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.spec import ModelSpec, set_onnx_metadata


def make_tiny_spec(modality: str = "ir", height: int = 32, width: int = 16, dim: int = 24, **kw) -> ModelSpec:
    return ModelSpec(name="tiny", modality=modality, input_height=height, input_width=width,
                     embedding_dim=dim, stripes=3, opset=17, **kw)


def make_tiny_onnx(path: str | Path, spec: ModelSpec, seed: int = 0, l2: bool = True) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    ch = 8
    mean = (np.asarray(spec.mean, np.float32) * 255).reshape(1, 3, 1, 1)
    std = (np.asarray(spec.std, np.float32) * 255).reshape(1, 3, 1, 1)
    inits = [
        numpy_helper.from_array(mean, "mean"),
        numpy_helper.from_array(std, "std"),
        numpy_helper.from_array(rng.normal(0, 0.5, (ch, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (ch,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 1.0, (ch * 4, spec.embedding_dim)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("Sub", ["images", "mean"], ["x0"]),
        helper.make_node("Div", ["x0", "std"], ["x1"]),
        helper.make_node("Conv", ["x1", "conv_w", "conv_b"], ["x2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["x2"], ["x3"]),
        # two "stripes" x two columns of pooled features, so spatial content matters
        helper.make_node("AveragePool", ["x3"], ["x4"],
                         kernel_shape=[spec.input_height // 4, spec.input_width // 4],
                         strides=[spec.input_height // 4, spec.input_width // 4]),
        helper.make_node("Reshape", ["x4", "flat_shape"], ["x5"]),
        helper.make_node("MatMul", ["x5", "fc_w"], ["x6" if l2 else "embeddings"]),
    ]
    if l2:
        nodes.append(helper.make_node("LpNormalization", ["x6"], ["embeddings"], axis=1, p=2))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, spec.input_height, spec.input_width])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", spec.embedding_dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    set_onnx_metadata(model, spec)
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
