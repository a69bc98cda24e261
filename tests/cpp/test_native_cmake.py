"""CMake on a stock JetPack (issue 16 item 8): TensorRT and the CUDA runtime are found without nvcc on
PATH, and the installed library ships its headers and a package config that a C++ project can use.

The JetPack layout is faked with empty headers and libraries (only configure runs on them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600


def _fake_tensorrt(root: Path) -> Path:
    (root / "include").mkdir(parents=True)
    (root / "lib").mkdir()
    for name in ("NvInfer.h", "NvOnnxParser.h"):
        (root / "include" / name).write_text("")
    (root / "include" / "NvInferVersion.h").write_text(
        "#define NV_TENSORRT_MAJOR 8\n#define NV_TENSORRT_MINOR 5\n#define NV_TENSORRT_PATCH 2\n#define NV_TENSORRT_BUILD 2\n")
    for name in ("libnvinfer.so", "libnvonnxparser.so"):
        (root / "lib" / name).write_bytes(b"")
    return root


def _fake_cuda(root: Path) -> Path:
    """JetPack's /usr/local/cuda without bin/nvcc: headers, libcudart and version.json."""
    (root / "include").mkdir(parents=True)
    (root / "lib64").mkdir()
    for name in ("cuda_runtime_api.h", "cuda_runtime.h"):
        (root / "include" / name).write_text("")
    (root / "lib64" / "libcudart.so").write_bytes(b"")
    (root / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": "11.4.315"}}))
    return root


def _configure(build: Path, *defs: str, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}  # no /usr/local/bin, /usr/local/cuda/bin: nvcc is not on PATH
    env.pop("CUDACXX", None)
    return subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DIRREID_BUILD_TESTS=OFF", *defs],
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


@pytest.fixture()
def cmake_here() -> None:
    if shutil.which("cmake") is None or not Path("/usr/bin/cmake").exists():
        pytest.skip("cmake not installed in /usr/bin (apt-get install cmake)")


def test_tensorrt_found_without_nvcc_on_path(cmake_here, tmp_path: Path) -> None:
    trt, cuda = _fake_tensorrt(tmp_path / "trt"), _fake_cuda(tmp_path / "cuda")
    r = _configure(tmp_path / "b", f"-DTensorRT_ROOT={trt}", f"-DCUDAToolkit_ROOT={cuda}", "-DIRREID_WITH_TENSORRT=ON",
                   "-DIRREID_WITH_CUDA=OFF")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "irreid-edge native: TensorRT 1 (8.5.2), CUDA runtime TRUE, CUDA preprocessing kernel 0" in r.stdout
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    assert f"TensorRT_ONNXPARSER_LIBRARY:FILEPATH={trt}/lib/libnvonnxparser.so" in cache


def test_tensorrt_on_but_missing_is_a_clear_configure_error(cmake_here, tmp_path: Path) -> None:
    cuda = _fake_cuda(tmp_path / "cuda")
    r = _configure(tmp_path / "b", f"-DTensorRT_ROOT={tmp_path / 'nothing'}", f"-DCUDAToolkit_ROOT={cuda}",
                   "-DIRREID_WITH_TENSORRT=ON", "-DIRREID_WITH_CUDA=OFF")
    if r.returncode == 0:
        pytest.skip("a real TensorRT is installed in the system paths")
    assert "IRREID_WITH_TENSORRT=ON but not found" in r.stderr and "TensorRT_ROOT" in r.stderr


def test_install_ships_headers_and_a_package_config(native_build, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    inst = subprocess.run(["cmake", "--install", str(native_build.build_dir), "--prefix", str(prefix)],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert inst.returncode == 0, inst.stderr
    headers = {p.name for p in (prefix / "include" / "irreid").glob("*.h")}
    assert {"encoder.h", "engine.h", "build.h", "sha256.h", "spec.h", "index.h", "version.h"} <= headers
    assert not any(p.suffix == ".in" for p in (prefix / "include" / "irreid").iterdir())
    assert (prefix / "bin" / "irreid-edge-native").is_file()
    # A C++ project of a user: find_package(irreid), link irreid::irreid_rt, hash like Python.
    app = tmp_path / "app"
    app.mkdir()
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(app CXX)\nfind_package(irreid 0.1 REQUIRED)\n"
        "add_executable(app main.cpp)\ntarget_link_libraries(app PRIVATE irreid::irreid_rt)\n")
    (app / "main.cpp").write_text(
        '#include <cstdio>\n#include "irreid/sha256.h"\n#include "irreid/version.h"\n'
        'int main() { std::printf("%s %s\\n", IRREID_VERSION, irreid::sha256_hex("abc", 3).c_str()); }\n')
    cfg = subprocess.run(["cmake", "-S", str(app), "-B", str(app / "b"), f"-DCMAKE_PREFIX_PATH={prefix}"],
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    assert cfg.returncode == 0, cfg.stdout[-2000:] + cfg.stderr[-2000:]
    bld = subprocess.run(["cmake", "--build", str(app / "b")], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert bld.returncode == 0, bld.stdout[-3000:] + bld.stderr[-2000:]
    out = subprocess.run([str(app / "b" / "app")], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["0.1.0", hashlib.sha256(b"abc").hexdigest()]
