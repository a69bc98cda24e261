"""`python -m train.demo_assets`: a colour gallery and IR probes from a run's synthetic test identities.

The demo chain (README) ends with ``irreid-edge match`` on folders a camera operator would have:
``<run>/gallery/`` holds the colour crops (cameras 1, 2, 4, 5) of the test identities — never seen
in training — and ``<run>/probes/`` one infrared crop (camera 3 or 6) of a few of them. Files are
named ``<pid>_c<cam>_<n>.jpg`` so rank-list pictures can frame true matches green.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import load_checkpoint
from .data.sysu import read_sysu

__all__ = ["get_args_parser", "main", "make_assets"]


def make_assets(data_root: str | Path, out: str | Path, probes: int = 3) -> tuple[Path, Path, int]:
    test = read_sysu(data_root, "test")
    out = Path(out)
    gallery, probe_dir = out / "gallery", out / "probes"
    for d in (gallery, probe_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for r in test:
        if r.modality == 0:
            shutil.copy2(r.path, gallery / f"{r.pid:04d}_c{r.camid}_{Path(r.path).stem}.jpg")
    ir_by_pid: dict[int, list] = {}
    for r in sorted((r for r in test if r.modality == 1), key=lambda r: r.path):
        ir_by_pid.setdefault(r.pid, []).append(r)
    for pid in sorted(ir_by_pid)[:probes]:
        r = ir_by_pid[pid][0]
        shutil.copy2(r.path, probe_dir / f"{r.pid:04d}_c{r.camid}_{Path(r.path).stem}.jpg")
    return gallery, probe_dir, sum(1 for _ in gallery.iterdir())


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m train.demo_assets", description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo", help="the training run folder (default: runs/demo)")
    p.add_argument("--probes", type=int, default=3, help="how many IR probes (one per identity)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    run = Path(args.run)
    ckpt = run / "last.pt"
    try:
        root = load_checkpoint(ckpt).get("train_root")
        if not root:
            raise ValueError(f"{ckpt}: records no training data folder; was it written by python -m train.fit?")
        gallery, probes, n = make_assets(root, run, args.probes)
    except (ValueError, OSError) as e:
        print(f"train.demo_assets: error: {e}", file=sys.stderr)
        return 2
    print(f"gallery: {gallery} ({n} colour crops of {len({p.name[:4] for p in gallery.iterdir()})} unseen ids)")
    print(f"probes:  {probes} ({len(list(probes.iterdir()))} infrared crops)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
