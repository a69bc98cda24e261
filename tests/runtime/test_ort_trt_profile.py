"""ONNX Runtime's TensorRT provider gets an explicit optimisation profile (issue 29 item 1).

The provider is absent from every CPU wheel, so the session here is ONNX Runtime's real CPU session
and only the provider list and the provider that "runs" are faked (the options the provider would
get are what is checked); the ONNX reading, the runner, the encoder's batch splitting are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from tiny_onnx import make_tiny_onnx, make_tiny_spec

from runtime.backends import ort as ort_backend
from runtime.backends.onnx_graph import graph_input
from runtime.encoder import open_encoder
from runtime.model_dir import write_model_dir_specs

H, W, D = 32, 16, 24
TRT_EP = "TensorrtExecutionProvider"


def test_graph_input_reads_name_and_shape_without_onnx(tmp_path: Path) -> None:
    path = make_tiny_onnx(tmp_path / "ir.onnx", make_tiny_spec("ir", H, W, D))
    assert graph_input(path) == ("images", (-1, 3, H, W))
    model = onnx.load(str(path))  # an older exporter's layout: weights listed as graph inputs first
    weights = [onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in model.graph.initializer]
    images = list(model.graph.input)
    del model.graph.input[:]
    model.graph.input.extend([*weights, *images])
    onnx.save(model, str(tmp_path / "old.onnx"))
    assert graph_input(tmp_path / "old.onnx") == ("images", (-1, 3, H, W))
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    assert graph_input(tmp_path / "junk.onnx") is None


class _TrtSession:
    """A CPU session that reports the TensorRT provider in front, as ORT does when that provider loads."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def get_providers(self) -> list[str]:
        return [TRT_EP, *self._session.get_providers()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@pytest.fixture
def trt_ep(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import onnxruntime

    seen: list[Any] = []
    real_load = ort_backend.load_session
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: [TRT_EP, "CUDAExecutionProvider", "CPUExecutionProvider"])

    def load(path: Path, opts: Any = None, providers: Any = None) -> Any:
        seen.append(providers)
        return _TrtSession(real_load(path, opts, ["CPUExecutionProvider"]))

    monkeypatch.setattr(ort_backend, "load_session", load)
    return seen


def _export(tmp_path: Path) -> Path:
    model = tmp_path / "export"
    spec = make_tiny_spec("ir", H, W, D)
    make_tiny_onnx(model / "ir.onnx", spec)
    write_model_dir_specs(model, {"ir": spec})
    return model


def test_tensorrt_provider_options_carry_the_build_profile(tmp_path: Path, trt_ep: list[Any]) -> None:
    model = _export(tmp_path)
    enc = open_encoder(model, "ir", "fp32", backend="onnxruntime-tensorrt", verbose=False)
    name, options = trt_ep[0][0]
    assert name == TRT_EP
    assert (options["trt_profile_min_shapes"], options["trt_profile_opt_shapes"], options["trt_profile_max_shapes"]) \
        == (f"images:1x3x{H}x{W}", f"images:8x3x{H}x{W}", f"images:32x3x{H}x{W}")
    assert options["trt_engine_cache_enable"] is True
    assert all(not opts for _, opts in trt_ep[0][1:])  # CUDA / CPU fallbacks take no TensorRT options
    assert enc.backend == "onnxruntime-tensorrt" and enc.max_batch == 32  # capped to the profile
    x = np.random.default_rng(0).uniform(0, 255, (40, 3, H, W)).astype(np.float32)  # 40 > 32: split 32 + 8
    cpu = open_encoder(model, "ir", "fp32", backend="onnxruntime-cpu", verbose=False)
    assert np.allclose(enc.embed(x), cpu.embed(x), atol=1e-5)


def test_fixed_batch_graph_gets_its_own_batch(tmp_path: Path, trt_ep: list[Any]) -> None:
    path = make_tiny_onnx(tmp_path / "osnet.onnx", make_tiny_spec("rgb", H, W, D))
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4  # exported with batch 4
    onnx.save(model, str(path))
    enc = open_encoder(path, "rgb", backend="onnxruntime-tensorrt", verbose=False)
    options = trt_ep[0][0][1]
    assert options["trt_profile_min_shapes"] == options["trt_profile_max_shapes"] == f"images:4x3x{H}x{W}"
    assert enc.max_batch == 4
