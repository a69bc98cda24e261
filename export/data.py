"""The images the export checks and calibrates with, per modality, drawn from the run's own data.

- check images: the run's dataset (its training root) and, when present, the real Market-1501 crops
  of ../shared/data/market1501-dev, for the parity checks;
- calibration images: ``--calib`` folders, else the run's training images (test identities of a
  SYSU-layout root excluded), stratified over modality and identity;
- held-out images: from the same pool, never used for calibration, for the int8 bars;
- the SYSU test split (IR queries -> colour gallery) when the root has ``exp/test_id.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib.images import CalibImage, scan_folders, split_held_out, stratified_sample
from runtime.preprocess import load_batch
from runtime.spec import ModelSpec

__all__ = ["MARKET_DEV", "ExportData", "gather"]

MARKET_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "market1501-dev"
CHECK_PER_MODALITY = 32
HELD_OUT = 64


@dataclass
class ExportData:
    check: dict[str, list[CalibImage]]  # source name -> images (both modalities)
    calib: list[CalibImage]
    held_out: list[CalibImage]
    test_root: Path | None
    notes: list[str] = field(default_factory=list)


def _test_ids(root: Path) -> set[str]:
    path = root / "exp" / "test_id.txt"
    if not path.is_file():
        return set()
    first = (path.read_text(encoding="utf-8").splitlines() or [""])[0]
    return {f"{int(t):04d}" for t in first.split(",") if t.strip()}


def gather(train_root: str | None, calib_dirs: list[str], calib_images: int, seed: int = 0) -> ExportData:
    notes: list[str] = []
    root = Path(train_root) if train_root else None
    pool: list[CalibImage] = []
    if root is not None and root.is_dir():
        excluded = _test_ids(root)
        pool = [im for im in scan_folders([root]) if im.identity not in excluded]
        if excluded:
            notes.append(f"test identities of {root} ({len(excluded)}) excluded from calibration and held-out images")
    elif root is not None:
        notes.append(f"the run's training data {root} is not here: parity uses --calib images only")
    check = {"synthetic" if root and (root / "synthetic.json").is_file() else "training data":
             stratified_sample(pool, 2 * CHECK_PER_MODALITY, seed + 7)} if pool else {}
    market = [MARKET_DEV / s for s in ("bounding_box_test", "bounding_box_train") if (MARKET_DEV / s).is_dir()]
    if market:  # real photographs (colour): parity on real pixel statistics, whatever the run trained on
        check["market1501-dev"] = stratified_sample(scan_folders(market[:1]), CHECK_PER_MODALITY, seed + 8)
    calib_pool = scan_folders(calib_dirs) if calib_dirs else pool
    calib = stratified_sample(calib_pool, calib_images, seed)
    held = split_held_out(pool or calib_pool, calib, HELD_OUT, seed + 1)
    test_root = root if root is not None and (root / "exp" / "test_id.txt").is_file() else None
    return ExportData(check, calib, held, test_root, notes)


def for_modality(images: list[CalibImage], modality: str) -> list[CalibImage]:
    """The images of ``modality``; all images when there are none of it (e.g. --calib of colour photos only)."""
    own = [im for im in images if im.modality == modality]
    return own or list(images)


def load(images: list[CalibImage], spec: ModelSpec) -> np.ndarray:
    batch, _, _ = load_batch([im.path for im in images], spec)
    return batch  # (N, 3, H, W) raw 0-255; unreadable files dropped
