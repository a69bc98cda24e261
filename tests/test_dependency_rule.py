"""runtime/ must import and run where torch is absent (shared/DESIGN.md, the dependency rule)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_runtime_does_not_import_torch():
    code = (
        "import sys, importlib, pkgutil, runtime\n"
        "import runtime.cli, runtime.preprocess, runtime.spec, runtime.model_dir\n"
        "for m in pkgutil.walk_packages(runtime.__path__, 'runtime.'):\n"
        "    importlib.import_module(m.name)\n"
        "runtime.cli.build_parser()\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision', 'tensorrt', 'onnx'))\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_package_layers_respect_the_rule():
    forbidden = {
        "runtime": {"torch", "torchvision", "train", "export", "calib"},
        "calib": {"torch", "torchvision", "train", "export"},
        "train": {"export", "calib"},
    }
    offenders = []
    for pkg, bad in forbidden.items():
        for f in (ROOT / pkg).rglob("*.py"):
            hit = _imports(f) & bad
            if hit:
                offenders.append(f"{f.relative_to(ROOT)} imports {sorted(hit)}")
    assert not offenders, offenders
