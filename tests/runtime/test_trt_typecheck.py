"""mypy over the code that touches TensorRT, against the `tensorrt-stubs` package (the CI check).

tensorrt-stubs (10.8-10.13) ships `tensorrt/` and `tensorrt_bindings/` as .pyi files without a
py.typed marker, and a few generated lines are not valid Python (parameters named `in`/`out`, a
required parameter after defaults, an import of the absent `tensorrt_libs`). So the test copies the
stubs, repairs those lines, and points mypy at the copy with MYPYPATH; errors inside the stubs
themselves are ignored, errors in our code are not. Skips where tensorrt-stubs or mypy is absent.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRT_FILES = ["runtime/backends/trt_compat.py", "runtime/backends/trt.py", "runtime/backends/trt_build.py",
             "runtime/backends/cuda_mem.py", "runtime/backends/engine.py"]
MYPY_INI = """[mypy]
python_version = 3.11
warn_unused_ignores = False
check_untyped_defs = True
# third-party packages without stubs that our TensorRT files reach (protobuf, pymilvus, ...): not
# what this check is about; TensorRT itself has its stubs on MYPYPATH (the canary proves it)
ignore_missing_imports = True
[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]
ignore_errors = True
[mypy-cuda.*,pycuda.*,onnxruntime.*,onnx.*]
ignore_missing_imports = True
"""


def prepare_stubs(dest: Path) -> Path:
    """Copy the installed tensorrt stubs to ``dest`` and repair the lines mypy cannot parse."""
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    site = Path(spec.origin).parent.parent
    for pkg in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / pkg, dest / pkg, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    init = dest / "tensorrt" / "__init__.pyi"
    init.write_text(re.sub(r"^import tensorrt_libs.*$", "", init.read_text(), flags=re.M))
    core = dest / "tensorrt_bindings" / "tensorrt.pyi"
    text = re.sub(r"\b(in|out): list\[", r"\1_: list[", core.read_text())
    text = re.sub(r"(= None, )(channel_axis: int)\)", r"\1\2 = ...)", text)
    core.write_text(text)
    return dest


def test_mypy_over_tensorrt_code(tmp_path: Path) -> None:
    """One mypy run (it takes ~20 s): our TensorRT code must be clean, and a canary file with a
    misspelt TensorRT call must fail, which proves mypy read the stubs instead of typing trt as Any."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    stubs = prepare_stubs(tmp_path / "stubs")
    ini = tmp_path / "mypy.ini"
    ini.write_text(MYPY_INI)
    canary = tmp_path / "canary.py"
    canary.write_text("import tensorrt as trt\n\n\ndef f(b: trt.Builder) -> None:\n    b.create_netwrk(0)\n")
    res = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini), "--no-incremental",
                          "--cache-dir", str(tmp_path / "cache"), *TRT_FILES, str(canary)],
                         cwd=ROOT, capture_output=True, text=True, env={"MYPYPATH": str(stubs)}, timeout=600)
    errors = [line for line in res.stdout.splitlines() if ": error:" in line]
    ours = [line for line in errors if "canary.py" not in line]
    assert not ours, "\n".join(ours)
    assert any('has no attribute "create_netwrk"' in line for line in errors), res.stdout + res.stderr
