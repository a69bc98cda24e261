"""Indexing throughput: decoding in a thread pool overlapped with batched inference vs one image at a time.

    python bench/index_bench.py [--model DIR] [--n 1000] [--workers 2 4]

Each configuration rebuilds the index of the same gallery (`update_index(..., rebuild=True)`).
"one-at-a-time" = decode in the main thread (workers 0) and batch size 1, the naive loop.
Without --model a stand-in encoder with the real input size (288x144 -> 1536) is used: its inference
is cheap, so the figures show the decode/pipeline side; pass a real export for end-to-end figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _gallery_common import gallery_of, stand_in_model

from runtime.encoder import open_encoder
from runtime.gallery.indexer import update_index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else stand_in_model(Path(tmp) / "model")
        gallery = gallery_of(Path(tmp) / "gallery", args.n)
        enc = open_encoder(model, "rgb")
        configs = [("one-at-a-time", 0, 1), (f"main-thread b{args.batch}", 0, args.batch)]
        configs += [(f"pool {w} thr b{args.batch}", w, args.batch) for w in args.workers]
        print(f"{args.n} crops, model {enc.spec.name} {enc.spec.input_height}x{enc.spec.input_width} "
              f"-> {enc.spec.embedding_dim}, backend {enc.backend}")
        base = None
        for name, workers, batch in configs:
            t = time.perf_counter()
            _, stats = update_index(gallery, Path(tmp) / "i.irx", enc, rebuild=True, batch=batch,
                                    workers=workers, quiet=True)
            dt = time.perf_counter() - t
            base = base or dt
            print(f"  {name:<22} {stats.images / dt:8.1f} img/s  ({dt:6.2f} s, {base / dt:4.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
