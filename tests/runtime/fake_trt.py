"""A fake ``tensorrt`` module: just the API runtime/backends/trt_build.py and runtime/backends/trt_compat.py call,
recording what was set, for testing the build stages where TensorRT is absent (this CI).

The parser reads the real ONNX file and adds one layer per node, with the LayerType TensorRT's ONNX
parser uses for it; LpNormalization becomes the four layers the parser builds (square, sum-reduce,
sqrt, divide). The builder "serialises" a JSON record of the network and config, so a test can check
the profile, the flags, the device type and each layer's pinned precision in the engine file.
"""

from __future__ import annotations

import json
import types
from enum import Enum
from typing import Any

_KIND = {"Conv": "CONVOLUTION", "Relu": "ACTIVATION", "AveragePool": "POOLING", "MaxPool": "POOLING",
         "GlobalAveragePool": "REDUCE", "ReduceL2": "REDUCE", "ReduceMean": "REDUCE", "ReduceSum": "REDUCE",
         "Reshape": "SHUFFLE", "Flatten": "SHUFFLE", "Transpose": "SHUFFLE", "MatMul": "MATRIX_MULTIPLY",
         "Gemm": "MATRIX_MULTIPLY", "Add": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE",
         "Div": "ELEMENTWISE", "Sqrt": "UNARY", "Concat": "CONCATENATION", "BatchNormalization": "SCALE",
         "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "Cast": "CAST", "Shape": "SHAPE"}


class DataType(Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3


class LayerType(Enum):
    CONVOLUTION = 0
    ACTIVATION = 1
    POOLING = 2
    REDUCE = 3
    SHUFFLE = 4
    MATRIX_MULTIPLY = 5
    ELEMENTWISE = 6
    UNARY = 7
    CONCATENATION = 8
    SCALE = 9
    QUANTIZE = 10
    DEQUANTIZE = 11
    CAST = 12
    SHAPE = 13
    UNKNOWN = 99


BuilderFlag = types.SimpleNamespace(**{n: n for n in (
    "FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK", "STRICT_TYPES")})
NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
DeviceType = types.SimpleNamespace(GPU="GPU", DLA="DLA")
float32 = DataType.FLOAT


class Logger:
    WARNING, VERBOSE = 2, 4

    def __init__(self, severity: int = 2) -> None:
        self.min_severity = severity


class Dims(list):  # type: ignore[type-arg]
    pass


class Tensor:
    def __init__(self, name: str, shape: list[int] | None = None, dtype: DataType = DataType.FLOAT) -> None:
        self.name, self.shape, self.dtype = name, Dims(shape or []), dtype


class Layer:
    def __init__(self, kind: str, inputs: list[Tensor], outputs: list[Tensor]) -> None:
        self.type = LayerType[kind] if kind in LayerType.__members__ else LayerType.UNKNOWN
        self._in, self._out = inputs, outputs
        self.precision: Any = None
        self.output_types: dict[int, Any] = {}

    num_inputs = property(lambda self: len(self._in))
    num_outputs = property(lambda self: len(self._out))

    def get_input(self, k: int) -> Tensor:
        return self._in[k]

    def get_output(self, k: int) -> Tensor:
        return self._out[k]

    def set_output_type(self, k: int, dtype: Any) -> None:
        self.output_types[k] = dtype


class Network:
    def __init__(self, flags: int) -> None:
        self.flags, self.layers, self.inputs = flags, [], []

    num_layers = property(lambda self: len(self.layers))

    def get_layer(self, i: int) -> Layer:
        return self.layers[i]

    def get_input(self, i: int) -> Tensor:
        return self.inputs[i]


class OnnxParser:
    num_errors = 0

    def __init__(self, network: Network, logger: Logger) -> None:
        self.network = network

    def parse_from_file(self, path: str) -> bool:
        import onnx

        g = onnx.load(path).graph
        inits = {i.name for i in g.initializer}
        tensors: dict[str, Tensor] = {}
        for i in g.input:
            if i.name not in inits:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim]
                tensors[i.name] = Tensor(i.name, dims)
                self.network.inputs.append(tensors[i.name])
        t = lambda n: tensors.setdefault(n, Tensor(n))  # noqa: E731
        for node in g.node:
            ins = [t(n) for n in node.input if n and n not in inits]
            if node.op_type == "LpNormalization":  # the parser's expansion: x*x -> sum -> sqrt -> x / norm
                sq, s, r = Tensor(node.output[0] + "/sq"), Tensor(node.output[0] + "/sum"), Tensor(node.output[0] + "/norm")
                self.network.layers += [Layer("ELEMENTWISE", ins, [sq]), Layer("REDUCE", [sq], [s]),
                                        Layer("UNARY", [s], [r]), Layer("ELEMENTWISE", [*ins, r], [t(node.output[0])])]
                continue
            self.network.layers.append(Layer(_KIND.get(node.op_type, "UNKNOWN"), ins, [t(o) for o in node.output]))
        return True

    def get_error(self, i: int) -> str:
        return ""


class Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def set_shape(self, name: str, lo: Dims, opt: Dims, hi: Dims) -> None:
        self.shapes[name] = (list(lo), list(opt), list(hi))


class TimingCache:
    def serialize(self) -> bytes:
        return b"timing"


class Config:
    def __init__(self) -> None:
        self.flags: list[str] = []
        self.profiles: list[Profile] = []
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def set_flag(self, flag: str) -> None:
        self.flags.append(flag)

    def set_memory_pool_limit(self, pool: str, n: int) -> None:
        self.workspace = n

    def add_optimization_profile(self, p: Profile) -> int:
        self.profiles.append(p)
        return 0

    def create_timing_cache(self, data: bytes) -> TimingCache:
        return TimingCache()

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        return True

    def get_timing_cache(self) -> TimingCache:
        return TimingCache()


class Builder:
    num_DLA_cores = 0  # tests set 2 for an AGX Orin

    def __init__(self, logger: Logger) -> None:
        pass

    def create_network(self, flags: int = 0) -> Network:
        return Network(flags)

    def create_builder_config(self) -> Config:
        return Config()

    def create_optimization_profile(self) -> Profile:
        return Profile()

    def build_serialized_network(self, network: Network, config: Config) -> bytes:
        record = {"flags": config.flags, "device": config.default_device_type, "dla_core": config.DLA_core,
                  "profile": next(iter(config.profiles[0].shapes.values())),
                  "fp32_layers": [i for i, layer in enumerate(network.layers) if layer.precision == float32]}
        return json.dumps(record).encode()


def module(version: str) -> types.ModuleType:
    """A fresh ``tensorrt`` module reporting ``version``."""
    m = types.ModuleType("tensorrt")
    for name, value in dict(globals()).items():
        if not name.startswith("_") and name not in ("module", "annotations", "json", "types", "Enum", "Any"):
            setattr(m, name, value)
    m.__version__ = version
    return m
