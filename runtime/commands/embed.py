"""`irreid-edge embed`: a folder of images -> ``emb.npy`` (N, D) float32 + ``emb.json``.

``emb.json``: {"model", "backend", "precision", "spec": ModelSpec dict, "spec_fingerprint", "root", "count",
"dim", "paths": [relative POSIX paths in row order], "skipped": [{"path", "reason"}]}. Rows are
L2-normalised; both files are written atomically; the .npy needs no pickle (allow_pickle=False).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from ..base.choices import MODALITY_CHOICES
from ._common import add_model_arguments

HELP = "embed a folder of images to a .npy matrix plus a JSON list of paths"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="output .npy path (the path list goes beside it as .json)")
    p.add_argument("--modality", choices=MODALITY_CHOICES, default="rgb",
                   help="encoder (auto: ir when the images are grayscale)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=4, help="image decoding threads")
    p.add_argument("--follow-links", action="store_true", help="use symlinks leading out of the folder")
    p.add_argument("--quiet", action="store_true")
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..base.errors import UserError
    from ..base.fileio import atomic_write_bytes, atomic_write_text
    from ..base.progress import Progress
    from ..gallery.indexer import bounded_map, embed_items, prepare_file
    from ..gallery.scan import scan_gallery
    from ._common import (
        Encoders,
        first_skip,
        gallery_modality,
        model_path,
        positive,
        report_skipped,
        run_facts,
        say,
    )

    positive(args.batch, "--batch")
    out = Path(args.out)
    if out.suffix != ".npy":
        raise UserError(f"{out}: --out must end in .npy (the path list is written beside it as .json)")
    scan = scan_gallery(args.images, args.follow_links, option="--images")
    report_skipped(scan.skipped, args.quiet)
    if not scan.files:
        raise UserError(f"{args.images}: no images found; pass a folder of .jpg/.png crops")
    modality = gallery_modality(args.modality, [f.path for f in scan.files])
    enc = Encoders(model_path(args), args, verbose=not args.quiet).get(modality)
    prepared = bounded_map(lambda f: prepare_file(f, enc.spec, None, want_hash=False), scan.files, args.workers,
                           ahead=max(2 * args.batch, 8))
    rows: list[np.ndarray] = []
    paths: list[str] = []
    skipped = list(scan.skipped)
    with Progress(len(scan.files), "embedding", quiet=args.quiet) as bar:
        for item, emb in embed_items(prepared, enc.embed, args.batch):
            bar.update(1)
            if item.error is not None:
                skipped.append((str(item.file.path), item.error))
                say(item.error, args.quiet)
                continue
            assert emb is not None  # decoded items always get a row
            rows.append(emb)
            paths.append(item.file.rel)
    if not rows:
        raise UserError(f"{args.images}: none of the {len(scan.files)} images could be used "
                        f"({first_skip(skipped[len(scan.skipped):])}); fix or replace them")
    data = np.stack(rows).astype(np.float32)  # (N, D)
    buf = io.BytesIO()
    np.save(buf, data, allow_pickle=False)
    atomic_write_bytes(out, buf.getvalue())
    meta = {"model": str(model_path(args)), **run_facts(enc), "spec": enc.spec.to_dict(),
            "spec_fingerprint": enc.spec.fingerprint(), "root": str(Path(args.images).resolve()),
            "count": len(paths), "dim": int(data.shape[1]), "paths": paths,
            "skipped": [{"path": p, "reason": r} for p, r in skipped]}
    atomic_write_text(out.with_suffix(".json"), json.dumps(meta, indent=2, allow_nan=False) + "\n")
    print(f"embedded {len(paths)} images ({len(skipped)} skipped, {enc.backend}, {enc.spec.precision}) -> {out} {tuple(data.shape)} + "
          f"{out.with_suffix('.json')}")
    return 0
