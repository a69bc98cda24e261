"""The TensorRT build stages against a fake ``tensorrt`` module (tests/runtime/fake_trt.py), for what
cannot run here: issue 16 defects 4 (fixed-batch profile), 6 (fp32 region of weakly typed builds),
7 (engine key) and `build --dla-core`. Everything but TensorRT and CUDA is the real code: the CLI,
the ONNX files, the plan, the sidecar. The real-TensorRT twins of these tests are in
test_trt_engines.py (marked `trt`)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import fake_trt
import onnx
import pytest
from tiny_onnx import make_tiny_onnx, make_tiny_spec

from runtime.backends import cuda_mem, trt_build
from runtime.backends import engine as engine_mod
from runtime.backends import trt as trt_backend
from runtime.backends.engine import engine_path, read_sidecar
from runtime.cli import main as cli_main
from runtime.model_dir import write_model_dir_specs

H, W, D = 32, 16, 24
ORIN_NX_8GB = types.SimpleNamespace(name="Orin", compute_capability="8.7", sm_count=8, total_memory=7_620 * 2**20)
RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"


class _Cuda:
    def device(self) -> types.SimpleNamespace:
        return ORIN_NX_8GB


@pytest.fixture
def trt_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    version = getattr(request, "param", "10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt.module(version))
    monkeypatch.setattr(trt_build, "_LOGGER", None)
    monkeypatch.setattr(trt_backend, "trt_unavailable_reason", lambda: None)
    monkeypatch.setattr(cuda_mem, "load_cuda", lambda: _Cuda())
    release = tmp_path / "nv_tegra_release"
    release.write_text(RELEASE)
    monkeypatch.setattr(engine_mod, "NV_TEGRA_RELEASE", release, raising=False)
    return version


def _folder(tmp_path: Path, precision: str = "fp16") -> Path:
    model = tmp_path / "export"
    spec = make_tiny_spec("ir", H, W, D)
    make_tiny_onnx(model / "ir.onnx", spec)
    make_tiny_onnx(model / f"ir.{precision}.onnx", spec.replace(precision=precision))
    write_model_dir_specs(model, {"ir": spec})
    return model


def _record(engine: Path) -> dict:
    return json.loads(engine.read_bytes())


def test_fixed_batch_foreign_model_gets_min_opt_max_equal(trt_version: str, tmp_path: Path) -> None:
    """Defect 4: TensorRT requires min = opt = max for a static batch dimension."""
    path = make_tiny_onnx(tmp_path / "osnet.onnx", make_tiny_spec("rgb", H, W, D))
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # exported with batch 1
    onnx.save(model, str(path))
    assert cli_main(["build", "--model", str(path), "--precision", "fp32"]) == 0
    engine = engine_path(path, "rgb", "fp32", is_dir=False)
    assert _record(engine)["profile"] == [[1, 3, H, W]] * 3
    assert read_sidecar(engine)[0].profile == (1, 1, 1)


def test_dynamic_batch_keeps_the_requested_profile(trt_version: str, tmp_path: Path) -> None:
    model = _folder(tmp_path)
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--max-batch", "16", "--opt-batch", "4"]) == 0
    assert _record(engine_path(model, "ir", "fp16"))["profile"] == [[1, 3, H, W], [4, 3, H, W], [16, 3, H, W]]


# tiny graph layers: 0 Sub, 1 Div, 2 Conv, 3 Relu, 4 AveragePool, 5 Reshape, 6 MatMul,
# LpNormalization: 7 x*x, 8 sum-reduce, 9 sqrt, 10 x / norm
L2_REGION = [7, 8, 9, 10]


@pytest.mark.parametrize("trt_version", ["8.5.2.2", "8.6.2.3"], indirect=True)
def test_weakly_typed_fp16_build_keeps_the_l2_region_fp32(trt_version: str, tmp_path: Path) -> None:
    """Defect 6: TensorRT 8.5/8.6 build weakly typed; FP16 alone lets it run the L2 norm in fp16."""
    model = _folder(tmp_path)
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--precision", "fp16"]) == 0
    rec = _record(engine_path(model, "ir", "fp16"))
    assert rec["flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert rec["fp32_layers"] == L2_REGION
    side = json.loads((engine_path(model, "ir", "fp16").with_suffix(".engine.json")).read_text())
    assert side["build"]["fp32_pinned_layers"] == len(L2_REGION)


def test_fp32_graph_built_as_fp16_on_10x_pins_the_region(trt_version: str, tmp_path: Path) -> None:
    """Defect 6 on 10.x: a foreign fp32 graph asked for fp16 is the weakly typed case there."""
    path = make_tiny_onnx(tmp_path / "osnet.onnx", make_tiny_spec("rgb", H, W, D))
    assert cli_main(["build", "--model", str(path), "--precision", "fp16"]) == 0
    rec = _record(engine_path(path, "rgb", "fp16", is_dir=False))
    assert "OBEY_PRECISION_CONSTRAINTS" in rec["flags"] and rec["fp32_layers"] == L2_REGION


def test_strongly_typed_build_sets_no_layer_precision(trt_version: str, tmp_path: Path) -> None:
    """Strongly typed networks refuse layer precisions; the graph's own Casts carry the fp32 region."""
    model = _folder(tmp_path)
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--precision", "fp16"]) == 0
    rec = _record(engine_path(model, "ir", "fp16"))
    assert rec["flags"] == [] and rec["fp32_layers"] == []


def test_engine_key_records_what_tells_orin_modules_apart(trt_version: str, tmp_path: Path) -> None:
    """Defect 7: SM count, memory and the L4T release are in the key."""
    model = _folder(tmp_path)
    assert cli_main(["build", "--model", str(model), "--modality", "ir"]) == 0
    key = read_sidecar(engine_path(model, "ir", "fp16"))[0]
    assert (key.sm_count, key.total_memory_gib, key.l4t_release, key.dla_core) == (8, 7, "36.4.3", None)


