"""Shared by the bench scripts: a stand-in model folder and a 1,000-crop gallery."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
MARKET = Path(os.environ.get("IRREID_MARKET_DEV", REPO.parent / "shared" / "data" / "market1501-dev"))


def stand_in_model(folder: Path, height: int = 288, width: int = 144, dim: int = 1536) -> Path:
    """A tiny ONNX encoder with the real input size and embedding dim (inference cost is NOT realistic)."""
    from tiny_onnx import make_tiny_onnx, make_tiny_spec

    from runtime.model_dir import write_model_dir_specs

    specs = {m: make_tiny_spec(m, height, width, dim) for m in ("rgb", "ir")}
    for i, (m, s) in enumerate(specs.items()):
        make_tiny_onnx(folder / f"{m}.onnx", s, seed=i)
    write_model_dir_specs(folder, specs)
    return folder


def gallery_of(folder: Path, n: int = 1000) -> Path:
    """n real Market-1501 crops when the dev set is present, else n synthetic JPEG crops."""
    folder.mkdir(parents=True, exist_ok=True)
    src = sorted(MARKET.rglob("*.jpg"))[:n] if MARKET.is_dir() else []
    if len(src) == n:
        for p in src:
            shutil.copy2(p, folder / p.name)
        return folder
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(folder / f"{i // 4:04d}_c1_{i}.jpg")
    return folder
