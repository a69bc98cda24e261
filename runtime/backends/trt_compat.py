"""Every TensorRT version difference, named (STYLE.md habit 5; Polygraphy's ``mod.version`` idiom).

Versions Jetson users have: 8.5 (JetPack 5), 10.3 (JetPack 6), current 10.x and 11.x. What changed:

==============================  ======================================================================
explicit batch                  ``EXPLICIT_BATCH`` network flag required before 10, ignored from 10
strongly typed networks         ``STRONGLY_TYPED`` flag from 9.1 (optional); always on from 11
FP16 / INT8 builder flags       needed by weakly typed networks before 11; removed in 11
OBEY_PRECISION_CONSTRAINTS      from 8.2 (replaced STRICT_TYPES); removed in 11 (strong typing always)
layer precision / output type   honoured in weakly typed networks only (refused when strongly typed)
DLA                             ``default_device_type`` / ``DLA_core`` / ``GPU_FALLBACK``; before 11 DLA
                                runs fp16/int8 through the precision flags, from 11 through tensor types;
                                no explicit (Q/DQ) int8 on DLA in 8.x
implicit INT8 calibrators       deprecated in 10, removed in 11 (we only build explicit Q/DQ graphs)
workspace limit                 ``set_memory_pool_limit(WORKSPACE, n)`` from 8.4; ``max_workspace_size`` before
build                           ``build_serialized_network`` (``build_engine`` removed in 10)
I/O tensor API                  ``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` /
                                ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``
                                from 8.5 (binding-index API removed in 10)
profile shapes                  ``get_tensor_profile_shape(name, i)`` from 8.5
==============================  ======================================================================

The pure part (version parsing, predicates, ``build_plan``) runs and is tested without TensorRT; the
rest takes TensorRT objects and is type-checked against ``tensorrt-stubs``. TensorRT is imported
lazily by ``import_trt``, never at module import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "MIN_SUPPORTED",
    "BuildPlan",
    "LayerView",
    "build_plan",
    "dims",
    "fp32_layer_indices",
    "import_trt",
    "inspector_layers",
    "inspector_tensor_type",
    "tensorrt_available",
    "trt_unavailable_reason",
    "version",
]

MIN_SUPPORTED = "8.5"
INSTALL_HINT = ("on a Jetson it comes with JetPack (`sudo apt install nvidia-jetpack`, Python module from "
                "python3-libnvinfer), elsewhere `pip install tensorrt`")


# -- versions (pure) ----------------------------------------------------------------------------
def version(text: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30), padded to four numbers so '8.6' == '8.6.0.0'."""
    nums = [int(n) for n in re.findall(r"\d+", text.split("+")[0])[:4]]
    if not nums:
        raise ValueError(f"cannot read a TensorRT version from {text!r}")
    return tuple(nums + [0] * (4 - len(nums)))


def is_supported(v: str) -> bool:
    return version(v) >= version(MIN_SUPPORTED)


def needs_explicit_batch_flag(v: str) -> bool:
    """Before 10, networks are implicit-batch unless created with EXPLICIT_BATCH (ONNX needs explicit)."""
    return version(v) < version("10")


def has_strongly_typed_flag(v: str) -> bool:
    return version(v) >= version("9.1")


def always_strongly_typed(v: str) -> bool:
    """11 removed weak typing: every network is strongly typed and the flag is ignored."""
    return version(v) >= version("11")


def has_precision_builder_flags(v: str) -> bool:
    """BuilderFlag.FP16 / INT8 exist (deprecated in 10, removed in 11)."""
    return version(v) < version("11")


def has_obey_precision_constraints(v: str) -> bool:
    """BuilderFlag.OBEY_PRECISION_CONSTRAINTS: from 8.2 (it replaced STRICT_TYPES); removed in 11
    ("Strong typing (always enforced)", TensorRT 10.x -> 11.x Python API migration reference)."""
    return version("8.2") <= version(v) < version("11")


