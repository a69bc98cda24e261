"""Shared fixtures and the trt/gpu skip logic (markers are registered in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# tests/ holds importable helpers (tiny_onnx.py); the repository root holds the packages.
for p in (str(TESTS), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

SHARED_MARKET = ROOT.parent / "shared" / "data" / "market1501-dev"


def _has_tensorrt() -> bool:
    # Not find_spec("tensorrt"): the type stubs CI installs make a bare tensorrt/ folder that it finds.
    from runtime.backends.trt_compat import tensorrt_available

    return tensorrt_available()


def _has_cuda_gpu() -> bool:
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            return bool(torch.cuda.is_available())
        except Exception:
            return False
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    trt_ok = _has_tensorrt()
    gpu_ok: bool | None = None
    for item in items:
        if "trt" in item.keywords and not trt_ok:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed here (runs on a Jetson or a TensorRT machine)"))
        if "gpu" in item.keywords:
            if gpu_ok is None:
                gpu_ok = _has_cuda_gpu()
            if not gpu_ok:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU on this machine"))


@pytest.fixture(scope="session")
def market_dev_root() -> Path:
    """The real Market-1501 development subset, when this checkout sits beside shared/ (never required)."""
    if not (SHARED_MARKET / "bounding_box_train").is_dir():
        pytest.skip(f"{SHARED_MARKET} not present (optional real data)")
    return SHARED_MARKET
