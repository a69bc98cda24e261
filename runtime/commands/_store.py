"""``--store URI`` for `irreid-edge index` and `irreid-edge match` (a gallery in Milvus instead of the
local index file), with per-entry metadata on index and camera / time / device filters on match.
Not a command itself; docs/fleet.md is the user's page. (`match --store` runs in match.py, which
imports from here: this module never imports match, so the two stay apart.)"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from typing import Any

STORE_HELP = ("gallery store instead of the local index file: milvus-lite:PATH.db (embedded Milvus) or "
              "milvus://HOST:19530[/NAME] (a Milvus server shared by many devices; token in $IRREID_MILVUS_TOKEN)")


def add_index_store_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("store (docs/fleet.md)")
    g.add_argument("--store", metavar="URI", help=STORE_HELP)
    g.add_argument("--camera", default="", help="camera name recorded with every image of this run (--store)")
    g.add_argument("--device", default=None,
                   help="source device recorded with every image (--store; default: this machine's host name)")
    g.add_argument("--meta", metavar="CSV",
                   help="per-file metadata (--store): a CSV with a 'path' column (relative to the gallery) "
                        "and any of camera, timestamp (ISO 8601 or epoch seconds), device; without it the "
                        "timestamp is the file's modification time")


def add_match_store_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("store and filters (docs/fleet.md)")
    g.add_argument("--store", metavar="URI", help=STORE_HELP + "; --gallery is then optional (for --show)")
    g.add_argument("--camera", action="append", metavar="NAME", help="only gallery entries of this camera "
                   "(repeat for several; needs --store)")
    g.add_argument("--device", action="append", metavar="NAME", help="only entries added by this device "
                   "(repeat for several; needs --store)")
    g.add_argument("--since", metavar="TIME", help="only entries at or after TIME (ISO 8601, no offset = UTC, "
                   "or epoch seconds; needs --store)")
    g.add_argument("--until", metavar="TIME", help="only entries at or before TIME (needs --store)")


def check_local_match_args(args: argparse.Namespace) -> None:
    """Without --store: refuse the store-only flags, and require --gallery."""
    from ..base.errors import UserError

    used = [f for f, v in (("--camera", args.camera), ("--device", args.device), ("--since", args.since),
                           ("--until", args.until)) if v]
    if used:
        raise UserError(f"{', '.join(used)} filter(s) the entries of a store; add --store URI "
                        "(the local index file records no camera, time or device)")
    if not args.gallery:
        raise UserError("pass --gallery DIR (the local index), or --store URI")


def store_filters(args: argparse.Namespace) -> Any:
    from ..base.errors import UserError
    from ..gallery.store import Filters
    from ..gallery.store.fill import parse_time

    try:
        since = parse_time(args.since, "--since") if args.since else None
        until = parse_time(args.until, "--until") if args.until else None
    except ValueError as e:
        raise UserError(str(e)) from None
    if since is not None and until is not None and since > until:
        raise UserError(f"--since {args.since} is after --until {args.until}; swap them")
    return Filters(cameras=tuple(args.camera) if args.camera else None, since=since, until=until,
                   devices=tuple(args.device) if args.device else None)


def run_index(args: argparse.Namespace) -> int:
    from ..base.errors import UserError
    from ..gallery.scan import scan_gallery
    from ..gallery.store.fill import fill_store, read_meta_csv
    from ..gallery.store.uri import open_store
    from ._common import Encoders, gallery_modality, model_path, report_skipped, say

    if args.index or args.verify or args.rebuild:
        raise UserError("--store replaces the local index file: drop --index/--verify/--rebuild")
    meta = read_meta_csv(args.meta) if args.meta else None
    device = args.device if args.device is not None else socket.gethostname()
    scan = scan_gallery(args.gallery, args.follow_links)
    modality = gallery_modality(args.gallery_modality, [f.path for f in scan.files])
    encoder = Encoders(model_path(args), args, verbose=not args.quiet).get(modality)
    store = open_store(args.store, encoder.spec, create=True)
    try:
        stats = fill_store(args.gallery, store, encoder, modality=modality, camera=args.camera, device=device,
                           meta=meta, follow_links=args.follow_links, batch=args.batch, workers=args.workers,
                           quiet=args.quiet, say=lambda m: say(m, args.quiet))
        info = store.info() if hasattr(store, "info") else {"count": len(store)}
    finally:
        store.close()
    report_skipped(scan.skipped, args.quiet)
    if args.json:
        out = {"store": args.store, "collection": info.get("collection"), "gallery": str(args.gallery),
               "modality": modality, "backend": encoder.backend, "spec_fingerprint": encoder.spec.fingerprint(),
               "count": info["count"], **stats.to_dict()}
        print(json.dumps(out, indent=2))
    else:
        print(f"store {args.store} ({info['count']} entries): {stats.summary()}")
    return 0


def store_results(hits: list[Any], threshold: float | None) -> list[dict[str, Any]]:
    out = []
    for h in hits:
        if threshold is not None and h.distance > threshold:
            continue
        d = h.to_dict()
        d["distance"] = round(max(float(d["distance"]), 0.0), 6)
        out.append(d)
    return out


def show_store(args: argparse.Namespace, ranked: list[dict[str, Any]], say: Any) -> None:
    if not args.show:
        return
    from ..base.errors import UserError

    if not args.gallery:
        raise UserError("--show draws the gallery's crops: pass --gallery DIR (the folder the store was filled from)")
    from ..show import render_rank_list

    render_rank_list(ranked, Path(args.gallery), args.show)
    say(f"rank list written to {args.show}", args.quiet)