def has_implicit_int8_calibration(v: str) -> bool:
    return version(v) < version("11")


def dla_has_explicit_quantization(v: str) -> bool:
    """Explicit (Q/DQ) int8 on DLA: NVIDIA's TensorRT 8.x developer guide ("Working with DLA") has
    none for DLA (int8 there comes from calibration or set dynamic ranges), so a Q/DQ graph is
    refused for DLA before 9 rather than silently run on the GPU. No 9.x reached a Jetson."""
    return version(v) >= version("9")


def has_memory_pool_limit(v: str) -> bool:
    return version(v) >= version("8.4")


def has_tensor_io_api(v: str) -> bool:
    """Name-based I/O: num_io_tensors, get_tensor_name, set_input_shape, execute_async_v3."""
    return version(v) >= version("8.5")


# -- how to build a given graph on a given version (pure) ----------------------------------------
@dataclass(frozen=True)
class BuildPlan:
    """Names of the NetworkDefinitionCreationFlag / BuilderFlag members to set."""

    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    strongly_typed: bool


# Weakly typed networks: the builder flags that let TensorRT use the graph's own precision.
# Explicit Q/DQ graphs still need INT8 before 11, and FP16 for the fp16 layers around the pairs.
_WEAK_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}


def _weak(v: str, explicit: tuple[str, ...], flags: tuple[str, ...], dla: bool) -> BuildPlan:
    """A weakly typed plan. With FP16 allowed, TensorRT may run any layer in fp16, including the
    graph's fp32 regions (the L2 normalisation, whose sum of squares overflows fp16): the layers of
    that region get fp32 precision (``fp32_layer_indices``) and OBEY_PRECISION_CONSTRAINTS makes
    the builder keep them, where the flag exists (TensorRT developer guide, "Reduced Precision":
    a layer precision is a preference the builder may override unless told to obey; Polygraphy's
    CreateConfig documents ``precision_constraints="obey"`` as "require that layers execute in
    specified precisions")."""
    if "FP16" in flags and has_obey_precision_constraints(v):
        flags = (*flags, "OBEY_PRECISION_CONSTRAINTS")
    if dla:
        flags = (*flags, "GPU_FALLBACK")
    return BuildPlan(explicit, flags, False)


def build_plan(v: str, graph_precision: str, precision: str, dla: bool = False) -> BuildPlan:
    """Flags to build a ``graph_precision`` ONNX as a ``precision`` engine with TensorRT ``v``.

    Precision lives in the graph: an fp16/int8 export is built strongly typed where the version
    allows. Only an fp32 graph (a foreign model) asked for fp16 needs weak typing plus the FP16
    flag, which TensorRT 11 no longer has. ``dla``: a DLA build, with GPU fallback for the layers
    DLA cannot run; DLA runs only fp16 and int8 ("Working with DLA"), and before 11 it gets them
    through the precision flags (weak typing), from 11 through the graph's types.
    """
    if not is_supported(v):
        raise ValueError(f"TensorRT {v} is older than {MIN_SUPPORTED} (JetPack 5); upgrade JetPack/TensorRT")
    for name, p in (("precision", precision), ("graph precision", graph_precision)):
        if p not in _WEAK_FLAGS:
            raise ValueError(f"{name} {p!r} is invalid; valid values: {', '.join(_WEAK_FLAGS)}")
    if dla and precision == "fp32":
        raise ValueError("DLA runs fp16 and int8 only; build --precision fp16 or int8 with --dla-core")
    if dla and precision == "int8" and not dla_has_explicit_quantization(v):
        raise ValueError(f"TensorRT {v} has no explicit (Q/DQ) int8 on DLA, and our int8 graph is Q/DQ; build --precision "
                         f"fp16 with --dla-core, or int8 on the GPU (without --dla-core)")
    explicit = ("EXPLICIT_BATCH",) if needs_explicit_batch_flag(v) else ()
    if precision == graph_precision:
        if always_strongly_typed(v):
            return BuildPlan((), ("GPU_FALLBACK",) if dla else (), True)
        if not needs_explicit_batch_flag(v) and not dla:  # 10.x: strongly typed is the faithful build
            return BuildPlan(("STRONGLY_TYPED",), (), True)
        return _weak(v, explicit, _WEAK_FLAGS[precision], dla)
    if precision == "int8":
        raise ValueError("an int8 engine needs the int8 (Q/DQ) graph; export it with "
                         "`python -m export.onnx --int8 --calib DIR` (implicit calibration is not supported)")
    if precision == "fp16" and graph_precision == "fp32":
        if not has_precision_builder_flags(v):
            raise ValueError(f"TensorRT {v} builds the precision the graph has (strongly typed); export an fp16 "
                             f"ONNX (`python -m export.onnx --fp16`) or build --precision fp32")
        return _weak(v, explicit, ("FP16",), dla)
    raise ValueError(f"cannot build a {graph_precision} graph as {precision}; use --precision {graph_precision}")


