"""`irreid-edge index`: build, refresh or verify the embedding index of a gallery folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..base.choices import MODALITY_CHOICES
from ._common import add_index_arguments, add_model_arguments

HELP = "build or refresh the embedding index of a gallery folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gallery", required=True, help="folder of gallery crops")
    p.add_argument("--gallery-modality", choices=MODALITY_CHOICES, default="rgb",
                   help="encoder for the gallery (auto: ir when the crops are grayscale)")
    p.add_argument("--verify", action="store_true",
                   help="check the index's checksum and that it matches the model, then exit")
    p.add_argument("--compact", action="store_true",
                   help="after the update, merge the index's segments into one and drop removed rows "
                        "(also done automatically past 16 segments or 25%% removed rows)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_model_arguments(p)
    add_index_arguments(p)
    from ._store import add_index_store_arguments

    add_index_store_arguments(p)


def _verify(args: argparse.Namespace, index_path: Path) -> int:
    """Every segment's checksums (always re-hashed), the int8 codes re-derived from the rows, unique
    live paths, that the index belongs to this gallery, and that it was made with this model (issue
    17 item 5: the model was not checked although the help said so)."""
    from ..gallery.index import read_index
    from ..gallery.indexer import check_index
    from ._common import Encoders, model_path

    idx = read_index(index_path, verify=True, gallery=args.gallery)
    modality = idx.spec.modality if args.gallery_modality == "auto" else args.gallery_modality
    encoder = Encoders(model_path(args), args, verbose=not args.quiet).get(modality)
    check_index(idx, encoder.spec, Path(args.gallery))
    msg = (f"{index_path}: OK ({idx.count} embeddings of dim {idx.header['dim']} in {len(idx.segments)} "
           f"segment(s), model {idx.spec.name}/{idx.spec.modality}/{idx.spec.precision}, fingerprint "
           f"{idx.header['spec_fingerprint'][:12]})")
    if args.json:
        print(json.dumps({"index": str(index_path), "ok": True, "count": idx.count, "dim": idx.header["dim"],
                          "segments": len(idx.segments), "spec_fingerprint": idx.header["spec_fingerprint"]}))
    else:
        print(msg)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..gallery.index import default_index_path
    from ..gallery.indexer import update_index
    from ..gallery.scan import scan_gallery
    from ._common import (
        Encoders,
        finite,
        gallery_modality,
        model_path,
        positive,
        report_skipped,
        run_facts,
        say,
    )

    positive(args.batch, "--batch")
    finite(args.checkpoint_every, "--checkpoint-every", low=float("-inf"))
    if args.store:
        from ._store import run_index

        return run_index(args)
    index_path = Path(args.index) if args.index else default_index_path(args.gallery)
    if args.verify:
        return _verify(args, index_path)
    scan = scan_gallery(args.gallery, args.follow_links)
    modality = gallery_modality(args.gallery_modality, [f.path for f in scan.files])
    encoder = Encoders(model_path(args), args, verbose=not args.quiet).get(modality)
    idx, stats = update_index(args.gallery, index_path, encoder, rebuild=args.rebuild,
                              follow_links=args.follow_links, batch=args.batch, workers=args.workers,
                              quiet=args.quiet, checkpoint_seconds=args.checkpoint_every,
                              say=lambda m: say(m, args.quiet))
    if args.compact:
        from ..gallery.index import compact

        idx = compact(index_path, gallery=args.gallery)
        stats.written = True
    # decode errors were said as they happened; the scanner's skips are said here
    report_skipped(scan.skipped, args.quiet)
    if args.json:
        out = {"index": str(index_path), "gallery": str(args.gallery), "modality": modality,
               **run_facts(encoder), "spec_fingerprint": idx.header["spec_fingerprint"],
               "segments": len(idx.segments), **stats.to_dict()}
        print(json.dumps(out, indent=2, allow_nan=False))
    else:
        state = "written" if stats.written else "up to date"
        print(f"index {index_path} ({state}, {encoder.backend}, {encoder.spec.precision}): {stats.summary()}")
    return 0
