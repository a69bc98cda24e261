"""Builds the native runtime (runtime/cpp) once per test session for the parity tests.

Skipped with a reason where the toolchain or a library is missing. Set IRREID_NATIVE_BUILD_DIR to
reuse a build folder between sessions (incremental builds); otherwise a temporary folder is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 900


@dataclass(frozen=True)
class NativeBuild:
    build_dir: Path
    exe: Path  # irreid-edge-native

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.exe), *args], capture_output=True, text=True, check=check, timeout=120)


def _missing_tool() -> str | None:
    if shutil.which("cmake") is None:
        return "cmake not found (apt-get install cmake)"
    if shutil.which("c++") is None and shutil.which("g++") is None and shutil.which("clang++") is None:
        return "no C++ compiler found (apt-get install g++)"
    return None


def _last_lines(text: str, n: int = 8) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


@pytest.fixture(scope="session")
def native_build(tmp_path_factory: pytest.TempPathFactory) -> NativeBuild:
    why = _missing_tool()
    if why:
        pytest.skip(f"native runtime not built: {why}")
    build = Path(os.environ.get("IRREID_NATIVE_BUILD_DIR") or tmp_path_factory.mktemp("native_build"))
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    cfg = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *generator],
                         capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if cfg.returncode != 0:
        # Missing system libraries are a reason to skip on a user's machine (the CPU suite must run
        # anywhere), not in CI, where scripts/setup.sh installs them: there a skip would hide a break.
        if os.environ.get("CI"):
            pytest.fail(f"native runtime not configured in CI: {_last_lines(cfg.stdout + cfg.stderr)}")
        pytest.skip(f"native runtime not configured (missing libraries? see runtime/cpp/CMakeLists.txt): "
                    f"{_last_lines(cfg.stdout + cfg.stderr)}")
    bld = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert bld.returncode == 0, f"native build failed: {_last_lines(bld.stdout + bld.stderr, 30)}"
    exe = build / "runtime" / "cpp" / "irreid-edge-native"
    assert exe.is_file(), f"{exe} was not built"
    return NativeBuild(build, exe)