def pins_fp32_layers(plan: BuildPlan) -> bool:
    """Weakly typed with FP16 allowed: the fp32 region must be pinned layer by layer."""
    return not plan.strongly_typed and "FP16" in plan.builder_flags


@dataclass(frozen=True)
class LayerView:
    """What ``fp32_layer_indices`` needs of an ILayer (pure, so it is tested without TensorRT)."""

    kind: str                  # LayerType member name: "REDUCE", "CONVOLUTION", ...
    inputs: tuple[str, ...]    # tensor names
    outputs: tuple[str, ...]
    float_outputs: bool        # every output is a float tensor (not shapes, indices or booleans)


#: where the fp32 region starts: reductions (ReduceL2 / ReduceMean / GlobalAveragePool) and normalisations
_FP32_SEEDS = frozenset({"REDUCE", "NORMALIZATION"})
#: layers whose precision is not ours to set: Q/DQ carry their own scales; shapes and constants are not math
_NOT_PINNED = frozenset({"QUANTIZE", "DEQUANTIZE", "SHAPE", "CONSTANT", "CAST", "IDENTITY", "ASSERTION"})


def fp32_layer_indices(layers: list[LayerView]) -> list[int]:
    """Indices of the layers to run in fp32 in a weakly typed fp16/int8 build: every reduction or
    normalisation, the elementwise math feeding a reduction (the squares of an L2 norm) and
    everything downstream of one (the pooled-embedding tail: the square root, the division by the
    norm, reshapes, concatenation), skipping layers whose precision must not be set."""
    reduced = {t for layer in layers if layer.kind == "REDUCE" for t in layer.inputs}
    tainted: set[str] = set()
    out = []
    for i, layer in enumerate(layers):  # network order is topological (the parser adds in ONNX order)
        # the math right before a reduction is part of it: the x*x of an L2 norm overflows fp16 first
        squares = layer.kind in ("ELEMENTWISE", "UNARY") and any(t in reduced for t in layer.outputs)
        if layer.kind in _FP32_SEEDS or squares or any(t in tainted for t in layer.inputs):
            tainted.update(layer.outputs)
            if layer.kind not in _NOT_PINNED and layer.float_outputs:
                out.append(i)
    return out


# -- reading IEngineInspector's JSON (pure) ------------------------------------------------------
def inspector_tensor_type(tensor: Mapping[str, Any]) -> str:
    """"int8", "fp16", "fp32" (or "" when unknown) for one entry of a layer's "Inputs"/"Outputs" in
    ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` (built with DETAILED
    profiling verbosity). TensorRT 8.5-10.x writes one "Format/Datatype" string ("Thirty-two wide
    channel vectorized row major Int8 format."); 11.x writes the data type apart from the memory
    format, as "DataType" ("Int8", "Half", "Float") beside "Format" (TensorRT 11 "Migrating
    IEngineInspector Usage from TensorRT 10.x to 11.x"). Both are read."""
    text = str(tensor.get("DataType") or tensor.get("Format/Datatype") or "").lower()
    for name, marks in _INSPECTOR_TYPES:
        if any(m in text for m in marks):
            return name
    return ""


