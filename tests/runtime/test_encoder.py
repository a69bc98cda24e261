"""runtime.encoder on CPU: the ONNX Runtime backend end to end on tiny exported-model folders."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
import pytest
from tiny_onnx import make_tiny_onnx, make_tiny_spec

from runtime import encoder as enc
from runtime.base.fileio import file_sha256
from runtime.encoder import choose_backend, open_encoder, resolve_onnx
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


@pytest.mark.parametrize(("precision", "flag"), [("fp16", "--fp16"), ("int8", "--int8 --calib DIR")])
def test_explicit_precision_not_exported_is_an_error(model_dir: Path, precision: str, flag: str) -> None:
    """Issue 16 defect 1: --precision int8 on a folder without int8 graphs is an error, not a silent fp32 run."""
    with pytest.raises(SpecError, match=rf"ir\.{precision}.*not found; export it with `python -m export.onnx {flag}`"):
        open_encoder(model_dir, "ir", precision=precision, verbose=False)


def test_auto_precision_is_the_default_and_runs_fp32_on_the_cpu(model_dir: Path) -> None:
    """auto on the CPU provider: the fp32 graph even when fp16 / int8-cpu graphs exist (int8 is opt-in there)."""
    for name, prec in (("ir.fp16.onnx", "fp16"), ("ir.int8-cpu.onnx", "int8")):
        make_tiny_onnx(model_dir / name, make_tiny_spec("ir", H, W, D).replace(precision=prec), seed=1)
    e = open_encoder(model_dir, "ir", verbose=False)
    assert (e.backend, e.spec.precision) == ("onnxruntime-cpu", "fp32")
    assert e.spec.onnx_sha256 == file_sha256(model_dir / "ir.onnx")
    assert open_encoder(model_dir, "ir", precision="int8", verbose=False).spec.precision == "int8"
    with pytest.raises(ValueError, match="precision 'bf16' is invalid; valid values: auto, fp32, fp16, int8"):
        open_encoder(model_dir, "ir", precision="bf16", verbose=False)


def test_int8_cpu_prefers_the_cpu_graph_then_the_trt_graph(model_dir: Path) -> None:
    (model_dir / "ir.int8.onnx").write_bytes((model_dir / "ir.onnx").read_bytes())
    assert resolve_onnx(model_dir, "ir", "int8", "cpu", verbose=False) == (model_dir / "ir.int8.onnx", "int8")
    (model_dir / "ir.int8-cpu.onnx").write_bytes((model_dir / "ir.onnx").read_bytes())
    assert resolve_onnx(model_dir, "ir", "int8", "cpu", verbose=False) == (model_dir / "ir.int8-cpu.onnx", "int8")
    with pytest.raises(SpecError, match=r"ir.fp16.onnx: not found; export it with `python -m export.onnx --fp16`"):
        resolve_onnx(model_dir, "ir", "fp16", "trt", fallback=False)


def test_the_trt_target_never_falls_back_to_the_cpu_int8_graph(model_dir: Path) -> None:
    """TensorRT's parser rejects the CPU graph's uint8 asymmetric Q/DQ (issue 16 defect 5)."""
    (model_dir / "ir.int8-cpu.onnx").write_bytes((model_dir / "ir.onnx").read_bytes())
    with pytest.raises(SpecError, match=r"ir\.int8\.onnx: not found"):
        resolve_onnx(model_dir, "ir", "int8", "trt", verbose=False)


class _RecordingRunner:
    """Stands in for OrtRunner where ONNX Runtime's TensorRT / CUDA providers are absent (this CI)."""

    opened: ClassVar[list[tuple[Path, str, str]]] = []

    def __init__(self, path: Path, backend: str = "onnxruntime-cpu", threads: int | None = None,
                 cache_dir: Path | None = None, precision: str = "fp32") -> None:
        self.opened.append((Path(path), backend, precision))
        self.backend, self.max_batch, self.static_batch, self.metadata = backend, None, None, {}


@pytest.mark.parametrize(("backend", "precision", "graph", "runs"), [
    # issue 16 defect 5: ORT's TensorRT EP gets the TensorRT int8 graph, never the CPU one
    ("onnxruntime-tensorrt", "int8", "ir.int8.onnx", "int8"),
    ("onnxruntime-cuda", "int8", "ir.int8-cpu.onnx", "int8"),
    # --precision auto on a GPU provider: the fp16 graph (TensorRT-flavoured for the TensorRT EP)
    ("onnxruntime-tensorrt", "auto", "ir.fp16.onnx", "fp16"),
    ("onnxruntime-cuda", "auto", "ir.fp16.onnx", "fp16"),
])
def test_gpu_providers_get_the_graph_made_for_them(model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                    backend: str, precision: str, graph: str, runs: str) -> None:
    from runtime.backends import ort as ort_backend

    for name in ("ir.int8.onnx", "ir.int8-cpu.onnx", "ir.fp16.onnx"):
        (model_dir / name).write_bytes((model_dir / "ir.onnx").read_bytes())
    monkeypatch.setattr(ort_backend, "available_providers", lambda: ORT_TRT)
    monkeypatch.setattr(ort_backend, "OrtRunner", _RecordingRunner)
    _RecordingRunner.opened = []
    e = open_encoder(model_dir, "ir", precision=precision, backend=backend, verbose=False)
    assert _RecordingRunner.opened == [(model_dir / graph, backend, runs)]
    assert (e.backend, e.spec.precision) == (backend, runs)


