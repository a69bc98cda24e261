"""CUDA memory and streams for the TensorRT backend: cuda-python first, pycuda as the fallback.

Only what inference needs: device buffers, pinned host buffers, one stream, async copies, and the
device's description (the engine key). cuda-python's runtime API lives in ``cuda.bindings.runtime``
(cuda-python >= 12.6) and ``cuda.cudart`` before; every call returns ``(err, *values)``. pycuda uses
the driver API, so it retains the device's primary context, the one TensorRT's runtime-API calls use
too.

A binding that imports may still not work: cuda-python 13 needs the CUDA 13 driver (JetPack 7) and
its first call fails on JetPack 6's CUDA 12 driver. So ``load_cuda`` falls back on *any* error of a
binding's initialisation, says once why, and raises ``CudaUnavailableError`` (with every binding's
reason) only when none works; ``runtime.encoder`` then runs ONNX Runtime instead of crashing.
"""

from __future__ import annotations

import atexit
import ctypes
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["CudaApi", "CudaUnavailableError", "DeviceInfo", "cuda_unavailable_reason", "load_cuda", "reset_cuda"]

#: what to install, per JetPack (pyproject extras; docs/install.md)
BINDING_HINT = ("install the binding for your JetPack: `pip install \".[jetson6]\"` (CUDA 12, cuda-python 12.x) or "
                "`\".[jetson7]\"` (CUDA 13, cuda-python 13.x), or `\".[pycuda]\"`")


class CudaUnavailableError(RuntimeError):
    """No CUDA binding could initialise the device; the message names each binding's reason."""


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str  # "8.7"
    sm_count: int = 0        # streaming multiprocessors: tells Orin NX 8 GB from 16 GB, Nano from NX
    total_memory: int = 0    # bytes (shared with the CPU on a Jetson)


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
        return DeviceInfo(name.rstrip("\x00").strip(), f"{props.major}.{props.minor}",
                          int(props.multiProcessorCount), int(props.totalGlobalMem))


class PyCuda:
    """pycuda driver API on the primary context.

    The context pushed here is popped at exit: pycuda aborts the process when its context stack is
    not empty at module cleanup ("PyCUDA ERROR: The context stack was not empty upon module
    cleanup", NVIDIA/TensorRT issue 2357). Same push/pop-at-exit as ``pycuda.autoprimaryctx``.
    """

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as drv

        drv.init()
        self.drv = drv
        self.ctx: Any = drv.Device(0).retain_primary_context()
        self.ctx.push()
        atexit.register(self.close)
        self._allocs: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    def close(self) -> None:
        """Pop the context pushed in __init__ (once; atexit calls it too) and drop pycuda's
        per-context caches, as ``pycuda.autoprimaryctx`` does at exit."""
        ctx, self.ctx = self.ctx, None
        if ctx is None:
            return
        ctx.pop()
        try:
            from pycuda.tools import clear_context_caches
        except ImportError:
            return
        clear_context_caches()

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
        sms = dev.get_attribute(self.drv.device_attribute.MULTIPROCESSOR_COUNT)
        return DeviceInfo(str(dev.name()).strip(), f"{major}.{minor}", int(sms), int(dev.total_memory()))


_LOADED: list[CudaApi] = []  # one binding (one primary context) per process
_SAID: set[str] = set()


def _why(e: BaseException) -> str:
    if isinstance(e, ImportError):
        return "not installed"
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _driver_hint(reason: str) -> str:
    """cudaErrorInsufficientDriver (35) is cuda-python newer than the driver: name the pin that fits."""
    if "CUDA error 35" in reason or "insufficient" in reason.lower():
        return " (this cuda-python needs a newer CUDA driver than the one installed: on JetPack 6 use cuda-python 12.x)"
    return ""


def load_cuda() -> CudaApi:
    """The first CUDA binding that initialises: cuda-python, else pycuda. Any error of a binding
    (not only ImportError) moves on to the next; the reason is printed once. Raises
    ``CudaUnavailableError`` naming every reason when none works."""
    if _LOADED:
        return _LOADED[0]
    reasons: list[str] = []
    for name, make in (("cuda-python", CudaPython), ("pycuda", PyCuda)):
        try:
            api: CudaApi = make()
        except Exception as e:  # a too-new cuda-python raises RuntimeError at its first call, not ImportError
            reasons.append(f"{name}: {_why(e)}{_driver_hint(_why(e))}")
            continue
        if reasons:
            _say_once(f"irreid-edge: {'; '.join(reasons)}; using {name}")
        _LOADED.append(api)
        return api
    raise CudaUnavailableError(f"no usable CUDA binding ({'; '.join(reasons)}); {BINDING_HINT}")


def _say_once(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr)


def reset_cuda() -> None:
    """Forget the loaded binding (tests that swap fake bindings in and out)."""
    _LOADED.clear()
    _SAID.clear()


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
