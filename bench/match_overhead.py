"""`irreid-edge match` end to end on a 1,000-crop indexed gallery vs the bare model.

    python bench/match_overhead.py [--model DIR] [--runs 5]

Both are timed as fresh processes (what a user at the camera experiences; median of --runs):
  bare   python: open the IR encoder, decode + preprocess one probe, embed it
  match  irreid-edge match --probe P --gallery G --quiet (index already built and up to date:
         scan the gallery's stats, open the index, embed the probe, rank, print)
overhead = match / bare - 1. Also printed: the in-process split of one match (no interpreter start).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _gallery_common import REPO, gallery_of, stand_in_model

BARE = ("import sys; from runtime.encoder import open_encoder; from runtime.preprocess import preprocess_path; "
        "e = open_encoder(sys.argv[1], 'ir', verbose=False); e.embed(preprocess_path(sys.argv[2], e.spec)[None])")
MATCH = "import sys; from runtime.cli import main; sys.exit(main())"


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else stand_in_model(Path(tmp) / "model")
        gallery = gallery_of(Path(tmp) / "gallery", args.n)
        probe = sorted(gallery.iterdir())[0]
        py = sys.executable
        subprocess.run([py, "-c", MATCH, "index", "--gallery", str(gallery), "--model", str(model), "--quiet"],
                       cwd=REPO, check=True)
        bare = wall([py, "-c", BARE, str(model), str(probe)], args.runs)
        match = wall([py, "-c", MATCH, "match", "--probe", str(probe), "--gallery", str(gallery), "--model",
                      str(model), "--quiet"], args.runs)
        print(f"{args.n}-crop gallery, model {model}")
        print(f"  bare model process   {bare:8.1f} ms")
        print(f"  match process        {match:8.1f} ms   overhead {match / bare - 1:+.1%}")
        in_process(model, gallery, probe)
    return 0


def in_process(model: Path, gallery: Path, probe: Path) -> None:
    from runtime.encoder import open_encoder
    from runtime.gallery.index import default_index_path
    from runtime.gallery.indexer import update_index
    from runtime.preprocess import preprocess_path
    from runtime.search.rank import topk

    enc_ir, enc_rgb = open_encoder(model, "ir", verbose=False), open_encoder(model, "rgb", verbose=False)
    x = preprocess_path(probe, enc_ir.spec)[None]
    enc_ir.embed(x)
    t0 = time.perf_counter()
    q = enc_ir.embed(preprocess_path(probe, enc_ir.spec)[None])
    t1 = time.perf_counter()
    idx, _ = update_index(gallery, default_index_path(gallery), enc_rgb, quiet=True)
    t2 = time.perf_counter()
    topk(q, idx.as_float32(), 10)
    t3 = time.perf_counter()
    print(f"  in process: decode+embed probe {1e3 * (t1 - t0):.1f} ms, scan + open index {1e3 * (t2 - t1):.1f} ms, "
          f"f16->f32 + rank {1e3 * (t3 - t2):.1f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
