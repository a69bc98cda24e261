"""RegDB (Nguyen et al., Sensors 2017): reader and test split as the community's code builds them.

Layout: ``<root>/Visible/...``, ``<root>/Thermal/...`` and ``<root>/idx/{train,test}_{visible,thermal}_{trial}.txt``,
one "relative/path label" per line; trials are numbered 1..10, each its own random half split of the
412 identities. RegDB has one camera per modality: camid 1 = visible, 2 = thermal (the reference's
``eval_regdb`` also sets query cams to 1 and gallery cams to 2, so no camera filtering happens).
The test split uses every listed test image (no sampling), as ``process_test_regdb`` does.
"""

from __future__ import annotations

import os
from pathlib import Path

from .records import IR, RGB, DataLayoutError, Record, require_dir, require_file

__all__ = ["DIRECTIONS", "SPLITS", "read_regdb", "test_split"]

SPLITS = ("train", "test")
DIRECTIONS = ("v2t", "t2v")
_MODALITIES = (("visible", RGB, 1), ("thermal", IR, 2))
LAYOUT = "RegDB layout Visible/, Thermal/, idx/{train,test}_{visible,thermal}_{trial}.txt"


def _available_trials(idx: Path) -> str:
    trials = sorted({int(p.stem.rsplit("_", 1)[1]) for p in idx.glob("train_visible_*.txt") if p.stem[-1].isdigit()})
    return ", ".join(str(t) for t in trials) or "none"


def _read_list(root: Path, path: Path, modality: int, camid: int) -> list[Record]:
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, label = parts[0], int(parts[1])
        except (IndexError, ValueError):
            raise DataLayoutError(f"{path}:{n}: expected 'relative/path label', got {line[:60]!r}") from None
        img = root / rel
        if not img.is_file():
            raise DataLayoutError(f"{img} missing: listed in {path}:{n}; check the RegDB copy")
        records.append(Record(str(img), label, camid, modality))
    if not records:
        raise DataLayoutError(f"{path}: no images listed; restore the file")
    return records


def read_regdb(root: str | os.PathLike[str], trial: int, split: str = "train") -> list[Record]:
    """Visible and thermal images of ``split`` for ``trial`` (1..10), visible first."""
    if split not in SPLITS:
        raise ValueError(f"unknown RegDB split {split!r}; valid: {', '.join(SPLITS)}")
    r = require_dir(root, f"the RegDB root ({LAYOUT})")
    for sub in ("Visible", "Thermal"):
        require_dir(r / sub, LAYOUT)
    idx = require_dir(r / "idx", LAYOUT)
    records: list[Record] = []
    for name, modality, camid in _MODALITIES:
        path = idx / f"{split}_{name}_{trial}.txt"
        if not path.is_file():
            raise DataLayoutError(
                f"{path} missing: expected {LAYOUT} (trials found: {_available_trials(idx)})"
            )
        records += _read_list(r, require_file(path, LAYOUT), modality, camid)
    return records


def test_split(
    root: str | os.PathLike[str], trial: int, direction: str = "v2t"
) -> tuple[list[Record], list[Record]]:
    """(queries, gallery): "v2t" queries visible images against the thermal gallery, "t2v" the reverse."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown RegDB direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    records = read_regdb(root, trial, "test")
    visible = [x for x in records if x.modality == RGB]
    thermal = [x for x in records if x.modality == IR]
    return (visible, thermal) if direction == "v2t" else (thermal, visible)


test_split.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module
