"""TensorRT backend: one engine, one execution context, one CUDA stream, buffers reused across calls.

Device buffers are allocated once for the profile's max batch and bound with ``set_tensor_address``;
each call copies into a pinned host buffer, sets the input shape, enqueues H2D copy ->
``execute_async_v3`` -> D2H copy on the stream and waits once. Batches above the profile max are
split by the encoder around this runner (``max_batch``). TensorRT and CUDA are imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..base.fileio import file_sha256
from ..model_dir import model_file
from ..spec import ModelSpec, check_spec_agreement
from . import trt_compat as tc
from .cuda_mem import CudaApi, cuda_unavailable_reason, load_cuda
from .engine import build_command, check_engine_key, engine_path, memory_gib, read_l4t_release, read_sidecar

__all__ = ["TrtRunner", "open_trt_encoder_runner", "trt_unavailable_reason"]


def trt_unavailable_reason() -> str | None:
    """None when TensorRT and a CUDA binding are importable, else why not (imports nothing heavy on failure)."""
    return tc.trt_unavailable_reason() or cuda_unavailable_reason()


class TrtRunner:
    """Runs a deserialised engine with one input [N,3,H,W] and one output [N,D]."""

    def __init__(self, engine_bytes: bytes, cuda: CudaApi | None = None, dla_core: int | None = None) -> None:
        from .trt_build import get_logger

        t = tc.import_trt()
        self.cuda = cuda or load_cuda()
        self._runtime = t.Runtime(get_logger())
        self.dla_core = dla_core
        if dla_core is not None:  # an engine built for DLA runs on the core the runtime names (IRuntime.DLA_core)
            self._runtime.DLA_core = int(dla_core)
        self.engine = tc.deserialize_engine(self._runtime, engine_bytes)
        self.context = self.engine.create_execution_context()
        inputs, outputs = tc.io_tensor_names(self.engine)
        if len(inputs) != 1 or not outputs:
            raise ValueError(f"engine has inputs {inputs} and outputs {outputs}; expected one image input")
        self.input_name, self.output_name = inputs[0], outputs[0]
        lo, _opt, hi = tc.profile_shapes(self.engine, self.input_name, 0)
        self.max_batch: int | None = int(hi[0])
        self.static_batch: int | None = int(lo[0]) if lo[0] == hi[0] and lo[0] > 1 else None
        self.chw = tuple(hi[1:])
        self.in_dtype = tc.tensor_dtype(self.engine, self.input_name)
        self.out_dtype = tc.tensor_dtype(self.engine, self.output_name)
        dim = tc.tensor_shape(self.engine, self.output_name)[-1]
        self._alloc(int(hi[0]), dim)

    def _alloc(self, max_batch: int, dim: int) -> None:
        # Pinned host buffers and device buffers sized for the profile's max, bound once.
        self.host_in = self.cuda.pinned((max_batch, *self.chw), self.in_dtype)   # (B, 3, H, W)
        self.host_out = self.cuda.pinned((max_batch, dim), self.out_dtype)       # (B, D)
        self.dev_in = self.cuda.malloc(self.host_in.nbytes)
        self.dev_out = self.cuda.malloc(self.host_out.nbytes)
        self.stream = self.cuda.create_stream()
        tc.set_tensor_address(self.context, self.input_name, self.dev_in)
        tc.set_tensor_address(self.context, self.output_name, self.dev_out)

    def run(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if self.max_batch is not None and n > self.max_batch:
            raise ValueError(f"batch {n} exceeds the engine's profile max {self.max_batch}")
        host_in, host_out = self.host_in[:n], self.host_out[:n]
        host_in[...] = batch  # casts to the engine's input dtype (fp16 inputs included)
        tc.set_input_shape(self.context, self.input_name, (n, *self.chw))
        self.cuda.htod_async(self.dev_in, host_in, self.stream)
        tc.execute_async(self.context, self.stream)
        self.cuda.dtoh_async(host_out, self.dev_out, self.stream)
        self.cuda.synchronize(self.stream)
        return host_out.astype(np.float32)  # a copy: the pinned buffer is reused next call

    def close(self) -> None:
        for ptr in (getattr(self, "dev_in", None), getattr(self, "dev_out", None)):
            if ptr:
                self.cuda.free(ptr)
        self.dev_in = self.dev_out = 0
        for arr in (getattr(self, "host_in", None), getattr(self, "host_out", None)):
            if arr is not None:
                self.cuda.free_pinned(arr)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass


def _source_onnx(model: Path, is_dir: bool, modality: str, precision: str) -> Path | None:
    path = model_file(model, modality, precision, "trt") if is_dir else model
    return path if path.is_file() else None


def open_trt_encoder_runner(model: str | os.PathLike[str], is_dir: bool, modality: str, precision: str,
                            folder_spec: ModelSpec | None, path: Path | None = None) -> tuple[TrtRunner, ModelSpec]:
    """Load ``path`` (default ``<model>/engines/<modality>.<precision>.engine``) after checking its
    key against this device and the ONNX beside it; refuses a mismatch with the rebuild command.
    An engine built for DLA runs on the core its key records."""
    model = Path(model)
    path = path or engine_path(model, modality, precision, is_dir)
    key, spec, _payload = read_sidecar(path)
    cuda = load_cuda()
    device = cuda.device()
    onnx = _source_onnx(model, is_dir, modality, precision)
    check_engine_key(path, key, str(tc.import_trt().__version__), device.name, device.compute_capability,
                     file_sha256(onnx) if onnx is not None else None, precision,
                     build_command(model, modality, precision, key.profile, key.dla_core),
                     sm_count=device.sm_count, total_memory_gib=memory_gib(device.total_memory),
                     l4t_release=read_l4t_release())
    if folder_spec is not None:
        check_spec_agreement(folder_spec, spec, str(path))
    runner = TrtRunner(path.read_bytes(), cuda, key.dla_core)
    return runner, spec


def engine_summary(runner: TrtRunner) -> dict[str, Any]:
    return {"input": runner.input_name, "output": runner.output_name, "max_batch": runner.max_batch,
            "input_dtype": str(runner.in_dtype), "output_dtype": str(runner.out_dtype)}
