"""Run an fp32 ONNX graph on calibration batches and return its intermediate activations.

The graph is copied with every float tensor that a quantiser may need (the graph input and each
node's float outputs) added as a graph output, then run by ONNX Runtime on the CPU. onnx and
onnxruntime are imported here only (calib stays free of torch).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["ActivationRunner", "float_tensors"]


def float_tensors(model: object) -> list[str]:
    """Names of the float32 activations of ``model`` (an onnx.ModelProto), input included, in graph order."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    inits = {i.name for i in g.initializer}
    names = [i.name for i in g.input if i.name not in inits]
    for node in g.node:
        names += [o for o in node.output if o and types.get(o) == onnx.TensorProto.FLOAT]
    return list(dict.fromkeys(names))


class ActivationRunner:
    """``runner.outputs(batches)`` -> re-iterable of {tensor name: activations} per batch."""

    def __init__(self, model: object, tensors: Sequence[str] | None = None, threads: int | None = None) -> None:
        import onnx
        import onnxruntime as ort

        m = onnx.ModelProto()
        m.CopyFrom(model)  # type: ignore[arg-type]
        self.tensors = list(tensors) if tensors is not None else float_tensors(m)
        self.input_name = m.graph.input[0].name
        have = {o.name for o in m.graph.output}
        for name in self.tensors:
            if name not in have and name != self.input_name:
                m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {self.input_name: batch})
        out = dict(zip(self.output_names, values))
        out[self.input_name] = batch
        return {k: out[k] for k in self.tensors if k in out}

    def outputs(self, batches: Iterable[np.ndarray]) -> Iterable[dict[str, np.ndarray]]:
        runner = self

        class _Outputs:
            def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
                return (runner.run(b) for b in batches)

        return _Outputs()