def test_dla_is_refused_where_the_device_has_none(trt_version: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    model = _folder(tmp_path)
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--dla-core", "0"]) == 2
    err = capsys.readouterr().err
    assert "--dla-core 0: this device has no DLA" in err and "build without --dla-core" in err
    assert not engine_path(model, "ir", "fp16").exists()


def test_dla_build_uses_the_core_with_gpu_fallback_and_a_fixed_batch(trt_version: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys.modules["tensorrt"].Builder, "num_DLA_cores", 2)
    model = _folder(tmp_path)
    assert cli_main(["build", "--model", str(model), "--modality", "ir"]) == 0  # the GPU engine first
    gpu = engine_path(model, "ir", "fp16")
    gpu_bytes = gpu.read_bytes()
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--dla-core", "1", "--max-batch", "4"]) == 0
    dla = engine_path(model, "ir", "fp16", dla_core=1)
    assert dla.name == "ir.fp16.dla1.engine"
    assert gpu.read_bytes() == gpu_bytes  # issue 29 item 5: a DLA build no longer overwrites the GPU engine
    rec = _record(dla)
    assert (rec["device"], rec["dla_core"]) == ("DLA", 1)
    assert "GPU_FALLBACK" in rec["flags"] and "FP16" in rec["flags"]  # before 11 DLA gets fp16 through the flag
    assert rec["profile"] == [[4, 3, H, W]] * 3
    assert read_sidecar(dla)[0].dla_core == 1 and read_sidecar(gpu)[0].dla_core is None
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--dla-core", "2"]) == 2
    assert "has 2 DLA core(s), numbered 0..1" in capsys.readouterr().err
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--dla-core", "0", "--precision", "fp32"]) == 2
    assert "DLA runs fp16 and int8 only" in capsys.readouterr().err


# -- issue 29 item 2: `build` with no flags after a plain export -------------------------------------
def _plain_export(tmp_path: Path, *extra: str) -> Path:
    """What `python -m export.onnx` writes without --fp16/--int8: fp32 graphs only (+ ``extra``)."""
    model = tmp_path / "export"
    specs = {m: make_tiny_spec(m, H, W, D) for m in ("rgb", "ir")}
    for m, spec in specs.items():
        make_tiny_onnx(model / f"{m}.onnx", spec)
        for prec in extra:
            make_tiny_onnx(model / f"{m}.{prec}.onnx", spec.replace(precision=prec))
    write_model_dir_specs(model, specs)
    return model


def test_build_with_no_flags_after_a_plain_export(trt_version: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    model = _plain_export(tmp_path)
    assert cli_main(["build", "--model", str(model)]) == 0
    assert all(engine_path(model, m, "fp32").is_file() for m in ("rgb", "ir"))
    assert "ir encoder: building fp32 (auto: the fastest graph exported)" in capsys.readouterr().err


def test_build_auto_picks_the_fastest_graph_exported(trt_version: str, tmp_path: Path) -> None:
    model = _plain_export(tmp_path, "fp16", "int8")
    assert cli_main(["build", "--model", str(model), "--modality", "ir"]) == 0
    assert engine_path(model, "ir", "int8").is_file() and not engine_path(model, "ir", "fp16").exists()
    assert read_sidecar(engine_path(model, "ir", "int8"))[0].precision == "int8"


def test_every_build_hint_names_a_precision_that_exists(trt_version: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A missing fp16 graph advises --precision auto, which `build` accepts; with no engine built,
    the runtime's fallback line advises `build --precision auto`, not an fp16 that was never exported."""
    from runtime.encoder import open_encoder

    model = _plain_export(tmp_path)
    assert cli_main(["build", "--model", str(model), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "rgb.fp16.onnx: not found" in err and "--precision auto" in err
    enc = open_encoder(model, "ir", backend="auto", verbose=True)
    err = capsys.readouterr().err
    assert enc.backend == "onnxruntime-cpu" and "--precision auto --modality ir" in err and "fp16" not in err
    assert cli_main(["build", "--model", str(model), "--precision", "auto", "--modality", "ir"]) == 0


@pytest.mark.parametrize("trt_version", ["8.5.2.2", "10.3.0.30"], indirect=True)
def test_int8_on_dla_needs_explicit_quantisation(trt_version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29 item 5: TensorRT 8.x has no explicit (Q/DQ) int8 on DLA; our int8 graph is Q/DQ, so
    int8 + --dla-core is refused there and `auto` builds fp16 for DLA; 10.x builds it."""
    monkeypatch.setattr(sys.modules["tensorrt"].Builder, "num_DLA_cores", 2)
    model = _plain_export(tmp_path, "fp16", "int8")
    code = cli_main(["build", "--model", str(model), "--modality", "ir", "--dla-core", "0", "--precision", "int8"])
    err = capsys.readouterr().err
    assert cli_main(["build", "--model", str(model), "--modality", "ir", "--dla-core", "1"]) == 0  # auto
    if trt_version.startswith("8."):
        assert code == 2 and "no explicit (Q/DQ) int8 on DLA" in err and "--precision fp16 with --dla-core" in err
        assert not engine_path(model, "ir", "int8", dla_core=0).exists()
        assert engine_path(model, "ir", "fp16", dla_core=1).is_file()  # auto skipped the int8 graph
    else:
        assert code == 0 and engine_path(model, "ir", "int8", dla_core=0).is_file()
        assert engine_path(model, "ir", "int8", dla_core=1).is_file()
