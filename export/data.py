"""The images the export checks and calibrates with, per modality, drawn from the run's own data.

- check images: the run's dataset (its training root) and, when present, the real Market-1501 crops
  of ../shared/data/market1501-dev, for the parity checks;
- calibration images: ``--calib`` folders, else the run's training images (test identities of a
  SYSU-layout root excluded), stratified over modality and identity;
- held-out images: from the same pool, never used for calibration, for the int8 bars;
- the SYSU test split (IR queries -> colour gallery) when the root has ``exp/test_id.txt``;
- a Market-1501 run (real photographs, issue 15): its training ids' images as the run saw them, the
  pseudo-IR cameras in the run's renderings (an IR encoder calibrated on colour photographs gets the
  wrong ranges), and real-photo ranking splits: the held-out dev ids (red pseudo-IR probes of cameras
  4-6 -> single-shot colour galleries of cameras 1-3, the mean of the 10 trials of ``train.evaluate
  --data market``) and, when the run names ``data.llvip_root``, LLVIP's
  held-out frames (thermal crop -> its visible twin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calib.images import CalibImage, scan_folders, split_held_out, stratified_sample
from runtime.preprocess import load_batch
from runtime.spec import ModelSpec

__all__ = ["MARKET_DEV", "ExportData", "RealSplit", "gather"]

MARKET_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "market1501-dev"
CHECK_PER_MODALITY = 32
HELD_OUT = 64


@dataclass(frozen=True)
class RealSplit:
    """IR queries -> colour gallery. ``trials``: the gallery rows of each single-shot trial, whose
    figures are averaged (one trial of a few hundred queries moves by a query's 0.5 point; the
    mean of ten does not); None ranks against the whole gallery once."""

    title: str
    queries: list[Any]
    gallery: list[Any]
    trials: list[list[int]] | None = None


@dataclass
class ExportData:
    check: dict[str, list[CalibImage]]  # source name -> images (both modalities)
    calib: list[CalibImage]
    held_out: list[CalibImage]
    test_root: Path | None
    notes: list[str] = field(default_factory=list)
    # real-photo ranking splits of train.data Records (pseudo_ir applied on load)
    real_splits: list[RealSplit] = field(default_factory=list)


def _test_ids(root: Path) -> set[str]:
    path = root / "exp" / "test_id.txt"
    if not path.is_file():
        return set()
    first = (path.read_text(encoding="utf-8").splitlines() or [""])[0]
    return {f"{int(t):04d}" for t in first.split(",") if t.strip()}


def _market_pool(data_config: Any) -> list[CalibImage]:
    """The run's Market-1501 training images as it saw them (train.prepare.prepare_data: held-out ids left
    out, each pseudo-IR image once per rendering the run trained with)."""
    from train.data.records import IR
    from train.prepare import prepare_data

    return [CalibImage(r.path, "ir" if r.modality == IR else "rgb", f"{r.pid:04d}", r.pseudo_ir)
            for r in prepare_data(data_config).train]


def _real_splits(root: Path, data_config: Any, llvip_trained: bool = False) -> list[RealSplit]:
    from train.data.market import has_test_split
    from train.evaluate.protocols import iter_trials

    cams = tuple(data_config.market_ir_cams)
    out: list[RealSplit] = []
    if float(data_config.market_holdout) == 0 and not has_test_split(root):
        return out  # the run trained on every id of this copy: it has no held-out ids to rank
    trials = list(iter_trials("market", root, market_ir_cams=cams, pseudo_ir="red",  # train.evaluate's 10
                              market_holdout=float(data_config.market_holdout)))
    gallery = list({r.path: r for t in trials for r in t.gallery}.values())  # each image embedded once
    row = {r.path: i for i, r in enumerate(gallery)}
    assert all(t.queries == trials[0].queries for t in trials)  # the trials differ in their galleries only
    out.append(RealSplit(f"{root} held-out ids (train.evaluate --data market): red pseudo-IR probes of cameras "
                         f"{','.join(map(str, cams))} -> single-shot colour gallery, mean of {len(trials)} trials",
                         list(trials[0].queries), gallery, [[row[r.path] for r in t.gallery] for t in trials]))
    llvip = data_config.llvip_root
    if llvip and Path(llvip).is_dir():
        # A run that did not train on LLVIP has every pair unseen: rank all of them (222 queries in
        # llvip-dev, a query is 0.45 point), not only the 73 held-out frames (1.37 points, above the
        # 1-point int8 bar). A run that trained on its training frames ranks the held-out frames.
        split = "test" if llvip_trained else "all"
        t = next(iter(iter_trials("llvip-pairs", llvip, llvip_split=split)))
        queries = [r for r in t.queries if r.modality == 1]
        vis = [r for r in t.gallery if r.modality == 0]
        which = ("held-out frames (the run trained on the others)" if llvip_trained
                 else "all frames (the run did not train on LLVIP)")
        out.append(RealSplit(f"{llvip} {which}, train.evaluate --data llvip-pairs --llvip-split {split}: real "
                             f"thermal crop -> its visible twin", queries, vis))
    return out


def _run_data_config(root: Path, data_config: dict[str, Any]) -> Any:
    """The run's data section as train's DataConfig, read from ``root`` here; extra training roots
    (another Market copy, LLVIP pairs) are left out: the pool is the run's Market-1501 images."""
    from train.config import config_from_dict

    data = {**data_config, "root": str(root), "extra_market_root": None, "llvip_train": False}
    return config_from_dict({"data": data}).data


