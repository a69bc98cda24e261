"""The one record type every reader returns, and the layout checks they share.

A record is one image: where it is, whose it is, which camera took it and in which modality
(0 = colour/RGB, 1 = infrared; the m of the paper). Cameras are 1-based as in the datasets' own names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.preprocess import is_image_path

__all__ = [
    "IR",
    "PSEUDO_IR_KINDS",
    "RECORD_VIEWS",
    "RGB",
    "DataLayoutError",
    "Record",
    "list_images",
    "require_dir",
    "require_file",
    "summarize",
]

RGB = 0
IR = 1
#: How a colour photograph is turned into a stand-in infrared image (paper §4.2 uses "red").
PSEUDO_IR_KINDS = ("red", "gray", "thermal", "randmap")
#: How evaluation may re-see a stored image (``Record.view``; train.data.llvip_views).
RECORD_VIEWS = ("mirrored", "reframed", "reframed-mirrored")


class DataLayoutError(ValueError):
    """A dataset folder is missing or malformed; the message is one line naming the path and the fix."""


@dataclass(frozen=True)
class Record:
    """One image of a re-identification dataset."""

    path: str
    pid: int
    camid: int
    modality: int  # 0 rgb, 1 ir
    #: 'red' | 'gray' | 'thermal' for a colour photograph that must be converted to pseudo-IR when loaded.
    pseudo_ir: str | None = None
    #: How evaluation re-sees the stored image: an LLVIP view ('mirrored', 'reframed', 'reframed-mirrored';
    #: train.data.llvip_views), applied by train.evaluate.features.load_record_image. None = as stored.
    view: str | None = None

    def __post_init__(self) -> None:
        if self.modality not in (RGB, IR):
            raise ValueError(f"{self.path}: modality must be 0 (rgb) or 1 (ir), got {self.modality!r}")
        if self.pseudo_ir is not None and self.pseudo_ir not in PSEUDO_IR_KINDS:
            raise ValueError(
                f"{self.path}: pseudo_ir must be one of {', '.join(PSEUDO_IR_KINDS)} or None, got {self.pseudo_ir!r}"
            )
        if self.view is not None and self.view not in RECORD_VIEWS:
            raise ValueError(f"{self.path}: view must be one of {', '.join(RECORD_VIEWS)} or None (as stored), "
                             f"got {self.view!r}")


def require_dir(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DataLayoutError(f"{p} missing: expected {what}")
    return p


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataLayoutError(f"{p} missing: expected {what}")
    return p


def list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Image files directly inside ``folder`` as full paths, sorted by name (the reference code's order)."""
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.is_file() and is_image_path(e.name))
    return [os.path.join(str(folder), n) for n in names]


def summarize(records: Sequence[Record] | Iterable[Record]) -> str:
    """One line: images, identities and cameras per modality (for logs)."""
    recs = list(records)
    parts = []
    for m, name in ((RGB, "rgb"), (IR, "ir")):
        sub = [r for r in recs if r.modality == m]
        if sub:
            cams = ",".join(str(c) for c in sorted({r.camid for r in sub}))
            parts.append(f"{name}: {len(sub)} images, {len({r.pid for r in sub})} ids, cams {cams}")
    return "; ".join(parts) if parts else "no images"
