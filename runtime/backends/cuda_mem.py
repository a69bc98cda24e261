"""CUDA memory and streams for the TensorRT backend: cuda-python first, pycuda as the fallback.

Only what inference needs: device buffers, pinned host buffers, one stream, async copies, and the
device's name and compute capability (the engine key). cuda-python's runtime API lives in
``cuda.bindings.runtime`` (cuda-python >= 12.6) and ``cuda.cudart`` before; every call returns
``(err, *values)``. pycuda uses the driver API, so it retains the device's primary context, the one
TensorRT's runtime-API calls use too.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["CudaApi", "DeviceInfo", "cuda_unavailable_reason", "load_cuda"]


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str  # "8.7"


class CudaApi(Protocol):
    name: str

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray: ...
    def free_pinned(self, array: np.ndarray) -> None: ...
    def create_stream(self) -> int: ...
    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None: ...
    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None: ...
    def synchronize(self, stream: int) -> None: ...
    def device(self) -> DeviceInfo: ...


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class CudaPython:
    """cuda-python runtime API."""

    name = "cuda-python"

    def __init__(self) -> None:
        self.rt = _import_cudart()
        self._pinned: dict[int, int] = {}  # id(array) -> host pointer
        self._check(self.rt.cudaFree(0))  # initialise the primary context now, not in the first call

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"CUDA error {int(err)}: {text.decode() if isinstance(text, bytes) else text}")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr))

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        dt = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dt.itemsize, 1)
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes)))
        raw = memoryview((ctypes.c_byte * nbytes).from_address(ptr)).cast("B")  # a view, no copy
        array = np.frombuffer(raw, dtype=dt, count=int(np.prod(shape))).reshape(shape)
        self._pinned[id(array)] = ptr
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        ptr = self._pinned.pop(id(array), None)
        if ptr is not None:
            self._check(self.rt.cudaFreeHost(ptr))

    def create_stream(self) -> int:
        return int(self._check(self.rt.cudaStreamCreate()))

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream))

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream))

    def synchronize(self, stream: int) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream))

    def device(self) -> DeviceInfo:
        dev = int(self._check(self.rt.cudaGetDevice()))
        props = self._check(self.rt.cudaGetDeviceProperties(dev))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return DeviceInfo(name.rstrip("\x00").strip(), f"{props.major}.{props.minor}")


class PyCuda:
    """pycuda driver API on the primary context."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as drv

        drv.init()
        self.drv = drv
        self.ctx = drv.Device(0).retain_primary_context()
        self.ctx.push()
        self._allocs: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._allocs.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        return np.asarray(self.drv.pagelocked_empty(shape, np.dtype(dtype)))

    def free_pinned(self, array: np.ndarray) -> None:
        """pycuda frees page-locked memory with the array."""

    def create_stream(self) -> int:
        stream = self.drv.Stream()
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.drv.memcpy_htod_async(dst, src, self._streams[stream])

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        self.drv.memcpy_dtoh_async(dst, src, self._streams[stream])

    def synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def device(self) -> DeviceInfo:
        dev = self.drv.Context.get_device()
        major, minor = dev.compute_capability()
        return DeviceInfo(str(dev.name()).strip(), f"{major}.{minor}")


def load_cuda() -> CudaApi:
    """cuda-python, else pycuda; ImportError naming both when neither is installed."""
    try:
        _import_cudart()
        return CudaPython()
    except ImportError:
        pass
    try:
        return PyCuda()
    except ImportError:
        raise ImportError("neither cuda-python nor pycuda is installed (pip install 'irreid-edge[jetson]')") from None


def cuda_unavailable_reason() -> str | None:
    """Why CUDA buffers cannot be made here (None when a binding imports); starts no context."""
    import importlib.util

    for mod in ("cuda.bindings", "cuda.cudart", "pycuda"):
        try:
            if importlib.util.find_spec(mod) is not None:
                return None
        except ModuleNotFoundError:
            continue
    return "neither cuda-python nor pycuda is installed"
