"""`irreid-edge deepstream-config`: the nvinfer secondary-model config, read back as nvinfer's key-file."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from tiny_onnx import make_tiny_onnx, make_tiny_spec

from runtime.backends.engine import EngineKey, engine_path, write_engine
from runtime.cli import main as cli_main
from runtime.model_dir import write_model_dir_specs

H, W, D = 32, 16, 24


@pytest.fixture
def export(tmp_path: Path) -> Path:
    model = tmp_path / "export"
    for m in ("rgb", "ir"):
        make_tiny_onnx(model / f"{m}.onnx", make_tiny_spec(m, H, W, D))
    make_tiny_onnx(model / "rgb.fp16.onnx", make_tiny_spec("rgb", H, W, D).replace(precision="fp16"))
    write_model_dir_specs(model, {m: make_tiny_spec(m, H, W, D) for m in ("rgb", "ir")})
    return model


def _read(path: Path) -> dict[str, str]:
    cp = configparser.ConfigParser()
    cp.read(path)
    return dict(cp["property"])


def test_raw_pixel_graph_gets_unit_scale_rgb_and_tensor_meta(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds" / "sgie_rgb.txt"
    assert cli_main(["deepstream-config", "--model", str(export), "--out", str(out), "--batch-size", "8"]) == 0
    cfg = _read(out)
    assert cfg["net-scale-factor"] == "1" and cfg["offsets"] == "0;0;0" and cfg["model-color-format"] == "0"
    assert (cfg["network-type"], cfg["output-tensor-meta"], cfg["process-mode"]) == ("100", "1", "2")
    assert cfg["infer-dims"] == f"3;{H};{W}" and cfg["batch-size"] == "8" and cfg["network-mode"] == "0"
    assert (out.parent / cfg["onnx-file"]).resolve() == (export / "rgb.onnx").resolve()  # relative to the config
    assert "model-engine-file" not in cfg


def test_a_built_engine_is_named_with_its_precision(export: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = make_tiny_spec("rgb", H, W, D).replace(precision="fp16")
    write_engine(engine_path(export, "rgb", "fp16"), b"plan",
                 EngineKey("0" * 64, "10.3.0.30", "Orin", "8.7", "fp16", (1, 8, 16)), spec, {})
    out = tmp_path / "sgie.txt"
    assert cli_main(["deepstream-config", "--model", str(export), "--out", str(out)]) == 0
    cfg = _read(out)
    assert cfg["network-mode"] == "2" and cfg["model-engine-file"].endswith("engines/rgb.fp16.engine")
    assert cfg["onnx-file"].endswith("rgb.fp16.onnx")
    assert cli_main(["deepstream-config", "--model", str(export), "--out", str(out), "--batch-size", "32"]) == 0
    assert "above rgb.fp16.engine's profile max 16" in capsys.readouterr().out


def test_foreign_model_normalised_by_the_runtime(tmp_path: Path) -> None:
    spec = make_tiny_spec("rgb", H, W, D, normalize="preprocess", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    onnx = make_tiny_onnx(tmp_path / "reid.onnx", spec)
    out = tmp_path / "sgie.txt"
    assert cli_main(["deepstream-config", "--model", str(onnx), "--out", str(out)]) == 0
    cfg = _read(out)
    assert float(cfg["net-scale-factor"]) == pytest.approx(1 / 63.75) and cfg["offsets"] == "127.5;127.5;127.5"


def test_per_channel_std_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = make_tiny_onnx(tmp_path / "reid.onnx", make_tiny_spec("rgb", H, W, D, normalize="preprocess"))
    assert cli_main(["deepstream-config", "--model", str(onnx), "--out", str(tmp_path / "x.txt")]) == 2
    assert "one net-scale-factor" in capsys.readouterr().err


def test_a_dla_engine_is_loaded_on_its_core(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29 item 5: nvinfer runs an engine on DLA only when told (enable-dla, use-dla-core), and a
    DLA profile is one fixed batch."""
    spec = make_tiny_spec("rgb", H, W, D).replace(precision="fp16")
    write_engine(engine_path(export, "rgb", "fp16", dla_core=1), b"plan",
                 EngineKey("0" * 64, "10.3.0.30", "Orin", "8.7", "fp16", (8, 8, 8), dla_core=1), spec, {})
    out = tmp_path / "sgie.txt"
    assert cli_main(["deepstream-config", "--model", str(export), "--out", str(out), "--batch-size", "8"]) == 0
    cfg = _read(out)
    assert (cfg["enable-dla"], cfg["use-dla-core"], cfg["network-mode"]) == ("1", "1", "2")
    assert cfg["model-engine-file"].endswith("engines/rgb.fp16.dla1.engine")
    assert "warning" not in capsys.readouterr().out
    assert cli_main(["deepstream-config", "--model", str(export), "--out", str(out), "--batch-size", "4"]) == 0
    assert "runs one fixed batch of 8 on DLA core 1" in capsys.readouterr().out
    assert cli_main(["deepstream-config", "--model", str(export), "--out", str(out), "--dla-core", "0"]) == 0
    cfg = _read(out)  # no engine for core 0: the graph, for nvinfer to build, and no DLA keys
    assert "model-engine-file" not in cfg and "enable-dla" not in cfg
