"""Building a TensorRT engine, as small composable stages (Polygraphy ``backend/trt/loader.py`` style).

    network = parse_onnx(builder, onnx_path, plan)          # parse
    config = configure(builder, network, ...)                # flags, workspace, profile, timing cache
    blob = trt_compat.build_serialized(builder, network, config)   # build
    engine.write_engine(path, blob, key, spec, info)         # save (+ sidecar)
    TrtRunner(path)                                          # load (runtime.backends.trt)

``build_engine_file`` chains them for ``irreid-edge build``. TensorRT is imported lazily.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.fileio import atomic_write_bytes, file_sha256
from ..spec import ModelSpec
from . import trt_compat as tc
from .engine import (
    EngineKey,
    engine_path,
    memory_gib,
    profile_batches,
    read_l4t_release,
    timing_cache_path,
    write_engine,
)

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["BuildRequest", "build_engine_file", "configure", "get_logger", "parse_onnx"]

_LOGGER: Any = None


def get_logger(verbose: bool = False) -> trt.ILogger:
    """One TensorRT logger per process (TensorRT expects a single one)."""
    global _LOGGER
    t = tc.import_trt()
    if _LOGGER is None:
        _LOGGER = t.Logger(t.Logger.WARNING)
    _LOGGER.min_severity = t.Logger.VERBOSE if verbose else t.Logger.WARNING
    return _LOGGER  # type: ignore[no-any-return]


def parse_onnx(builder: trt.Builder, onnx_path: Path, plan: tc.BuildPlan,
               logger: trt.ILogger) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """Network from an ONNX file; the parser is returned too since the network borrows from it."""
    t = tc.import_trt()
    network = tc.create_network(builder, plan)
    parser = t.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from file: external weights resolve beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT cannot parse it: {errors or 'unknown error'}")
    return network, parser


def static_batch(network: trt.INetworkDefinition) -> int | None:
    """The input's batch when the graph fixes it (a foreign model exported with batch 1), else None."""
    shape = tc.dims(network.get_input(0).shape)
    return shape[0] if shape and shape[0] > 0 else None


def configure(builder: trt.Builder, network: trt.INetworkDefinition, plan: tc.BuildPlan, v: str,
              workspace_mb: int, batches: tuple[int, int, int],
              timing_cache: bytes | None, dla_core: int | None = None) -> trt.IBuilderConfig:
    config = builder.create_builder_config()
    tc.apply_builder_flags(config, plan)
    tc.set_workspace(config, workspace_mb << 20, v)
    inp = network.get_input(0)
    shape = tc.dims(inp.shape)
    chw = shape[1:]
    if len(chw) != 3 or min(chw) <= 0:
        raise ValueError(f"input {inp.name!r} has shape {shape}; expected [N, 3, H, W] with static H, W")
    tc.add_batch_profile(builder, config, inp.name, (chw[0], chw[1], chw[2]), batches)
    tc.attach_timing_cache(config, timing_cache)
    if dla_core is not None:
        tc.use_dla(config, dla_core)
    return config


def check_dla(builder: trt.Builder, core: int | None) -> None:
    """Refuse --dla-core where the device has no such core (IBuilder.num_DLA_cores)."""
    if core is None:
        return
    n = tc.dla_cores(builder)
    if n == 0:
        raise ValueError(f"--dla-core {core}: this device has no DLA (TensorRT reports 0 DLA cores; DLA exists on Jetson "
                         f"AGX Orin and Orin NX, not on Orin Nano, Thor or discrete GPUs, and TensorRT 11 drives it on AGX "
                         f"Orin only, from JetPack 7.2.2); build without --dla-core")
    if not 0 <= core < n:
        raise ValueError(f"--dla-core {core}: this device has {n} DLA core(s), numbered 0..{n - 1}")


@dataclass(frozen=True)
class BuildRequest:
    model: Path              # export folder, or a single .onnx file
    is_dir: bool
    modality: str
    precision: str
    onnx_path: Path          # the graph to parse (the "trt" target file)
    spec: ModelSpec          # its spec (graph precision = spec.precision)
    max_batch: int = 32
    opt_batch: int | None = None
    workspace_mb: int = 1024
    timing_cache: Path | None = None
    verbose: bool = False
    dla_core: int | None = None   # build for this DLA core (GPU fallback); None = GPU
    detailed: bool = False        # keep layer details in the engine (IEngineInspector)


def build_engine_file(req: BuildRequest) -> Path:
    """Parse -> configure -> build -> save; returns the engine path. Reuses and updates the timing cache."""
    from .cuda_mem import load_cuda

    t = tc.import_trt()
    v = str(t.__version__)
    device = load_cuda().device()
    plan = tc.build_plan(v, req.spec.precision, req.precision, dla=req.dla_core is not None)
    out = engine_path(req.model, req.modality, req.precision, req.is_dir, req.dla_core)  # DLA: its own file
    cache_path = req.timing_cache or timing_cache_path(out.parent, device.name, device.compute_capability, v)
    cache_in = cache_path.read_bytes() if cache_path.is_file() else None

    logger = get_logger(req.verbose)
    builder = t.Builder(logger)
    check_dla(builder, req.dla_core)
    network, _parser = parse_onnx(builder, req.onnx_path, plan, logger)
    pinned = tc.pin_fp32_layers(network, plan)
    # DLA has no dynamic shapes: one fixed batch, the one asked for as the max (smaller calls are padded)
    fixed = static_batch(network) or (req.max_batch if req.dla_core is not None else None)
    batches = profile_batches(req.max_batch, req.opt_batch, static_batch=fixed)
    config = configure(builder, network, plan, v, req.workspace_mb, batches, cache_in, req.dla_core)
    if req.detailed:
        tc.set_detailed_profiling(config)
    start = time.perf_counter()
    blob = tc.build_serialized(builder, network, config)
    seconds = time.perf_counter() - start
    atomic_write_bytes(cache_path, tc.serialize_timing_cache(config))

    onnx_sha = file_sha256(req.onnx_path)
    key = EngineKey(onnx_sha, v, device.name, device.compute_capability, req.precision, batches,
                    device.sm_count, memory_gib(device.total_memory), read_l4t_release(), req.dla_core)
    info = {"onnx": os.path.relpath(req.onnx_path, out.parent), "workspace_mb": req.workspace_mb,
            "timing_cache": str(cache_path), "timing_cache_reused": cache_in is not None,
            "network_flags": list(plan.network_flags), "builder_flags": list(plan.builder_flags),
            "strongly_typed": plan.strongly_typed, "fp32_pinned_layers": pinned,
            "build_seconds": round(seconds, 1)}
    spec = req.spec.replace(precision=req.precision, onnx_sha256=onnx_sha)
    write_engine(out, blob, key, spec, info)
    where = f"DLA core {req.dla_core} + GPU fallback" if req.dla_core is not None else f"sm{device.compute_capability}"
    print(f"irreid-edge: built {out} ({len(blob) / 2**20:.1f} MB, {seconds:.0f} s, batch {batches[0]}/"
          f"{batches[1]}/{batches[2]}, TensorRT {v}, {device.name} {where})", file=sys.stderr)
    return out
