"""SYSU-MM01 (Wu et al., ICCV 2017): reader and the community's exact test split.

Layout: ``<root>/cam1..cam6/<pid:04d>/<n:04d>.jpg`` and ``<root>/exp/{train,val,test}_id.txt``, each
a single comma-separated line of integer ids. Cameras 3 (indoor) and 6 (outdoor) are near-infrared;
1, 2 (indoor) and 4, 5 (outdoor) are colour.

``test_split`` reproduces ``process_query_sysu`` / ``process_gallery_sysu`` of the evaluation code
shared by AGW, DDAG, CAJ and DEEN (``data_manager.py``), quirks included:

1. ids are read as ``int`` from the first line of ``exp/test_id.txt``, formatted ``%04d`` and sorted as
   strings (the same as numeric order for ids below 10000).
2. Queries are ALL images of the IR cameras 3 and 6, in both modes: "indoor" search still queries with
   the outdoor IR camera 6 (the reference code lists ``['cam3', 'cam6']`` for both modes).
3. Files within a folder are sorted by name; the reference sorts ``dir + '/' + name`` strings, which is
   the same order. It lists every entry (``os.listdir``); we keep image files only, which differs only if
   a folder holds non-image files (the real dataset has none).
4. ``random.seed(trial)`` is called ONCE before the gallery loop (here a private ``random.Random(trial)``,
   the same stream, leaving the caller's global state alone); then for each id (ascending) and each
   colour camera (ascending: 1,2,4,5 for "all", 1,2 for "indoor") whose folder exists,
   ``random.choice(files)`` picks the single-shot image. A missing folder consumes no random number.
   An existing but empty folder makes the reference crash (IndexError); here it is skipped, which also
   consumes no random number (``choice`` checks emptiness before drawing).
5. The reference parses camid and pid from string offsets (``int(path[-15])``, ``int(path[-13:-9])``),
   valid only for ``camN/NNNN/NNNN.jpg``; we take them from the folder names, which agrees on that layout
   and stays right on any other file-name length.
6. Multi-shot (shots=10): the reference codes disagree (CAJ: ``np.random.choice(files, 10,
   replace=False)``, unseeded by the trial and failing on folders with fewer than 10 images). We use
   ``random.sample(files, min(10, len(files)))`` from the same seeded stream, so multi-shot galleries
   are reproducible, and say so; published multi-shot numbers are not bit-comparable anyway.
7. The cam3-query / cam2-gallery exclusion is an evaluation rule (train.evaluate.metrics), not a split rule.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from .records import IR, RGB, DataLayoutError, Record, list_images, require_dir, require_file

__all__ = ["IR_CAMS", "RGB_CAMS", "SPLITS", "read_ids", "read_sysu", "test_split"]

IR_CAMS = (3, 6)
RGB_CAMS = (1, 2, 4, 5)
ALL_CAMS = (1, 2, 3, 4, 5, 6)
SPLITS = ("train", "val", "test", "trainval")
GALLERY_CAMS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
QUERY_CAMS = (3, 6)  # both modes (quirk 2)
LAYOUT = "SYSU-MM01 layout cam1..cam6/<pid:04d>/*.jpg + exp/{train,val,test}_id.txt"


def read_ids(root: str | os.PathLike[str], name: str) -> list[int]:
    """Ids of ``<root>/exp/<name>_id.txt`` (one comma-separated line), in file order."""
    path = require_file(Path(root) / "exp" / f"{name}_id.txt", LAYOUT)
    lines = path.read_text(encoding="utf-8").splitlines()
    first = lines[0].strip() if lines else ""
    if not first:
        return []
    try:
        return [int(tok) for tok in first.split(",")]
    except ValueError:
        raise DataLayoutError(
            f"{path}: expected one line of comma-separated integer ids, got {first[:60]!r}; restore the file"
        ) from None


def _check_root(root: str | os.PathLike[str]) -> Path:
    r = require_dir(root, f"the SYSU-MM01 root ({LAYOUT})")
    missing = [f"cam{c}" for c in ALL_CAMS if not (r / f"cam{c}").is_dir()]
    if missing:
        raise DataLayoutError(f"{r / missing[0]} missing: expected {LAYOUT} (missing: {', '.join(missing)})")
    return r


def _split_ids(root: Path, split: str) -> list[int]:
    if split not in SPLITS:
        raise ValueError(f"unknown SYSU-MM01 split {split!r}; valid: {', '.join(SPLITS)}")
    names = ("train", "val") if split == "trainval" else (split,)
    ids: list[int] = []
    for n in names:
        ids += read_ids(root, n)
    if not ids:
        raise DataLayoutError(f"{root / 'exp'}: no ids listed for split {split!r}; check exp/*_id.txt")
    return sorted(set(ids))


def read_sysu(root: str | os.PathLike[str], split: str = "trainval") -> list[Record]:
    """All images of the ids of ``split``, every camera. "trainval" (train + val ids) is the community's
    training set; ask for "train" when "val" is held out for model selection."""
    r = _check_root(root)
    records: list[Record] = []
    for pid in _split_ids(r, split):
        found = 0
        for cam in ALL_CAMS:
            folder = r / f"cam{cam}" / f"{pid:04d}"
            if not folder.is_dir():
                continue  # ids do not appear in every camera
            files = list_images(folder)
            found += len(files)
            modality = IR if cam in IR_CAMS else RGB
            records += [Record(f, pid, cam, modality) for f in files]
        if found == 0:
            raise DataLayoutError(
                f"{r}/cam*/{pid:04d} missing: id {pid} of split {split!r} has no image in any camera; "
                f"check the id files or the copy"
            )
    return records


def _pick(rng: random.Random, files: list[str], shots: int) -> list[str]:
    if shots == 1:
        return [rng.choice(files)]
    return rng.sample(files, min(shots, len(files)))


def test_split(
    root: str | os.PathLike[str], mode: str = "all", trial: int = 0, shots: int = 1
) -> tuple[list[Record], list[Record]]:
    """(queries, gallery) exactly as the reference code builds them (see the module docstring)."""
    if mode not in GALLERY_CAMS:
        raise ValueError(f"unknown SYSU-MM01 search mode {mode!r}; valid: {', '.join(GALLERY_CAMS)}")
    if shots not in (1, 10):
        raise ValueError(f"shots must be 1 (single-shot) or 10 (multi-shot), got {shots!r}")
    r = _check_root(root)
    ids = sorted(f"{x:04d}" for x in read_ids(r, "test"))  # quirk 1: string sort
    if not ids:
        raise DataLayoutError(f"{r / 'exp' / 'test_id.txt'}: no test ids listed; restore the file")
    queries: list[Record] = []
    for pid in ids:
        for cam in QUERY_CAMS:
            folder = r / f"cam{cam}" / pid
            if folder.is_dir():
                queries += [Record(f, int(pid), cam, IR) for f in list_images(folder)]
    gallery: list[Record] = []
    # quirk 4: seeded once, before the loop. random.Random(trial) yields the same stream as the reference's
    # random.seed(trial) + random.choice, without touching the caller's global random state.
    rng = random.Random(trial)
    for pid in ids:
        for cam in GALLERY_CAMS[mode]:
            folder = r / f"cam{cam}" / pid
            if not folder.is_dir():
                continue
            files = list_images(folder)
            if files:
                gallery += [Record(f, int(pid), cam, RGB) for f in _pick(rng, files, shots)]
    return queries, gallery


test_split.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module
