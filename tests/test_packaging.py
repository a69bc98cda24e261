"""Build the wheel, install it with the core dependencies only, run the console script, and resolve
each documented install line (docs/install.md) for its machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import venv
import zipfile
from pathlib import Path
from urllib.parse import urlparse

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
    scripts = zipfile.ZipFile(wheel).read(entry).decode()
    assert "irreid-edge = runtime.cli:main" in scripts
    assert "irreid-train = train.console:main" in scripts  # immune to a train.py in the current folder


def test_core_install_runs_help_without_torch_nor_onnxruntime(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                       env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    assert "numpy" in freeze and "pillow" in freeze
    assert "torch" not in freeze  # core install: what a device runs, nothing more
    assert "onnxruntime" not in freeze  # never over the build NVIDIA ships for a Jetson (issue 16 defect 3)
    exe = env_dir / "bin" / "irreid-edge"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for cmd in ("build", "index", "match", "embed", "bench", "spec"):
        assert cmd in r.stdout
    r = subprocess.run([str(exe), "match", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "--probe" in r.stdout
    # running a model without any ONNX Runtime: one line naming the install line
    from tiny_onnx import make_tiny_onnx, make_tiny_spec

    from runtime.model_dir import write_model_dir_specs

    model = tmp_path / "export"
    make_tiny_onnx(model / "rgb.onnx", make_tiny_spec("rgb"))
    write_model_dir_specs(model, {"rgb": make_tiny_spec("rgb")})
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.new("RGB", (16, 32), (90, 120, 30)).save(tmp_path / "imgs" / "a.png")
    r = subprocess.run([str(exe), "embed", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "e.npy"),
                        "--model", str(model)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert "ONNX Runtime is not installed" in r.stderr
    assert '`pip install ".[cpu]"` on a PC' in r.stderr and "docs/install.md" in r.stderr


# -- the install lines of docs/install.md, resolved for their machines (issue 16 defect 3) -------------
#: target row of docs/install.md -> (python version, platform tags, what must be resolved)
_MANYLINUX_AARCH64 = [f"manylinux_2_{v}_aarch64" for v in (35, 34, 31, 28, 27, 26, 17)] + \
    ["manylinux2014_aarch64", "linux_aarch64"]
TARGETS = {
    "PC, CPU only": ("3.10", ["manylinux_2_28_x86_64", "manylinux2014_x86_64"], {"onnxruntime"}),
    "PC with an NVIDIA GPU": ("3.10", ["manylinux_2_28_x86_64", "manylinux2014_x86_64"], {"onnxruntime-gpu"}),
    "Jetson, JetPack 6": ("3.10", _MANYLINUX_AARCH64, set()),
    "Jetson, JetPack 7": ("3.12", _MANYLINUX_AARCH64, set()),
}


def install_lines() -> dict[str, str]:
    """target -> the extras of its `pip install ".[...]"` line in docs/install.md's table."""
    out = {}
    for line in (ROOT / "docs" / "install.md").read_text().splitlines():
        m = re.match(r'\|\s*([^|]+?)\s*\|\s*`pip install "\.\[([\w,]+)\]"`', line)
        if m:
            out[next((t for t in TARGETS if m.group(1).startswith(t)), m.group(1))] = m.group(2)
    return out


def _index_reachable() -> str | None:
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
    host = urlparse(url).hostname or "pypi.org"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as e:
        return f"package index {host} unreachable ({e})"
    return None


def test_docs_give_one_line_per_target():
    assert set(install_lines()) == set(TARGETS), install_lines()


def test_install_lines_resolve_without_a_second_onnxruntime(wheel, tmp_path):
    reason = _index_reachable()
    if reason:
        pytest.skip(reason)
    procs = {}
    for target, extras in install_lines().items():
        py, platforms, _ = TARGETS[target]
        report = tmp_path / f"{extras}.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--target", str(tmp_path / "never-written"), "--report", str(report), "--only-binary=:all:",
               "--python-version", py, "--implementation", "cp",
               *[a for p in platforms for a in ("--platform", p)], f"{wheel}[{extras}]"]
        procs[target] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}), report)
    for target, (proc, report) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{target}: {err[-2000:]}"
        got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
        ort = {n for n in got if n.startswith("onnxruntime")}
        assert ort == TARGETS[target][2], f"{target} pulls {sorted(ort)}"
        assert "torch" not in got and "pycuda" not in got, target
        if target.startswith("Jetson"):
            cuda_major = 12 if "6" in target else 13
            assert int(got["cuda-python"].split(".")[0]) == cuda_major, (target, got["cuda-python"])
        if target == "Jetson, JetPack 6":
            assert int(got["numpy"].split(".")[0]) < 2, got["numpy"]  # NVIDIA's JP6 onnxruntime-gpu: numpy 1.x