def test_backend_announced_once(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc._printed.clear()
    open_encoder(model_dir, "ir", backend="onnxruntime-cpu")
    open_encoder(model_dir, "rgb", backend="onnxruntime-cpu")
    lines = [s for s in capsys.readouterr().err.splitlines() if "backend" in s]
    assert lines == ["irreid-edge: backend onnxruntime-cpu, precision fp32 (requested)"]


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
    # no ONNX Runtime at all (the core package depends on none): the install line, per machine
    with pytest.raises(ValueError, match=r'onnxruntime-cpu is unavailable: ONNX Runtime is not installed.*"\.\[cpu\]"'):
        choose_backend("onnxruntime-cpu", None, [])
    with pytest.raises(ValueError, match=r"no backend available \(TensorRT not installed\).*docs/install.md"):
        choose_backend("auto", "TensorRT not installed", [])


def test_explicit_tensorrt_without_tensorrt_is_refused(model_dir: Path) -> None:
    from runtime.backends.trt_compat import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(ValueError, match="backend tensorrt is unavailable: TensorRT"):
        open_encoder(model_dir, "ir", backend="tensorrt", verbose=False)


def test_tensorrt_provider_flags_follow_the_graph(tmp_path: Path) -> None:
    from runtime.backends.ort import _provider_options

    int8 = _provider_options("TensorrtExecutionProvider", tmp_path, "int8")
    assert int8["trt_int8_enable"] and int8["trt_fp16_enable"]  # the TensorRT int8 graph has fp16 around its Q/DQ
    fp32 = _provider_options("TensorrtExecutionProvider", tmp_path, "fp32")
    assert not fp32["trt_int8_enable"] and not fp32["trt_fp16_enable"]
    assert _provider_options("CUDAExecutionProvider", tmp_path, "int8") == {}


class _FakeTrtRunner:
    max_batch, static_batch = 8, None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.ones((batch.shape[0], D), np.float32)


def test_auto_opens_the_fastest_engine_built_here(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16 defect 1: int8 > fp16 > fp32 among the engines built for this device; one built for
    another setup is skipped. TensorRT is absent here: the engine opener is replaced, the choice is real."""
    from runtime.backends import trt as trt_backend
    from runtime.backends.engine import EngineMismatchError, engine_path

    for prec in ("fp16", "int8"):
        engine_path(model_dir, "ir", prec).parent.mkdir(exist_ok=True)
        engine_path(model_dir, "ir", prec).write_bytes(b"plan")
    opened: list[str] = []
    refuse = {"int8"}

    def fake_open(model, is_dir, modality, precision, folder, path=None):  # type: ignore[no-untyped-def]
        opened.append(precision)
        if precision in refuse:
            raise EngineMismatchError(f"{precision}: built for another setup (GPU X (engine) != Orin (here))")
        return _FakeTrtRunner(), make_tiny_spec("ir", H, W, D).replace(precision=precision)

    monkeypatch.setattr(trt_backend, "trt_unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_backend, "open_trt_encoder_runner", fake_open)
    e = open_encoder(model_dir, "ir", verbose=False)
    assert (e.backend, e.spec.precision, opened) == ("tensorrt", "fp16", ["int8", "fp16"])
    refuse.clear()
    opened.clear()
    assert open_encoder(model_dir, "ir", verbose=False).spec.precision == "int8" and opened == ["int8"]
    # an explicit precision opens only that engine; without one built, ONNX Runtime runs that graph
    opened.clear()
    assert open_encoder(model_dir, "ir", precision="fp32", verbose=False).backend == "onnxruntime-cpu"
    assert opened == []


def test_dla_engines_have_their_own_files_and_are_chosen(model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29 item 5: per precision the GPU engine runs first, a DLA-only build still runs, and
    --dla-core N (open_encoder(dla_core=N)) runs that core's engine; the rebuild hint names the core."""
    from runtime.backends import trt as trt_backend
    from runtime.backends.engine import built_engines, engine_path

    opened: list[str] = []

    def fake_open(model, is_dir, modality, precision, folder, path=None):  # type: ignore[no-untyped-def]
        opened.append(path.name)
        runner = _FakeTrtRunner()
        runner.dla_core = int(path.name.split(".dla")[1].split(".")[0]) if ".dla" in path.name else None  # type: ignore[attr-defined]
        return runner, make_tiny_spec("ir", H, W, D).replace(precision=precision)

    monkeypatch.setattr(trt_backend, "trt_unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_backend, "open_trt_encoder_runner", fake_open)
    dla0 = engine_path(model_dir, "ir", "fp16", dla_core=0)
    dla0.parent.mkdir(exist_ok=True)
    dla0.write_bytes(b"plan")
    (dla0.parent / "ir.fp16.dlaX.engine").write_bytes(b"not a core")  # not an engine name: ignored
    assert built_engines(model_dir, "ir", "fp16") == [dla0]
    open_encoder(model_dir, "ir", verbose=True)
    assert opened == ["ir.fp16.dla0.engine"] and "DLA core 0" in capsys.readouterr().err
    engine_path(model_dir, "ir", "fp16").write_bytes(b"plan")
    opened.clear()
    open_encoder(model_dir, "ir", verbose=False)
    open_encoder(model_dir, "ir", verbose=False, dla_core=0)
    assert opened == ["ir.fp16.engine", "ir.fp16.dla0.engine"]
    e = open_encoder(model_dir, "ir", verbose=True, dla_core=1)  # none built for core 1: ONNX Runtime, with the hint
    assert e.backend == "onnxruntime-cpu"
    assert "no engine built for DLA core 1; run `irreid-edge build" in capsys.readouterr().err
