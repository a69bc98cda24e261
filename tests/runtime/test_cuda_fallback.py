"""CUDA bindings (issue 16 defect 2) with fake `cuda.bindings.runtime` / `pycuda.driver` modules: a
binding that imports but cannot initialise (cuda-python 13 on JetPack 6's CUDA 12 driver raises
cudaErrorInsufficientDriver at its first call) is skipped with its reason, `--backend auto` then
runs ONNX Runtime instead of crashing, and the pycuda context is popped (NVIDIA/TensorRT#2357)."""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path

import pytest
from tiny_onnx import make_tiny_onnx, make_tiny_spec

from runtime import encoder as enc
from runtime.backends import cuda_mem
from runtime.backends import trt as trt_backend
from runtime.backends.engine import EngineKey, engine_path, write_engine
from runtime.encoder import open_encoder
from runtime.model_dir import write_model_dir_specs

H, W, D = 32, 16, 24


class _Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35


def _cudart_on_an_old_driver() -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaError_t = _Err  # type: ignore[attr-defined]
    rt.cudaFree = lambda ptr: (_Err.cudaErrorInsufficientDriver,)  # type: ignore[attr-defined]
    rt.cudaGetErrorString = lambda err: (  # type: ignore[attr-defined]
        _Err.cudaSuccess, b"CUDA driver version is insufficient for CUDA runtime version")
    return rt


@pytest.fixture
def cuda13_on_jetpack6(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _cudart_on_an_old_driver()
    pkg, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = rt  # type: ignore[attr-defined]
    pkg.bindings = bindings  # type: ignore[attr-defined]
    for name, mod in (("cuda", pkg), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "pycuda", None)  # not installed: `import pycuda.driver` raises ImportError
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    if hasattr(cuda_mem, "reset_cuda"):
        cuda_mem.reset_cuda()
    yield
    if hasattr(cuda_mem, "reset_cuda"):
        cuda_mem.reset_cuda()


def test_an_initialisation_error_is_not_a_crash_but_a_reason(cuda13_on_jetpack6: None) -> None:
    with pytest.raises(RuntimeError) as info:
        cuda_mem.load_cuda()
    msg = str(info.value)
    assert type(info.value).__name__ == "CudaUnavailableError"
    assert "cuda-python: RuntimeError: CUDA error 35: CUDA driver version is insufficient" in msg
    assert "on JetPack 6 use cuda-python 12.x" in msg and "pycuda: not installed" in msg
    assert "jetson6" in msg and "jetson7" in msg


@pytest.fixture
def folder_with_engine(tmp_path: Path) -> Path:
    spec = make_tiny_spec("ir", H, W, D)
    make_tiny_onnx(tmp_path / "ir.onnx", spec)
    write_model_dir_specs(tmp_path, {"ir": spec})
    key = EngineKey("0" * 64, "10.3.0.30", "Orin", "8.7", "fp32", (1, 8, 32))
    write_engine(engine_path(tmp_path, "ir", "fp32"), b"plan", key, spec, {})
    return tmp_path


def test_auto_falls_back_to_onnxruntime_and_says_why_once(cuda13_on_jetpack6: None, folder_with_engine: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(trt_backend, "trt_unavailable_reason", lambda: None)  # "TensorRT is installed"
    monkeypatch.setattr(trt_backend.tc, "import_trt", lambda: types.SimpleNamespace(__version__="10.3.0.30"))
    enc._printed.clear()
    a = open_encoder(folder_with_engine, "ir", precision="fp32")
    b = open_encoder(folder_with_engine, "ir", precision="fp32")
    assert a.backend == b.backend == "onnxruntime-cpu"
    lines = [s for s in capsys.readouterr().err.splitlines() if "backend" in s]
    assert len(lines) == 1 and "insufficient" in lines[0] and "cuda-python 12.x" in lines[0]
    with pytest.raises(ValueError, match="backend tensorrt is unavailable: no usable CUDA binding"):
        open_encoder(folder_with_engine, "ir", precision="fp32", backend="tensorrt", verbose=False)


class _Ctx:
    def __init__(self) -> None:
        self.stack: list[str] = []

    def push(self) -> None:
        self.stack.append("pushed")

    def pop(self) -> None:
        self.stack.pop()


def test_pycuda_context_is_popped_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """pycuda aborts the process when its context stack is not empty at exit (NVIDIA/TensorRT#2357)."""
    ctx = _Ctx()
    drv = types.ModuleType("pycuda.driver")
    drv.init = lambda: None  # type: ignore[attr-defined]
    drv.Device = lambda i: types.SimpleNamespace(retain_primary_context=lambda: ctx)  # type: ignore[attr-defined]
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    registered = []
    monkeypatch.setattr("atexit.register", lambda f, *a, **k: registered.append(f) or f)
    cuda = cuda_mem.PyCuda()
    assert ctx.stack == ["pushed"]
    assert registered, "nothing registered to run at exit"
    for f in registered:
        f()
    assert ctx.stack == []
    cuda.close()  # idempotent: a second pop would raise on an empty stack
    assert ctx.stack == []


def test_auto_skips_a_torn_engine_and_says_so(folder_with_engine: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An interrupted build leaves an engine that does not match its sidecar: auto runs ONNX Runtime and
    says why, with the rebuild hint; --backend tensorrt with that precision refuses."""
    monkeypatch.setattr(trt_backend, "trt_unavailable_reason", lambda: None)
    engine_path(folder_with_engine, "ir", "fp32").write_bytes(b"half a plan")
    enc._printed.clear()
    assert open_encoder(folder_with_engine, "ir").backend == "onnxruntime-cpu"
    assert "does not match its sidecar (interrupted build?)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="interrupted build"):
        open_encoder(folder_with_engine, "ir", precision="fp32", backend="tensorrt", verbose=False)
