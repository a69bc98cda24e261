"""`irreid-edge match`: rank gallery crops for one or more probes.

JSON output (``--json``), one object on stdout::

    {"model": str, "backend": str, "precision": "fp32"|"fp16"|"int8", "gallery": str, "index": str, "gallery_modality": "rgb"|"ir",
     "rerank": bool, "top_k": int, "threshold": float|null,
     "index_stats": {"images", "added", "updated", "removed", "kept", "resumed", "skipped", "embedded", ...},
     "probes": [{"probe": path, "modality": "ir"|"rgb",
                 "results": [{"rank": 1, "distance": float, "path": gallery-relative path}, ...]}],
     "skipped": [{"path": str, "reason": str}],
     "timings_ms": {"scan", "model", "open", "embed", "search", "total"}}

"timings_ms": where the run's time went, in ms, measured in-process (the interpreter's start-up is
before "total" begins): "scan" of the gallery folder (0 with --no-refresh), "model" load of the
gallery encoder, "open" of the index (with a refresh, the embedding of new images too), "embed" of
the probes (their encoder's load included), "search".

With ``--store URI`` (docs/fleet.md) the gallery is a Milvus store: "store" and "collection" replace
"index" and "index_stats", "filters" echoes --camera/--device/--since/--until, and each result also has
the entry's "id", "camera", "timestamp", "modality" and "device".

distance = 1 - cosine; with ``--rerank`` it is the k-reciprocal distance and each result also has
"cosine_distance". ``--threshold D`` drops results whose cosine distance is above D.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..base.choices import MODALITY_CHOICES, SEARCH_BACKENDS
from ._common import add_index_arguments, add_model_arguments

HELP = "rank gallery crops for one or more probe crops (IR probe vs colour gallery by default)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--probe", nargs="+", required=True, help="probe image(s) and/or folders of probes")
    p.add_argument("--gallery", help="folder of gallery crops (required unless --store)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--show", metavar="PNG", help="write a rank-list picture (green: same id, red: different)")
    p.add_argument("--probe-modality", choices=MODALITY_CHOICES, default="ir",
                   help="encoder for the probes (auto: ir when a probe's three channels are equal)")
    p.add_argument("--gallery-modality", choices=MODALITY_CHOICES, default="rgb")
    p.add_argument("--threshold", type=float, default=None, metavar="D",
                   help="drop results whose distance (1 - cosine) is above D")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (Zhong et al. 2017)")
    p.add_argument("--search", choices=SEARCH_BACKENDS, default="auto",
                   help="exact search backend: auto/int8 = the int8 codes the index stores (ONNX Runtime "
                        "int8 pass + exact re-rank, nothing to build); numpy (float32 chunks) or faiss "
                        "score the float16 rows; all give the same top-k")
    p.add_argument("--no-refresh", action="store_true",
                   help="use the index as it is, without checking the gallery for changes")
    add_model_arguments(p)
    add_index_arguments(p)
    from ._store import add_match_store_arguments

    add_match_store_arguments(p)


def expand_probes(items: list[str], follow_links: bool) -> tuple[list[Path], list[tuple[str, str]]]:
    """Probe files in the order given; folders contribute their images in sorted order."""
    from ..gallery.scan import scan_gallery
    from ..preprocess import is_image_path

    probes: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            scan = scan_gallery(p, follow_links)
            probes += [Path(f.path) for f in scan.files]
            skipped += scan.skipped
        elif not p.exists():
            skipped.append((item, f"{item}: probe not found; check the path"))
        elif not is_image_path(p):
            skipped.append((item, f"{item}: not an image (suffix {p.suffix or 'none'!r}); pass .jpg/.png/... crops"))
        else:
            probes.append(p)
    return probes, skipped


def _embed_probes(probes: list[Path], requested: str, encoders: Any,
                  skipped: list[tuple[str, str]]) -> list[tuple[Path, str, np.ndarray]]:
    from ..gallery.indexer import non_finite_message
    from ..preprocess import ImageDecodeError, load_batch
    from ._common import detect_modality

    by_mod: dict[str, list[Path]] = {}
    for p in probes:
        try:
            mod = detect_modality(p) if requested == "auto" else requested
        except ImageDecodeError as e:
            skipped.append((str(p), str(e)))
            continue
        by_mod.setdefault(mod, []).append(p)
    out: dict[str, tuple[str, np.ndarray]] = {}
    for mod, paths in by_mod.items():
        enc = encoders.get(mod)
        batch, good, errors = load_batch(paths, enc.spec)
        skipped += errors
        for path, emb in zip(good, enc.embed(batch) if good else []):
            if np.isfinite(emb).all():
                out[path] = (mod, emb)
            else:  # issue 17 item 3: a NaN probe would rank arbitrarily
                skipped.append((path, non_finite_message(path)))
    return [(p, *out[str(p)]) for p in probes if str(p) in out]


def _open_index(args: argparse.Namespace, encoders: Any, modality: str, say: Any, scan: Any) -> tuple[Any, Any]:
    from ..gallery.index import default_index_path, read_index
    from ..gallery.indexer import UpdateStats, check_index, update_index

    index_path = Path(args.index) if args.index else default_index_path(args.gallery)
    enc = encoders.get(modality)
    if args.no_refresh:
        idx = read_index(index_path, gallery=args.gallery)
        check_index(idx, enc.spec, Path(args.gallery))
        return idx, UpdateStats(images=idx.count, kept=idx.count)
    try:
        return update_index(args.gallery, index_path, enc, rebuild=args.rebuild, follow_links=args.follow_links,
                            batch=args.batch, workers=args.workers, quiet=args.quiet or args.json,
                            checkpoint_seconds=args.checkpoint_every, say=say, scan=scan)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        if index_path.is_file() and not args.rebuild:  # a read-only gallery with an index: use it as it is
            say(f"{index_path}: cannot refresh the index ({e.strerror}); using it as it is")
            idx = read_index(index_path, gallery=args.gallery)
            check_index(idx, enc.spec, Path(args.gallery))
            return idx, UpdateStats(images=idx.count, kept=idx.count)
        raise OSError(f"{index_path}: cannot write the gallery index ({e.strerror}); pass --index PATH "
                      "in a writable folder") from None


def _rank(args: argparse.Namespace, idx: Any, probes: list[tuple[Path, str, np.ndarray]]) -> list[dict[str, Any]]:
    from ..search.rank import search_index
    from ..search.rerank import rerank_topk

    q = np.stack([e for _, _, e in probes])  # (Q, D)
    gallery = None
    if args.rerank:
        gallery = idx.as_float32()  # k-reciprocal re-ranking needs the whole gallery in memory
        ids, dists = rerank_topk(q, gallery, args.top_k)
    else:  # auto: the int8 codes the index stores (exact, nothing to build), issue 27
        ids, dists = search_index(idx, q, args.top_k, backend=args.search)
    out = []
    for qi, (path, mod, emb) in enumerate(probes):
        results = []
        for r, (gi, d) in enumerate(zip(ids[qi], dists[qi]), start=1):
            cos_d = float(np.clip(1.0 - gallery[gi] @ emb, 0.0, 2.0)) if gallery is not None else float(d)
            if args.threshold is not None and cos_d > args.threshold:
                continue
            item = {"rank": r, "distance": round(float(max(d, 0.0)), 6), "path": idx.entries[int(gi)].path}
            if args.rerank:
                item["cosine_distance"] = round(cos_d, 6)
            results.append(item)
        out.append({"probe": str(path), "modality": mod, "results": results})
    return out


def _print_table(ranked: list[dict[str, Any]], gallery: str, enc: Any) -> None:
    from ..base.errors import one_line

    print(f"model {one_line(enc.spec.name)} on {enc.backend}, {enc.spec.precision}")
    for p in ranked:
        print(f"probe {one_line(p['probe'])} ({p['modality']}) vs {one_line(gallery)}")
        if not p["results"]:
            print("  no gallery crop within the threshold")
            continue
        print(f"  {'rank':>4}  {'distance':>8}  path")
        for r in p["results"]:
            print(f"  {r['rank']:>4}  {r['distance']:>8.4f}  {one_line(r['path'])}")  # a newline in a name: one row


def run(args: argparse.Namespace) -> int:
    from ..base.errors import UserError
    from ..gallery.scan import scan_gallery
    from ._common import (
        Encoders,
        finite,
        first_skip,
        gallery_modality,
        model_path,
        positive,
        report_skipped,
        run_facts,
        say,
        skip_line,
    )

    positive(args.top_k, "--top-k")
    positive(args.batch, "--batch")
    finite(args.threshold, "--threshold")
    finite(args.checkpoint_every, "--checkpoint-every", low=float("-inf"))
    from ._store import check_local_match_args

    if args.store:
        return _run_store(args)
    check_local_match_args(args)
    t0 = time.perf_counter()
    quiet_notes = args.quiet

    def note(m: str) -> None:
        say(m, quiet_notes)

    probes, skipped = expand_probes(args.probe, args.follow_links)
    n_probe_skips = len(skipped)
    for path, reason in skipped:
        note(skip_line(path, reason))  # a probe folder's scan reasons do not name the file (issue 17 item 10)
    encoders = Encoders(model_path(args), args, verbose=not args.quiet)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    # --no-refresh trusts the index: no scan of the gallery (a million files), unless the gallery's
    # modality must be guessed from its files
    scan = None if args.no_refresh and args.gallery_modality != "auto" else scan_gallery(args.gallery, args.follow_links)
    g_mod = gallery_modality(args.gallery_modality, [f.path for f in scan.files]) if scan else args.gallery_modality
    timings["scan"] = time.perf_counter() - t
    t = time.perf_counter()
    encoders.get(g_mod)
    timings["model"] = time.perf_counter() - t
    t = time.perf_counter()
    idx, stats = _open_index(args, encoders, g_mod, note, scan)
    timings["open"] = time.perf_counter() - t  # with a refresh: the embedding of new gallery images too
    scan_skips = scan.skipped if scan else []
    report_skipped(scan_skips, args.quiet)
    skipped += [s for s in stats.skipped_files if s not in scan_skips] + scan_skips
    n_before = len(skipped)
    t = time.perf_counter()
    embedded = _embed_probes(probes, args.probe_modality, encoders, skipped)
    timings["embed"] = time.perf_counter() - t  # the probe model's load included
    for path, reason in skipped[n_before:]:
        note(skip_line(path, reason))
    if not embedded:
        why = first_skip(skipped[:n_probe_skips] + skipped[n_before:]) or "none given"
        raise UserError(f"no usable probe among {' '.join(args.probe)} ({why}); pass image files")
    t = time.perf_counter()
    ranked = _rank(args, idx, embedded)
    timings["search"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    if args.show:
        from ..show import render_rank_list

        render_rank_list(ranked, Path(args.gallery), args.show)
        note(f"rank list written to {args.show}")
    enc = encoders.get(g_mod)
    if args.json:
        out = {"model": str(encoders.model), **run_facts(enc), "gallery": str(args.gallery),
               "index": str(idx.path), "gallery_modality": g_mod, "rerank": args.rerank, "top_k": args.top_k,
               "threshold": args.threshold,
               "index_stats": {k: v for k, v in stats.to_dict().items() if k != "skipped_files"},
               "probes": ranked, "skipped": [{"path": p, "reason": r} for p, r in skipped],
               "timings_ms": {k: round(v * 1000, 2) for k, v in timings.items()}}
        print(json.dumps(out, indent=2, allow_nan=False))
    else:
        _print_table(ranked, args.gallery, enc)
        print(f"{len(ranked)} probe(s) vs {idx.count} gallery crops ({enc.backend}, {enc.spec.precision}) in "
              f"{time.perf_counter() - t0:.2f}s", file=sys.stderr if args.quiet else sys.stdout)
    return 0


def _run_store(args: argparse.Namespace) -> int:
    """`match --store URI`: search the store's gallery (docs/fleet.md)."""
    from ..base.errors import UserError
    from ..gallery.store.uri import open_store
    from ._common import Encoders, gallery_modality, model_path, run_facts, say
    from ._store import show_store, store_filters, store_results

    if args.rerank:
        raise UserError("--rerank needs the whole gallery in memory; it works with the local index, not --store")
    if args.index:
        raise UserError("--store replaces the local index file: drop --index")
    t0 = time.perf_counter()
    filters = store_filters(args)
    probes, skipped = expand_probes(args.probe, args.follow_links)
    for _, reason in skipped:
        say(reason, args.quiet)
    if args.gallery_modality == "auto":
        if not args.gallery:
            raise UserError("--gallery-modality auto looks at the gallery's files; with --store and no "
                            "--gallery pass --gallery-modality rgb or ir")
        from ..gallery.scan import scan_gallery

        files = [f.path for f in scan_gallery(args.gallery, args.follow_links).files]
        g_mod = gallery_modality("auto", files)
    else:
        g_mod = args.gallery_modality
    encoders = Encoders(model_path(args), args, verbose=not args.quiet)
    store = open_store(args.store, encoders.get(g_mod).spec)
    try:
        n_before = len(skipped)
        embedded = _embed_probes(probes, args.probe_modality, encoders, skipped)
        for _, reason in skipped[n_before:]:
            say(reason, args.quiet)
        if not embedded:
            raise UserError(f"no usable probe among {' '.join(args.probe)} (see the lines above); pass image files")
        import numpy as np

        hits = store.search(np.stack([e for _, _, e in embedded]), args.top_k, filters)
        info = store.info() if hasattr(store, "info") else {"count": len(store)}
    finally:
        store.close()
    ranked = [{"probe": str(path), "modality": mod, "results": store_results(h, args.threshold)}
              for (path, mod, _), h in zip(embedded, hits)]
    show_store(args, ranked, say)
    enc = encoders.get(g_mod)
    if args.json:
        out = {"model": str(encoders.model), **run_facts(enc), "store": args.store,
               "collection": info.get("collection"), "gallery": args.gallery, "gallery_modality": g_mod,
               "rerank": False, "top_k": args.top_k, "threshold": args.threshold,
               "filters": {"camera": args.camera, "device": args.device, "since": filters.since,
                           "until": filters.until},
               "probes": ranked, "skipped": [{"path": p, "reason": r} for p, r in skipped]}
        print(json.dumps(out, indent=2, allow_nan=False))
    else:
        _print_table(ranked, args.store, enc)
        print(f"{len(ranked)} probe(s) vs {info['count']} gallery entries in {args.store} ({enc.backend}) in "
              f"{time.perf_counter() - t0:.2f}s", file=sys.stderr if args.quiet else sys.stdout)
    return 0