def gather(train_root: str | None, calib_dirs: list[str], calib_images: int, seed: int = 0,
           data_config: dict[str, Any] | None = None) -> ExportData:
    notes: list[str] = []
    root = Path(train_root) if train_root else None
    pool: list[CalibImage] = []
    real: list[RealSplit] = []
    data_config = data_config or {}
    if root is not None and root.is_dir() and data_config.get("name") == "market":
        run_data = _run_data_config(root, data_config)
        pool = _market_pool(run_data)
        real = _real_splits(root, run_data, bool(data_config.get("llvip_train")))
        notes.append(f"Market-1501 run: calibration and held-out images from its training ids, pseudo-IR cameras "
                     f"in its renderings ({run_data.pseudo_ir}); real-photo ranking splits below")
    elif root is not None and root.is_dir():
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
    return ExportData(check, calib, held, test_root, notes, real)


def for_modality(images: list[CalibImage], modality: str) -> list[CalibImage]:
    """The images of ``modality``; all images when there are none of it (e.g. --calib of colour photos only)."""
    own = [im for im in images if im.modality == modality]
    return own or list(images)


def load_images(images: Sequence[CalibImage], spec: ModelSpec) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """(batch (N, 3, H, W) raw 0-255, paths loaded, [(path, reason)] skipped), each image in the
    pseudo-IR rendering the run trained it with (``render``), as train.data applies it."""
    if not any(im.render for im in images):
        return load_batch([im.path for im in images], spec)
    from runtime.preprocess import ImageDecodeError, decode_image, preprocess_image
    from train.data.transforms import apply_pseudo_ir

    arrays, good, errors = [], [], []
    for im in images:
        try:
            pil = decode_image(im.path)
        except ImageDecodeError as e:
            errors.append((im.path, str(e)))
            continue
        pil = apply_pseudo_ir(pil, im.render) if im.render else pil
        arrays.append(preprocess_image(pil, spec.input_height, spec.input_width, spec.channel_order))
        good.append(im.path)
    batch = np.stack(arrays) if arrays else np.zeros((0, *spec.input_shape), np.float32)
    return batch, good, errors


def load(images: list[CalibImage], spec: ModelSpec) -> np.ndarray:
    return load_images(images, spec)[0]  # (N, 3, H, W) raw 0-255; unreadable files dropped
