"""runtime.encoder on CPU: the ONNX Runtime backend end to end on tiny exported-model folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tiny_onnx import make_tiny_onnx, make_tiny_spec

from runtime import encoder as enc
from runtime.encoder import choose_backend, open_encoder, resolve_onnx
from runtime.fileio import file_sha256
from runtime.model_dir import write_model_dir_specs
from runtime.spec import SpecError

H, W, D = 32, 16, 24


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    specs = {m: make_tiny_spec(m, H, W, D) for m in ("rgb", "ir")}
    for seed, (m, s) in enumerate(specs.items()):
        make_tiny_onnx(tmp_path / f"{m}.onnx", s, seed=seed)
    write_model_dir_specs(tmp_path, specs)
    return tmp_path


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 3, H, W)).astype(np.float32)


def test_ort_cpu_matches_a_plain_session(model_dir: Path) -> None:
    e = open_encoder(model_dir, "ir", verbose=False)
    x = _batch(5)
    ref = ort.InferenceSession(str(model_dir / "ir.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]
    out = e.embed(x)
    assert e.backend == "onnxruntime-cpu"
    assert e.max_batch is None
    assert out.dtype == np.float32 and out.shape == (5, D)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_spec_carries_the_loaded_files_sha(model_dir: Path) -> None:
    e = open_encoder(model_dir, "rgb", verbose=False)
    assert e.spec.modality == "rgb"
    assert e.spec.onnx_sha256 == file_sha256(model_dir / "rgb.onnx")
    assert (e.spec.input_height, e.spec.input_width, e.spec.embedding_dim) == (H, W, D)


def test_modalities_are_different_encoders(model_dir: Path) -> None:
    x = _batch(2)
    a = open_encoder(model_dir, "rgb", verbose=False).embed(x)
    b = open_encoder(model_dir, "ir", verbose=False).embed(x)
    assert not np.allclose(a, b)


def test_empty_batch(model_dir: Path) -> None:
    out = open_encoder(model_dir, "ir", verbose=False).embed(np.zeros((0, 3, H, W), np.float32))
    assert out.shape == (0, D) and out.dtype == np.float32


@pytest.mark.parametrize(("bad", "got"), [
    (np.zeros((2, 3, H, W), np.float64), "got float64 (2, 3, 32, 16)"),
    (np.zeros((2, 3, W, H), np.float32), "got float32 (2, 3, 16, 32)"),
    (np.zeros((3, H, W), np.float32), "got float32 (3, 32, 16)"),
    (np.zeros((2, 1, H, W), np.float32), "got float32 (2, 1, 32, 16)"),
    ([[1.0]], "got list"),
])
def test_wrong_input_is_refused_in_one_line(model_dir: Path, bad: object, got: str) -> None:
    e = open_encoder(model_dir, "ir", verbose=False)
    with pytest.raises(ValueError, match=r"expected float32 \(N, 3, 32, 16\)") as info:
        e.embed(bad)  # type: ignore[arg-type]
    assert got in str(info.value) and "\n" not in str(info.value)


def test_embedded_spec_disagreeing_with_spec_json_is_refused(tmp_path: Path) -> None:
    good = make_tiny_spec("ir", H, W, D)
    make_tiny_onnx(tmp_path / "ir.onnx", make_tiny_spec("ir", 64, 32, D))  # from another export
    write_model_dir_specs(tmp_path, {"ir": good})
    with pytest.raises(SpecError, match=r"input_height 64 != 32.*re-export"):
        open_encoder(tmp_path, "ir", verbose=False)


def test_embedded_modality_disagreeing_is_refused(tmp_path: Path) -> None:
    make_tiny_onnx(tmp_path / "ir.onnx", make_tiny_spec("rgb", H, W, D))
    write_model_dir_specs(tmp_path, {"ir": make_tiny_spec("ir", H, W, D)})
    with pytest.raises(SpecError, match="modality rgb != ir"):
        open_encoder(tmp_path, "ir", verbose=False)


def test_missing_modality_and_folder(model_dir: Path, tmp_path: Path) -> None:
    write_model_dir_specs(model_dir, {"rgb": make_tiny_spec("rgb", H, W, D)})
    with pytest.raises(SpecError, match="no 'ir' encoder"):
        open_encoder(model_dir, "ir", verbose=False)
    with pytest.raises(SpecError, match="not found"):
        open_encoder(tmp_path / "nope", "ir", verbose=False)


def test_missing_precision_falls_back_with_a_message(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    e = open_encoder(model_dir, "ir", precision="fp16", verbose=True)
    err = capsys.readouterr().err
    assert "ir.fp16.onnx not found" in err and "using ir.onnx (fp32)" in err and "--fp16" in err
    assert e.spec.precision == "fp32"


def test_int8_cpu_prefers_the_cpu_graph_then_the_trt_graph(model_dir: Path) -> None:
    (model_dir / "ir.int8.onnx").write_bytes((model_dir / "ir.onnx").read_bytes())
    assert resolve_onnx(model_dir, "ir", "int8", "cpu", verbose=False) == (model_dir / "ir.int8.onnx", "int8")
    (model_dir / "ir.int8-cpu.onnx").write_bytes((model_dir / "ir.onnx").read_bytes())
    assert resolve_onnx(model_dir, "ir", "int8", "cpu", verbose=False) == (model_dir / "ir.int8-cpu.onnx", "int8")
    with pytest.raises(SpecError, match=r"ir.fp16.onnx: not found; export it with `python -m export.onnx --fp16`"):
        resolve_onnx(model_dir, "ir", "fp16", "trt", fallback=False)


def test_backend_announced_once(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc._printed.clear()
    open_encoder(model_dir, "ir", backend="onnxruntime-cpu")
    open_encoder(model_dir, "rgb", backend="onnxruntime-cpu")
    lines = [s for s in capsys.readouterr().err.splitlines() if "backend" in s]
    assert lines == ["irreid-edge: backend onnxruntime-cpu (requested)"]


def test_threads_option(model_dir: Path) -> None:
    e = open_encoder(model_dir, "ir", verbose=False, threads=1)
    assert e.embed(_batch(1)).shape == (1, D)


# -- backend choice: pure logic over fabricated environments ---------------------------------------
CPU_ONLY = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
ORT_TRT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(("requested", "trt_problem", "providers", "want"), [
    ("auto", None, CPU_ONLY, ("tensorrt", "TensorRT engine found")),
    ("auto", "TensorRT not installed", CPU_ONLY, ("onnxruntime-cpu", "TensorRT not installed; no CUDA provider")),
    ("auto", "TensorRT not installed", CUDA, ("onnxruntime-cuda", "TensorRT not installed")),
    ("auto", "no fp16 engine built", ORT_TRT, ("onnxruntime-tensorrt", "no fp16 engine built")),
    ("onnxruntime", None, CUDA, ("onnxruntime-cuda", "requested")),
    ("onnxruntime", None, CPU_ONLY, ("onnxruntime-cpu", "no CUDA provider")),
    ("onnxruntime-cpu", None, ORT_TRT, ("onnxruntime-cpu", "requested")),
    ("tensorrt", None, CPU_ONLY, ("tensorrt", "requested")),
])
def test_choose_backend(requested: str, trt_problem: str | None, providers: list[str],
                        want: tuple[str, str]) -> None:
    assert choose_backend(requested, trt_problem, providers) == want


def test_choose_backend_refuses_what_is_missing() -> None:
    with pytest.raises(ValueError, match="tensorrt is unavailable: TensorRT not installed"):
        choose_backend("tensorrt", "TensorRT not installed", CUDA)
    with pytest.raises(ValueError, match=r"onnxruntime-cuda is unavailable.*onnxruntime-gpu"):
        choose_backend("onnxruntime-cuda", None, CPU_ONLY)
    with pytest.raises(ValueError, match="valid values: auto, tensorrt, onnxruntime"):
        choose_backend("cuda", None, CPU_ONLY)


def test_explicit_tensorrt_without_tensorrt_is_refused(model_dir: Path) -> None:
    from runtime.trt_compat import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(ValueError, match="backend tensorrt is unavailable: TensorRT"):
        open_encoder(model_dir, "ir", backend="tensorrt", verbose=False)