#: substrings of the inspector's type text, checked in this order ("int8" before "float": an int8
#: format string may still say "float" in a reformat's description)
_INSPECTOR_TYPES = (("int8", ("int8",)), ("fp16", ("half", "fp16")), ("fp32", ("float", "fp32")))


def inspector_layers(info: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The layer records of an engine-information JSON (the "Layers" list; plain-name entries of a
    LAYER_NAMES_ONLY engine are skipped)."""
    return [layer for layer in info.get("Layers", []) if isinstance(layer, Mapping)]


# -- the TensorRT module ------------------------------------------------------------------------
def import_trt() -> ModuleType:
    """``import tensorrt``, refusing the stubs-only namespace package tensorrt-stubs leaves behind."""
    import tensorrt

    if not hasattr(tensorrt, "Builder"):
        raise ImportError("only the tensorrt type stubs are installed, not TensorRT")
    return tensorrt


def trt_unavailable_reason() -> str | None:
    try:
        trt_mod = import_trt()
    except ImportError:
        return "TensorRT not installed"
    except Exception as e:  # a broken install (missing libnvinfer) raises OSError and friends
        return f"TensorRT does not load ({type(e).__name__}: {e})"
    if not is_supported(trt_mod.__version__):
        return f"TensorRT {trt_mod.__version__} is older than {MIN_SUPPORTED}"
    return None


def tensorrt_available() -> bool:
    return trt_unavailable_reason() is None


# -- building (typed against tensorrt-stubs) ----------------------------------------------------
def create_network(builder: trt.Builder, plan: BuildPlan) -> trt.INetworkDefinition:
    t = import_trt()
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(t.NetworkDefinitionCreationFlag, name))
    return builder.create_network(flags)


def apply_builder_flags(config: trt.IBuilderConfig, plan: BuildPlan) -> None:
    t = import_trt()
    for name in plan.builder_flags:
        config.set_flag(getattr(t.BuilderFlag, name))


def layer_views(network: trt.INetworkDefinition) -> list[LayerView]:
    t = import_trt()
    floats = {t.DataType.FLOAT, t.DataType.HALF}
    views = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        ins = tuple(layer.get_input(k).name for k in range(layer.num_inputs) if layer.get_input(k) is not None)
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        views.append(LayerView(layer.type.name, ins, tuple(o.name for o in outs),
                               all(o.dtype in floats for o in outs)))
    return views


def pin_fp32_layers(network: trt.INetworkDefinition, plan: BuildPlan) -> int:
    """Run the graph's fp32 region in fp32 in a weakly typed build (ILayer.precision and
    set_output_type, kept by OBEY_PRECISION_CONSTRAINTS); returns how many layers were pinned.
    Never in a strongly typed network: "setting layer precision and layer output types is not
    allowed" there (Python API, NetworkDefinitionCreationFlag.STRONGLY_TYPED)."""
    if not pins_fp32_layers(plan):
        return 0
    t = import_trt()
    indices = fp32_layer_indices(layer_views(network))
    for i in indices:
        layer = network.get_layer(i)
        layer.precision = t.float32
        for k in range(layer.num_outputs):
            layer.set_output_type(k, t.float32)
    return len(indices)


def set_detailed_profiling(config: trt.IBuilderConfig) -> None:
    """Keep each layer's parameters, formats and precisions in the engine for IEngineInspector
    (Python API "EngineInspector": the information printed depends on the builder config's
    profiling verbosity; DETAILED prints layer names and parameters)."""
    config.profiling_verbosity = import_trt().ProfilingVerbosity.DETAILED


