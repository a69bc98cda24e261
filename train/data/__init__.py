"""Datasets for cross-modal re-identification: records, readers, the synthetic generator, sampler, transforms.

``build_dataset(name, root, split, **options) -> list[Record]`` picks a reader by name; the names
are in ``DATASETS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .market import read_market
from .records import IR, RGB, DataLayoutError, Record
from .regdb import read_regdb
from .sysu import read_sysu

__all__ = ["DATASETS", "IR", "RGB", "DataLayoutError", "Record", "build_dataset"]


def _regdb(root: str | os.PathLike[str], split: str = "train", trial: int = 1) -> list[Record]:
    return read_regdb(root, trial, split)


#: name -> reader(root, split, **options). "synthetic" is a generated folder in the SYSU-MM01 layout.
DATASETS: dict[str, Callable[..., list[Record]]] = {
    "sysu": read_sysu,
    "regdb": _regdb,
    "market": read_market,
    "synthetic": read_sysu,
}
_DEFAULT_SPLIT = {"sysu": "trainval", "regdb": "train", "market": "train", "synthetic": "trainval"}


def build_dataset(name: str, root: str | os.PathLike[str], split: str | None = None, **options: object) -> list[Record]:
    """Records of dataset ``name`` under ``root``; ``split`` defaults to the training split
    (SYSU-MM01 / synthetic: "trainval"). Options go to the reader (RegDB: trial; Market: ir_cams, pseudo_ir)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name](root, split or _DEFAULT_SPLIT[name], **options)
