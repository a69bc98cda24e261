"""Native vs Python `match` wall time: one probe against a 10k-image gallery index, process start included.

Without TensorRT neither side can embed an image natively, so the probe is a precomputed embedding
(.npy) on both sides and the network is left out of both timings:

- native: ``irreid-edge-native match --probe-embedding probe.npy --index index.irx --json``
- Python: a fresh ``python`` process doing what ``irreid-edge match`` does after it has the probe's
  embedding (runtime.gallery.index.read_index -> GalleryIndex.as_float32 -> runtime.search.rank.topk -> the same JSON).
  The Python CLI itself has no --probe-embedding option, so its model-loading and refresh steps are
  not part of this figure.

Both read the same index (written by runtime.gallery.index.write_index, float16 rows) and neither verifies the
data checksum (the default of both). Median of --runs runs each, after one warm-up run each.

    python bench/native_vs_python.py --native build/runtime/cpp/irreid-edge-native [--count 10000] [--dim 1536]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.gallery.index import IndexEntry, write_index  # noqa: E402  (after the sys.path line)
from runtime.spec import ModelSpec  # noqa: E402

# The Python side, run with `python -c` so that interpreter start and imports are timed as for a CLI.
PYTHON_MATCH = """
import json, sys
import numpy as np
from runtime.gallery.index import read_index
from runtime.search.rank import topk
index_path, probe_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
idx = read_index(index_path)
q = np.load(probe_path).reshape(1, -1).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
ids, dists = topk(q, idx.as_float32(), k)
results = [{"rank": r, "distance": round(float(max(d, 0.0)), 6), "path": idx.entries[g].path}
           for r, (g, d) in enumerate(zip(ids[0], dists[0]), start=1)]
print(json.dumps({"model": idx.spec.name, "backend": "precomputed", "probes": [{"probe": probe_path,
      "modality": "ir", "results": results}], "skipped": []}, indent=2))
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--native", default=str(ROOT / "build" / "runtime" / "cpp" / "irreid-edge-native"),
                   help="the irreid-edge-native binary (cmake -S . -B build && cmake --build build)")
    p.add_argument("--count", type=int, default=10_000, help="gallery entries in the index")
    p.add_argument("--dim", type=int, default=1536, help="embedding dimension (3 stripes x 512)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per side (median reported)")
    p.add_argument("--top-k", type=int, default=10)
    return p


def make_index(folder: Path, count: int, dim: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(count, dim)).astype(np.float32)
    entries = [IndexEntry(f"id{i // 10:05d}/c{i % 6 + 1}_{i:06d}.jpg", 4096, 0, "0" * 64) for i in range(count)]
    spec = ModelSpec(name="bench", modality="rgb", input_height=288, input_width=144, embedding_dim=dim)
    index = write_index(folder / "index.irx", spec, entries, emb, folder)
    probe = folder / "probe.npy"
    np.save(probe, rng.normal(size=dim).astype(np.float32))
    return Path(index), probe


def time_command(cmd: list[str], runs: int) -> tuple[float, str]:
    """Median wall seconds over runs (after one warm-up run, which also fills the page cache)."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    native = Path(args.native)
    if not native.is_file():
        print(f"{native}: not built; build it with `cmake -S . -B build && cmake --build build -j2` or pass --native",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        index, probe = make_index(Path(tmp), args.count, args.dim)
        k = str(args.top_k)
        t_native, out_n = time_command([str(native), "match", "--probe-embedding", str(probe), "--index", str(index),
                                        "--top-k", k, "--json"], args.runs)
        t_python, out_p = time_command([sys.executable, "-c", PYTHON_MATCH, str(index), str(probe), k], args.runs)
    same = [r["path"] for r in json.loads(out_n)["probes"][0]["results"]] == \
           [r["path"] for r in json.loads(out_p)["probes"][0]["results"]]
    print(f"one probe (precomputed embedding, no network on either side) vs {args.count} x {args.dim} float16 index, "
          f"top-{args.top_k}, median of {args.runs} runs, process start included")
    print(f"  native  irreid-edge-native match : {t_native * 1000:8.1f} ms")
    print(f"  python  read_index + rank.topk   : {t_python * 1000:8.1f} ms")
    print(f"  ratio python / native            : {t_python / t_native:8.1f}x   (same top-{args.top_k}: {same})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