def dla_cores(builder: trt.Builder) -> int:
    return int(builder.num_DLA_cores)


def use_dla(config: trt.IBuilderConfig, core: int) -> None:
    """Every layer on DLA core ``core``; GPU_FALLBACK (in the plan) takes what DLA cannot run
    (TensorRT developer guide, "Working with DLA": default_device_type, DLA_core, GPU fallback)."""
    config.default_device_type = import_trt().DeviceType.DLA
    config.DLA_core = int(core)


def set_workspace(config: trt.IBuilderConfig, nbytes: int, v: str) -> None:
    if has_memory_pool_limit(v):
        config.set_memory_pool_limit(import_trt().MemoryPoolType.WORKSPACE, int(nbytes))
    else:  # attribute gone from the stubs (and from TensorRT 10)
        setattr(config, "max_workspace_size", int(nbytes))  # noqa: B010


def attach_timing_cache(config: trt.IBuilderConfig, data: bytes | None) -> trt.ITimingCache:
    """Load a serialised timing cache (or start an empty one) into ``config``.

    ``ignore_mismatch=True``: a cache from another device or version is skipped, not fatal; the
    cache file name already records the device, so that only happens after a TensorRT upgrade.
    """
    cache = config.create_timing_cache(data or b"")
    config.set_timing_cache(cache, True)
    return cache


def serialize_timing_cache(config: trt.IBuilderConfig) -> bytes:
    return bytes(memoryview(config.get_timing_cache().serialize()))


def dims(d: trt.Dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple of ints (-1 for a dynamic dimension)."""
    return tuple(int(d[i]) for i in range(len(d)))


def add_batch_profile(builder: trt.Builder, config: trt.IBuilderConfig, name: str,
                      chw: tuple[int, int, int], batches: tuple[int, int, int]) -> None:
    """One optimisation profile: batch min/opt/max over a fixed (C, H, W)."""
    t = import_trt()
    profile = builder.create_optimization_profile()
    lo, opt, hi = (t.Dims([b, *chw]) for b in batches)
    profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)


def build_serialized(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig) -> bytes:
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT failed to build the engine; rerun with --verbose for the builder log")
    return bytes(memoryview(blob))


# -- running ------------------------------------------------------------------------------------
def deserialize_engine(runtime: trt.Runtime, data: bytes) -> trt.ICudaEngine:
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise RuntimeError("TensorRT could not deserialise the engine (built by another TensorRT version?)")
    return engine


def io_tensor_names(engine: trt.ICudaEngine) -> tuple[list[str], list[str]]:
    """(inputs, outputs) by name, in engine order."""
    t = import_trt()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == t.TensorIOMode.INPUT]
    return inputs, [n for n in names if n not in inputs]


def profile_shapes(engine: trt.ICudaEngine, name: str, profile: int = 0) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of an input in optimisation profile ``profile``."""
    return tuple(dims(s) for s in engine.get_tensor_profile_shape(name, profile))


def tensor_dtype(engine: trt.ICudaEngine, name: str) -> np.dtype[Any]:
    return np.dtype(import_trt().nptype(engine.get_tensor_dtype(name)))


def tensor_shape(engine: trt.ICudaEngine, name: str) -> tuple[int, ...]:
    return dims(engine.get_tensor_shape(name))


def set_input_shape(context: trt.IExecutionContext, name: str, shape: tuple[int, ...]) -> None:
    if not context.set_input_shape(name, shape):
        raise ValueError(f"TensorRT refused input shape {shape} for {name!r} (outside the engine's profile)")


def set_tensor_address(context: trt.IExecutionContext, name: str, ptr: int) -> None:
    if not context.set_tensor_address(name, int(ptr)):
        raise RuntimeError(f"TensorRT refused the device address for {name!r}")


def execute_async(context: trt.IExecutionContext, stream: int) -> None:
    if not context.execute_async_v3(int(stream)):
        raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log above")
