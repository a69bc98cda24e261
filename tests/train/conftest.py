"""Data fixtures for tests/train: small SYSU-MM01, RegDB and Market-1501 trees written by the tests.

Images are tiny real JPEGs (16 x 8) so the dataset and transform tests can decode them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

SYSU_SPLITS = {"train": [1, 2, 3, 5], "val": [7, 8], "test": [10, 11, 12, 20, 101]}


def write_jpeg(path: Path, value: int = 128, rgb: tuple[int, int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), rgb or (value, (value * 3) % 256, (value * 7) % 256)).save(path, quality=95)


def sysu_counts(pid: int) -> dict[int, int]:
    """Images per camera of an id; 0 = no folder. Some ids miss cameras, one has 12 shots (multi-shot)."""
    counts = {c: 1 + (pid * c) % 4 for c in range(1, 7)}
    if pid == 11:
        counts[2] = 0
    if pid == 12:
        counts[6] = 0
    if pid == 20:
        counts[1] = 12
    return counts


def make_sysu(root: Path) -> Path:
    for name, ids in SYSU_SPLITS.items():
        (root / "exp").mkdir(parents=True, exist_ok=True)
        (root / "exp" / f"{name}_id.txt").write_text(",".join(str(i) for i in ids) + "\n")
    for c in range(1, 7):
        (root / f"cam{c}").mkdir(parents=True, exist_ok=True)
    for pid in sorted(pid for ids in SYSU_SPLITS.values() for pid in ids):
        for cam, n in sysu_counts(pid).items():
            for k in range(1, n + 1):
                write_jpeg(root / f"cam{cam}" / f"{pid:04d}" / f"{k:04d}.jpg", pid + k)
    return root


def make_regdb(root: Path, trials: tuple[int, ...] = (1, 2)) -> Path:
    """4 identities x 2 images per modality; trial t puts ids {t, t+1} mod 4 in train."""
    names = {}
    for pid in range(4):
        for mod, folder in (("visible", "Visible"), ("thermal", "Thermal")):
            for k in range(2):
                rel = f"{folder}/{pid + 1}/{'female' if pid % 2 else 'male'}_{pid}_{mod}_{k}.bmp"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB" if mod == "visible" else "L", (8, 16), 40 * pid + k).save(root / rel)
                names.setdefault((pid, mod), []).append(rel)
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for t in trials:
        train = {t % 4, (t + 1) % 4}
        for split in ("train", "test"):
            ids = sorted(train) if split == "train" else sorted(set(range(4)) - train)
            for mod in ("visible", "thermal"):
                lines = [f"{rel} {pid}" for pid in ids for rel in names[(pid, mod)]]
                (root / "idx" / f"{split}_{mod}_{t}.txt").write_text("\n".join(lines) + "\n")
    return root


MARKET_FILES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c4s1_000501_01.jpg", "0007_c2s3_070952_01.jpg",
                           "0007_c6s3_071002_02.jpg", "0010_c5s1_001001_01.jpg"],
    "query": ["0003_c1s1_001051_00.jpg", "0003_c5s1_001101_00.jpg", "0011_c3s2_005001_00.jpg"],
    "bounding_box_test": ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg", "0003_c2s1_001201_02.jpg",
                          "0003_c6s1_001301_01.jpg", "0011_c4s2_005101_01.jpg"],
}


def make_market(root: Path) -> Path:
    for folder, names in MARKET_FILES.items():
        for i, n in enumerate(names):
            write_jpeg(root / folder / n, rgb=(200, 10 * i, 90))
    return root


@pytest.fixture
def sysu_root(tmp_path: Path) -> Path:
    return make_sysu(tmp_path / "SYSU-MM01")


@pytest.fixture
def regdb_root(tmp_path: Path) -> Path:
    return make_regdb(tmp_path / "RegDB")


@pytest.fixture
def market_root(tmp_path: Path) -> Path:
    return make_market(tmp_path / "Market-1501")


@pytest.fixture
def sysu_spec() -> tuple[dict[str, list[int]], Callable[[int], dict[int, int]]]:
    """(ids per split, images per camera of an id) of the ``sysu_root`` tree."""
    return SYSU_SPLITS, sysu_counts
