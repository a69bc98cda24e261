"""From a DataConfig to training records and a validation split (never the test gallery).

Validation, used for model selection (METHOD.md §Data and training):
- SYSU-MM01 layout (``sysu`` and ``synthetic``): the ids of ``exp/val_id.txt``; queries = their IR
  images, gallery = one colour image per (id, camera) drawn as the test protocol draws it
  (``random.seed(0)``, ids and cameras ascending, ``random.choice`` over sorted files); scored with
  the ``sysu`` protocol.
- Market-1501 (pseudo-IR): every 10th identity (sorted) is held out; queries = its pseudo-IR images,
  gallery = its colour images (disjoint cameras, so no camera filtering: ``regdb`` protocol). On a
  copy without Market's own test split (market1501-dev), another 10 % of the identities is held out
  for testing and never trained on (``train.data.market.dev_split``).
- RegDB has no validation split in its protocol: none is made, the last epoch is kept, and the
  log says so.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .config import DataConfig, default_cache_dir
from .data.market import dev_split, has_test_split, read_market
from .data.records import IR, Record
from .data.regdb import read_regdb
from .data.synthetic_render import DEFAULT_STYLE
from .data.sysu import read_sysu

__all__ = ["PreparedData", "prepare_data", "renderings", "synthetic_options", "synthetic_root"]


@dataclass
class PreparedData:
    root: str
    train: list[Record]
    val_queries: list[Record] = field(default_factory=list)
    val_gallery: list[Record] = field(default_factory=list)
    val_protocol: str = "sysu"
    has_test_split: bool = False  # a test split to score at the end: SYSU layout (sysu, synthetic), RegDB's trial

    @property
    def num_classes(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def has_val(self) -> bool:
        return bool(self.val_queries and self.val_gallery)


_STYLE_TAGS = {"mark_scale": "m", "ir_dye": "d", "clutter": "c"}  # Style field -> cache-folder tag


def synthetic_options(cfg: DataConfig) -> dict[str, object]:
    """Keyword arguments of train.data.synthetic.generate for this config."""
    style = {name: getattr(cfg, f"synthetic_{name}") for name in _STYLE_TAGS}
    return {"ids": cfg.synthetic_ids, "seed": cfg.synthetic_seed, **style}


def synthetic_root(cfg: DataConfig) -> Path:
    if cfg.root:
        return Path(cfg.root)
    name = f"synthetic-ids{cfg.synthetic_ids}-seed{cfg.synthetic_seed}"
    for option, tag in _STYLE_TAGS.items():
        value = getattr(cfg, f"synthetic_{option}")
        if value != getattr(DEFAULT_STYLE, option):  # a rendering style of its own gets a folder of its own
            name += f"-{tag}{value:g}"
    return default_cache_dir() / name


def _ensure_synthetic(cfg: DataConfig, is_main: bool) -> Path:
    """A given root is read as it is; with none, the demo's dataset is generated into the cache once."""
    root = synthetic_root(cfg)
    if cfg.root:
        return root
    if is_main:
        from .data.synthetic import generate

        generate(root, **synthetic_options(cfg))  # type: ignore[arg-type]  # no-op when already complete
    return root


def single_shot_gallery(records: list[Record], seed: int = 0) -> list[Record]:
    """One colour image per (id, camera), drawn as the SYSU test protocol draws its gallery."""
    by = defaultdict(list)
    for r in records:
        if r.modality == 0:
            by[(r.pid, r.camid)].append(r)
    rng = random.Random(seed)
    out = []
    for key in sorted(by):
        files = sorted(by[key], key=lambda r: r.path)
        out.append(rng.choice(files))
    return out


def _sysu_like(root: Path, cfg: DataConfig) -> PreparedData:
    if not cfg.val_split:
        return PreparedData(str(root), read_sysu(root, "trainval"), has_test_split=True)
    val = read_sysu(root, "val")
    return PreparedData(
        str(root), read_sysu(root, "train"),
        val_queries=[r for r in val if r.modality == 1],
        val_gallery=single_shot_gallery(val),
        val_protocol="sysu", has_test_split=True,
    )


