"""The built-in synthetic cross-modal dataset, written in the SYSU-MM01 layout.

    python -m train.data.synthetic --out DIR --ids N --seed S [--height 128 --width 64]

writes ``DIR/cam1..cam6/<pid:04d>/<n:04d>.jpg`` (IR = cams 3 and 6, stored as three equal channels
like SYSU-MM01's) and ``DIR/exp/{train,val,test}_id.txt`` (one comma-separated line each), so the SYSU
reader, the sampler and the SYSU evaluation protocol run on it unchanged. ``DIR/synthetic.json``
records the parameters; generating again with the same parameters is a no-op.

Deterministic: each image is a pure function of (seed, pid, camera, shot), and the split of a seed.
What makes the task real is documented in train/data/synthetic_render.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.spec import atomic_write_text

from .synthetic_render import CAMERAS, Style, render, sample_identity

__all__ = ["GENERATOR_VERSION", "SyntheticConfig", "generate", "get_args_parser", "main"]

GENERATOR_VERSION = 1
META = "synthetic.json"
RGB_CAMS, IR_CAMS = (1, 2, 4, 5), (3, 6)


@dataclass(frozen=True)
class SyntheticConfig:
    ids: int = 100
    seed: int = 0
    height: int = 128
    width: int = 64
    min_per_cam: int = 4
    max_per_cam: int = 8
    cam_dropout: float = 0.1  # chance an id never passes a camera (at least one colour and one IR cam remain)
    test_ids: int | None = None  # default: 20% of ids, like SYSU-MM01's 96 of 491
    val_ids: int | None = None  # default: 20% of ids
    quality: int = 92
    mark_scale: float = 1.0  # see synthetic_render.Style
    ir_dye: float = 0.0
    clutter: float = 1.0

    def style(self) -> Style:
        return Style(mark_scale=self.mark_scale, ir_dye=self.ir_dye, clutter=self.clutter)

    def validate(self) -> None:
        if self.ids < 1:
            raise ValueError(f"ids must be >= 1, got {self.ids}")
        if not 1 <= self.min_per_cam <= self.max_per_cam:
            raise ValueError(f"need 1 <= min_per_cam <= max_per_cam, got {self.min_per_cam}, {self.max_per_cam}")
        if self.height < 32 or self.width < 16:
            raise ValueError(f"images must be at least 32x16, got {self.height}x{self.width}")
        if not 0.0 <= self.cam_dropout < 1.0:
            raise ValueError(f"cam_dropout must be in [0, 1), got {self.cam_dropout}")
        if not 0.25 <= self.mark_scale <= 4.0:
            raise ValueError(f"mark_scale must be in [0.25, 4], got {self.mark_scale}")
        if not 0.0 <= self.ir_dye <= 1.0:
            raise ValueError(f"ir_dye must be in [0, 1], got {self.ir_dye}")
        if not 0.0 <= self.clutter <= 3.0:
            raise ValueError(f"clutter must be in [0, 3], got {self.clutter}")
        n_test, n_val = self.split_sizes()
        if n_test < 1 or n_val < 0 or n_test + n_val > self.ids:
            raise ValueError(f"test_ids ({n_test}) >= 1 and val_ids ({n_val}) >= 0 must fit in ids ({self.ids})")

    def split_sizes(self) -> tuple[int, int]:
        n_test = self.test_ids if self.test_ids is not None else max(1, round(0.2 * self.ids))
        n_val = self.val_ids if self.val_ids is not None else min(round(0.2 * self.ids), self.ids - n_test)
        return n_test, n_val


def _splits(cfg: SyntheticConfig) -> dict[str, list[int]]:
    pids = np.random.default_rng([cfg.seed, 3]).permutation(np.arange(1, cfg.ids + 1))
    n_test, n_val = cfg.split_sizes()
    return {
        "test": sorted(int(x) for x in pids[:n_test]),
        "val": sorted(int(x) for x in pids[n_test:n_test + n_val]),
        "train": sorted(int(x) for x in pids[n_test + n_val:]),
    }


def shots_per_camera(cfg: SyntheticConfig, pid: int) -> dict[int, int]:
    """Images of ``pid`` per camera; some ids miss some cameras, as in SYSU-MM01."""
    rng = np.random.default_rng([cfg.seed, 4, pid])
    counts = {c: int(rng.integers(cfg.min_per_cam, cfg.max_per_cam + 1)) for c in sorted(CAMERAS)}
    present = {c: bool(rng.random() >= cfg.cam_dropout) for c in counts}
    for group in (RGB_CAMS, IR_CAMS):
        if not any(present[c] for c in group):
            present[group[int(rng.integers(len(group)))]] = True
    return {c: n for c, n in counts.items() if present[c]}


def _write_identity(out: Path, cfg: SyntheticConfig, pid: int) -> int:
    person = sample_identity(cfg.seed, pid)
    style = cfg.style()
    written = 0
    for cam, n in shots_per_camera(cfg, pid).items():
        folder = out / f"cam{cam}" / f"{pid:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for shot in range(1, n + 1):
            img = render(person, cam, shot, cfg.seed, cfg.height, cfg.width, style)
            Image.fromarray(img).save(folder / f"{shot:04d}.jpg", quality=cfg.quality)
            written += 1
    return written


def _prepare(out: Path, meta: dict[str, object], overwrite: bool) -> bool:
    """True when ``out`` already holds exactly this dataset. Refuses to write into a foreign folder."""
    meta_path = out / META
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old == meta and not overwrite:
            return True
        for sub in [*(f"cam{c}" for c in CAMERAS), "exp"]:
            shutil.rmtree(out / sub, ignore_errors=True)  # ours (synthetic.json says so)
        meta_path.unlink()
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: not empty and not a synthetic dataset ({META} missing); choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return False


def generate(out_dir: str | os.PathLike[str], ids: int = 100, seed: int = 0, overwrite: bool = False,
             **options: object) -> dict[str, object]:
    """Write the dataset; returns its metadata (parameters, split sizes, image count, seconds)."""
    cfg = SyntheticConfig(ids=ids, seed=seed, **options)  # type: ignore[arg-type]
    cfg.validate()
    out = Path(out_dir)
    config = asdict(cfg)
    for f in fields(Style):
        if config[f.name] == f.default:  # version-1 datasets keep their metadata (and stay valid caches)
            del config[f.name]
    meta: dict[str, object] = {"generator_version": GENERATOR_VERSION, "config": config}
    if _prepare(out, meta, overwrite):
        return json.loads((out / META).read_text(encoding="utf-8"))
    t0, c0 = time.perf_counter(), time.process_time()
    splits = _splits(cfg)
    (out / "exp").mkdir(exist_ok=True)
    for name, pids in splits.items():
        atomic_write_text(out / "exp" / f"{name}_id.txt", ",".join(str(p) for p in pids) + "\n")
    images = sum(_write_identity(out, cfg, pid) for pid in range(1, cfg.ids + 1))
    for c in CAMERAS:  # SYSU-MM01 has all six camera folders even when an id list misses one
        (out / f"cam{c}").mkdir(exist_ok=True)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    # The metadata is written last: its presence means the dataset is complete.
    atomic_write_text(out / META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {**meta, "images": images, "seconds": seconds, "cpu_seconds": cpu_seconds, "split_sizes": {k: len(v) for k, v in splits.items()}}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m train.data.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (created; must be empty or an earlier output)")
    p.add_argument("--ids", type=int, default=100, help="identities (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--min-per-cam", type=int, default=4, help="fewest images of an id per camera")
    p.add_argument("--max-per-cam", type=int, default=8, help="most images of an id per camera")
    p.add_argument("--cam-dropout", type=float, default=0.1, help="chance an id misses a camera")
    p.add_argument("--test-ids", type=int, default=None, help="test identities (default 20%% of --ids)")
    p.add_argument("--val-ids", type=int, default=None, help="validation identities (default 20%% of --ids)")
    p.add_argument("--mark-scale", type=float, default=1.0, help="size of clothing marks and patterns (default 1)")
    p.add_argument("--ir-dye", type=float, default=0.0,
                   help="share of IR intensity that follows the dye's brightness, 0-1 (default 0: material only)")
    p.add_argument("--clutter", type=float, default=1.0, help="background clutter and occlusion rate (default 1)")
    p.add_argument("--overwrite", action="store_true", help="regenerate an earlier synthetic output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = get_args_parser().parse_args(argv)
    try:
        info = generate(a.out, ids=a.ids, seed=a.seed, overwrite=a.overwrite, height=a.height, width=a.width,
                        min_per_cam=a.min_per_cam, max_per_cam=a.max_per_cam, cam_dropout=a.cam_dropout,
                        test_ids=a.test_ids, val_ids=a.val_ids, mark_scale=a.mark_scale, ir_dye=a.ir_dye,
                        clutter=a.clutter)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "images" in info:
        sizes = info["split_sizes"]
        print(f"{a.out}: {info['images']} images of {a.ids} ids (train/val/test {sizes['train']}/{sizes['val']}/"  # type: ignore[index]
              f"{sizes['test']}) in {info['seconds']:.1f} s")  # type: ignore[index]
    else:
        print(f"{a.out}: already generated with these parameters (pass --overwrite to regenerate)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
