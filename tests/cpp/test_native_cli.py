"""The native command's --precision and build (issue 16 items 1, 9) against real exported folders.

Without TensorRT (this machine) the choices that need no GPU are checked end to end: the options,
the refusals (an explicit int8 on a folder without int8 graphs), and `build` saying what it needs.
The engine-selection rules themselves are unit-tested in C++ (runtime/cpp/tests/test_engine.cpp,
run by test_native_parity.py::test_ctest_passes) with fabricated devices and sidecars.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def make_model_dir(folder: Path) -> Path:
    """A real exported folder (tiny rgb.onnx, ir.onnx and spec.json) from the CLI tests' fixtures."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
    from cli_fixtures import make_model_dir as make

    return make(folder)


@pytest.mark.parametrize("command", ["match", "embed", "bench", "build"])
def test_help_shows_precision_auto(native_build, command: str) -> None:
    r = native_build.run(command, "--help")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("--precision"))
    assert "auto (default" in line and "int8" in line


def test_bad_precision_is_refused_with_the_valid_values(native_build, tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m")
    for args in (["embed", "--images", str(tmp_path), "--out", str(tmp_path / "e.npy"), "--model", str(model)],
                 ["build", "--model", str(model)]):
        r = native_build.run(*args, "--precision", "fp8")
        assert r.returncode == 2, r.stderr
        assert "--precision 'fp8' is invalid; valid values: auto, fp32, fp16, int8" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_int8_without_int8_graphs_is_an_error(native_build, tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m")  # rgb.onnx and ir.onnx only
    embed = native_build.run("embed", "--images", str(tmp_path), "--out", str(tmp_path / "e.npy"), "--model", str(model),
                             "--modality", "ir", "--precision", "int8")
    assert embed.returncode == 2
    assert "has no int8 graph for ir (ir.int8.onnx)" in embed.stderr and "export.onnx --int8" in embed.stderr
    build = native_build.run("build", "--model", str(model), "--precision", "int8")
    assert build.returncode == 2
    assert "ir.int8.onnx: missing" in build.stderr or "rgb.int8.onnx: missing" in build.stderr
    assert not (model / "engines").exists()


def test_build_without_tensorrt_says_what_it_needs(native_build, tmp_path: Path) -> None:
    if "TensorRT: no" not in native_build.run("--version").stdout:
        pytest.skip("this irreid-edge-native has TensorRT; the trt tests build real engines")
    model = make_model_dir(tmp_path / "m")
    r = native_build.run("build", "--model", str(model))
    assert r.returncode == 2
    assert "built without TensorRT, so it cannot build engines" in r.stderr
    no_rgb = native_build.run("build", "--model", str(model), "--modality", "rgb,thermal")
    assert no_rgb.returncode == 2 and "valid values: rgb, ir" in no_rgb.stderr
