"""Helpers for the gallery / index / CLI tests: tiny model folders, galleries full of bad input,
and running the real `irreid-edge` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tiny_onnx import make_tiny_onnx, make_tiny_spec

from runtime.model_dir import write_model_dir_specs

REPO = Path(__file__).resolve().parents[2]
H, W, D = 32, 16, 24
# What the generated `irreid-edge` console script runs. (`python -m runtime.cli` would load cli.py
# as __main__, a second copy whose UserError the commands' `from ..cli import UserError` does not share.)
CONSOLE_SCRIPT = "import sys; from runtime.cli import main; sys.exit(main())"


def make_model_dir(folder: Path, seed: int = 0) -> Path:
    specs = {m: make_tiny_spec(m, H, W, D) for m in ("rgb", "ir")}
    for i, (m, s) in enumerate(specs.items()):
        make_tiny_onnx(folder / f"{m}.onnx", s, seed=seed + i)
    write_model_dir_specs(folder, specs)
    return folder


def save_crop(path: Path, seed: int, gray: bool = False, size: tuple[int, int] = (64, 32)) -> Path:
    """A random person-crop-sized JPEG/PNG (by suffix); ``gray`` makes all channels equal."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gray:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), mode="L").convert("RGB").save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def make_good_gallery(root: Path, n: int = 12, start: int = 0) -> list[Path]:
    """Market-style names ``<pid>_c<cam>_<n>.jpg`` so identities are known."""
    return [save_crop(root / f"{i // 2:04d}_c{1 + i % 2}_{i}.jpg", seed=1000 + i) for i in range(start, start + n)]


def make_bad_gallery(root: Path, outside: Path) -> dict[str, Any]:
    """A gallery with good crops plus every kind of bad input. Returns what each path should do."""
    good = make_good_gallery(root, 10)
    # valid but unusual: must be indexed
    sixteen = root / "thermal16.png"
    Image.fromarray((np.random.default_rng(1).integers(3000, 9000, (64, 32))).astype(np.uint16)).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I")
    palette = root / "sub" / "palette.png"
    palette.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 32, 3), dtype=np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE).save(palette)
    assert Image.open(palette).mode == "P"
    # bad: each must be reported by name, the run goes on
    (root / "notes.txt").write_text("not an image")
    (root / "fake.jpg").write_bytes(b"this is not a jpeg at all")
    (root / "empty.jpg").write_bytes(b"")
    full = (root / "0000_c1_0.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    bomb = root / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)  # 144 M pixels in a ~20 KB file
    save_crop(outside / "secret.jpg", seed=7)
    (root / "link_out.jpg").symlink_to(outside / "secret.jpg")
    (root / ".hidden.jpg").write_bytes(full)  # dot-files are ignored silently
    return {"good": [*good, sixteen, palette],
            "bad": ["notes.txt", "fake.jpg", "empty.jpg", "truncated.jpg", "bomb.png", "link_out.jpg"]}


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120,
        prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess exactly as the ``irreid-edge`` console script does
    (``sys.exit(runtime.cli.main())``), or a ``python -c PREFIX`` wrapper around it."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    cmd = [sys.executable, *(prefix or ["-c", CONSOLE_SCRIPT]), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def cli_json(*args: str, **kw: Any) -> dict[str, Any]:
    proc = cli(*args, "--json", **kw)
    return json.loads(proc.stdout)
