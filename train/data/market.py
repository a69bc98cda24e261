"""Market-1501 (Zheng et al., ICCV 2015) with the paper's pseudo-IR split (§4.2).

Two layouts are read:
- the original flat one: ``bounding_box_train/``, ``bounding_box_test/``, ``query/`` holding
  ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``;
- per-identity folders (e.g. Person_reID_baseline_pytorch's ``prepare.py``): ``train_all/`` or
  ``train/``, ``gallery/``, ``query/`` holding ``<pid>/<original name>.jpg`` (also under ``pytorch/``).

Identities as the benchmark treats them: pid -1 ("junk" detections) is dropped everywhere; pid 0
("distractors", background and body parts) is kept in the gallery, where it only adds negatives, and
dropped from train and query. Same-camera same-id gallery removal is an evaluation rule
(train.evaluate.metrics, protocol "market").

Pseudo-IR: images from ``ir_cams`` (default c4-c6, the paper's split) get modality 1 and
``pseudo_ir`` = "red" (red channel replicated to 3 channels, the paper's choice) or "gray"; the
conversion happens when the image is loaded (train.data.transforms.apply_pseudo_ir). ``ir_cams=()``
reads everything as colour.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .records import IR, PSEUDO_IR_KINDS, RGB, DataLayoutError, Record, list_images, require_dir

__all__ = ["SPLITS", "SPLIT_DIRS", "dev_split", "has_test_split", "parse_name", "read_market"]

SPLITS = ("train", "query", "gallery")
#: Candidate folders per split, flat layout first.
SPLIT_DIRS = {
    "train": ("bounding_box_train", "train_all", "train"),
    "query": ("query",),
    "gallery": ("bounding_box_test", "gallery"),
}
_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_CAM = re.compile(r"_c(\d+)")
NUM_CAMS = 6


def parse_name(name: str) -> tuple[int, int]:
    """``0002_c1s1_000451_03.jpg`` -> (pid 2, camid 1). ValueError if the name does not follow the pattern."""
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{name}: not a Market-1501 file name <pid>_c<cam>s<seq>_<frame>_<box>.jpg")
    return int(m.group(1)), int(m.group(2))


def _find_split_dir(root: Path, split: str) -> Path:
    for base in (root, root / "pytorch"):
        for name in SPLIT_DIRS[split]:
            if (base / name).is_dir():
                return base / name
    expected = " or ".join(SPLIT_DIRS[split])
    raise DataLayoutError(
        f"{root / SPLIT_DIRS[split][0]} missing: expected Market-1501 folder {expected} under {root}"
    )


def _flat(folder: Path) -> Iterable[tuple[str, int, int]]:
    for f in list_images(folder):
        name = os.path.basename(f)
        try:
            pid, cam = parse_name(name)
        except ValueError as e:
            raise DataLayoutError(f"{f}: {str(e).split(': ', 1)[1]}; remove or rename it") from None
        yield f, pid, cam


def _per_identity(folder: Path, subdirs: list[Path]) -> Iterable[tuple[str, int, int]]:
    for d in subdirs:
        try:
            pid = int(d.name)
        except ValueError:
            raise DataLayoutError(f"{d}: identity folders must be named by an integer pid") from None
        for f in list_images(d):
            m = _CAM.search(os.path.basename(f))
            if m is None:
                raise DataLayoutError(f"{f}: no camera '_c<N>' in the file name; keep Market-1501 names")
            yield f, pid, int(m.group(1))


def _keep(pid: int, split: str) -> bool:
    if pid == -1:
        return False  # junk
    return pid != 0 or split == "gallery"  # distractors only make sense as gallery negatives


def read_market(
    root: str | os.PathLike[str],
    split: str = "train",
    ir_cams: Iterable[int] = (4, 5, 6),
    pseudo_ir: str = "red",
) -> list[Record]:
    """Records of ``split``; cameras in ``ir_cams`` become pseudo-IR (modality 1)."""
    if split not in SPLITS:
        raise ValueError(f"unknown Market-1501 split {split!r}; valid: {', '.join(SPLITS)}")
    if pseudo_ir not in PSEUDO_IR_KINDS:
        raise ValueError(f"unknown pseudo-IR conversion {pseudo_ir!r}; valid: {', '.join(PSEUDO_IR_KINDS)}")
    ir = frozenset(int(c) for c in ir_cams)
    if not ir <= set(range(1, NUM_CAMS + 1)):
        raise ValueError(f"ir_cams must be Market-1501 cameras 1..{NUM_CAMS}, got {sorted(ir)}")
    r = require_dir(root, "the Market-1501 root (bounding_box_train/, bounding_box_test/, query/)")
    folder = _find_split_dir(r, split)
    subdirs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    entries = _per_identity(folder, subdirs) if subdirs else _flat(folder)
    records = []
    for path, pid, cam in entries:
        if not 1 <= cam <= NUM_CAMS:
            raise DataLayoutError(f"{path}: camera c{cam} outside Market-1501's c1..c{NUM_CAMS}")
        if not _keep(pid, split):
            continue
        if cam in ir:
            records.append(Record(path, pid, cam, IR, pseudo_ir))
        else:
            records.append(Record(path, pid, cam, RGB))
    if not records:
        raise DataLayoutError(f"{folder}: no usable Market-1501 images; check the copy")
    return records


def has_test_split(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` holds Market-1501's own test identities (query/ and a gallery folder)."""
    try:
        _find_split_dir(Path(root), "query")
        _find_split_dir(Path(root), "gallery")
    except DataLayoutError:
        return False
    return True


#: fraction of a training-only copy's identities held out (issue 30: 200 of market1501-dev's 500, as
#: large a gallery as a real test's, where the old 10 % held 50 and overstated rank-1 by 20 points)
DEV_HOLDOUT = 0.4


def dev_split(pids: Iterable[int], holdout: float = DEV_HOLDOUT) -> tuple[set[int], set[int]]:
    """(train, held-out) identities of a copy with training identities only (market1501-dev).

    Fixed rule on the sorted pids: ``round(holdout · n)`` ids evenly spaced from the first (index
    ``i·n // h``) are held out: validation and the held-out figure of ``python -m train.evaluate --data
    market``; the others train. ``holdout=0`` holds nothing out (a run that trains on every dev id).
    A full copy (with query/ and bounding_box_test/) tests on its own test identities instead.
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout={holdout} is invalid; valid: a fraction in [0, 1)")
    ordered = sorted(set(pids))
    n = len(ordered)
    h = round(holdout * n)
    held = {ordered[i * n // h] for i in range(h)} if h else set()
    return set(ordered) - held, held