def renderings(cfg: DataConfig) -> tuple[str, ...]:
    """The pseudo-IR renderings of ``data.pseudo_ir`` ("red+thermal" -> ("red", "thermal"))."""
    return tuple(dict.fromkeys(k.strip() for k in cfg.pseudo_ir.split("+")))


def _read_market_train(root: str | Path, cfg: DataConfig) -> list[Record]:
    """Training records; with several renderings every pseudo-IR image appears once per rendering."""
    first, *others = renderings(cfg)
    recs = read_market(root, "train", ir_cams=tuple(cfg.market_ir_cams), pseudo_ir=first)
    if cfg.market_both:  # every image as colour and as each rendering: same-instant cross-modal positives
        both = read_market(root, "train", ir_cams=(), pseudo_ir=first)
        return both + [Record(r.path, r.pid, r.camid, IR, kind) for kind in (first, *others) for r in both]
    return recs + [Record(r.path, r.pid, r.camid, r.modality, kind) for kind in others for r in recs if r.pseudo_ir]


def _market(root: Path, cfg: DataConfig) -> PreparedData:
    recs = _read_market_train(root, cfg)
    train_ids, held_ids = dev_split((r.pid for r in recs), cfg.market_holdout)
    if has_test_split(root) and not cfg.val_split:  # a full copy tests on its own test ids: nothing to hold out
        train_ids |= held_ids
    if not cfg.val_split or not held_ids:
        return PreparedData(str(root), [r for r in recs if r.pid in train_ids])
    first = renderings(cfg)[0]  # validation probes in the first rendering only, on the paper's camera split
    split = recs if not cfg.market_both else read_market(root, "train", ir_cams=tuple(cfg.market_ir_cams),
                                                             pseudo_ir=first)
    val = [r for r in split if r.pid in held_ids and r.pseudo_ir in (None, first)]
    return PreparedData(
        str(root), [r for r in recs if r.pid in train_ids],
        val_queries=[r for r in val if r.modality == 1],
        val_gallery=[r for r in val if r.modality == 0],
        val_protocol="regdb",
    )


def _add_market(data: PreparedData, cfg: DataConfig) -> PreparedData:
    """The paper's extra training ids: Market-1501 with half its cameras as pseudo-IR."""
    extra = _read_market_train(str(cfg.extra_market_root), cfg)
    offset = max(r.pid for r in data.train) + 1
    data.train += [Record(r.path, r.pid + offset, r.camid, r.modality, r.pseudo_ir) for r in extra]
    return data


def _add_llvip(data: PreparedData, cfg: DataConfig) -> PreparedData:
    """LLVIP's training-frame pairs as extra identities: one id per thermal/visible twin pair."""
    from .data.llvip import read_llvip_pairs

    extra = read_llvip_pairs(str(cfg.llvip_root), "train")
    offset = max(r.pid for r in data.train) + 1
    by_pid = {pid: i for i, pid in enumerate(sorted({r.pid for r in extra}))}
    data.train += [Record(r.path, offset + by_pid[r.pid], r.camid, r.modality) for r in extra]
    return data


def prepare_data(cfg: DataConfig, is_main: bool = True) -> PreparedData:
    if cfg.name == "synthetic":
        data = _sysu_like(_ensure_synthetic(cfg, is_main), cfg)
    elif cfg.name == "sysu":
        data = _sysu_like(Path(str(cfg.root)), cfg)
    elif cfg.name == "regdb":
        data = PreparedData(str(cfg.root), read_regdb(str(cfg.root), cfg.regdb_trial, "train"), val_protocol="regdb",
                            has_test_split=True)
    elif cfg.name == "market":
        data = _market(Path(str(cfg.root)), cfg)
    else:  # config validation lists the valid names first; this guards direct callers
        raise ValueError(f"data.name={cfg.name!r} is invalid; valid values: synthetic, sysu, regdb, market")
    if cfg.extra_market_root:
        data = _add_market(data, cfg)
    if cfg.llvip_train:
        data = _add_llvip(data, cfg)
    return data
