"""Build the wheel, install it with the core dependencies only, and run the console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Build from a copy so the build never writes into the checkout (build/, *.egg-info).
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "runtime", "train", "export", "calib"):
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "build"))
        elif p.exists():
            shutil.copy2(p, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheels = list(out.glob("irreid_edge-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contains_the_four_packages_and_entry_point(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in ("runtime", "train", "export", "calib"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert "runtime/serve/page.html" in names  # serve's operator page is package data
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "irreid-edge = runtime.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_core_install_runs_help_without_torch(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                       env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    assert "onnxruntime" in freeze and "numpy" in freeze and "pillow" in freeze
    assert "torch" not in freeze  # core install: what a device runs, nothing more
    exe = env_dir / "bin" / "irreid-edge"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for cmd in ("build", "index", "match", "embed", "bench", "spec"):
        assert cmd in r.stdout
    r = subprocess.run([str(exe), "match", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "--probe" in r.stdout
