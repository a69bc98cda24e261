"""Gallery stores at scale: insert throughput and top-10 latency, Milvus Lite vs the local index vs FAISS.

    nice -n 10 python bench/store_bench.py --n 100000 --dim 1536
    nice -n 10 python bench/store_bench.py --n 1000000 --dim 256 --only local-numpy faiss-flat milvus-flat

Variants (each on the same N x D gallery, one at a time so that only one copy is in memory):
  local-numpy   the local index: runtime.index.write_index (float16 file, atomic), then
                runtime.rank.topk numpy on the float32 rows (what `match` does)
  local-int8    runtime.rank.topk backend="int8" (runtime/search_int8.py); insert = its build
  faiss-flat    faiss.IndexFlatIP: add, then search
  milvus-flat   runtime.store MilvusStore on Milvus Lite, FLAT index (exact, the default):
                insert = store.add (existence check + upsert, 16 MB requests); search = store.search
                (top-10 + 8 candidates with their vectors, re-scored and sorted by (distance, id))
  milvus-hnsw   the same with ?index=hnsw (M=16, efConstruction=200, ef=64); insert includes the build
  milvus-ivf    the same with ?index=ivf_flat (nlist=1024, nprobe=16)
Latency: "1 query" is the median of --queries (>= 32) single-query calls after a warm-up; "32/call" the
median of 3 calls of 32 queries (ms per call). recall@10 is against exact numpy search on the same
stored rows (1.0 for the exact variants is a check, not a result).

Data (--data clustered, the default): re-ID-like galleries, --per-id crops per identity around a
random centre (cosine ~0.7 within an identity), queries are fresh crops of random identities.
--data random: i.i.d. unit vectors (no structure; the hardest case for an ANN index).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runtime.rank import clear_int8_cache, topk
from runtime.spec import ModelSpec
from runtime.store import Entry

VARIANTS = ("local-numpy", "local-int8", "faiss-flat", "milvus-flat", "milvus-hnsw", "milvus-ivf")
CHUNK = 50_000


def make_data(n: int, d: int, queries: int, kind: str, per_id: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    if kind == "random":
        g = np.empty((n, d), np.float32)
        for s in range(0, n, CHUNK):
            g[s:s + CHUNK] = unit(rng.standard_normal((min(CHUNK, n - s), d), dtype=np.float32))
        return g, unit(rng.standard_normal((queries, d), dtype=np.float32))
    ids = max(1, n // per_id)
    centres = unit(rng.standard_normal((ids, d), dtype=np.float32))
    sigma = 0.8 / np.sqrt(d)  # |noise| ~ 0.8: cosine to the centre ~ 0.78, between crops ~ 0.6
    g = np.empty((n, d), np.float32)
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        who = rng.integers(0, ids, m)
        g[s:s + m] = unit(centres[who] + sigma * rng.standard_normal((m, d), dtype=np.float32))
    who = rng.integers(0, ids, queries)
    return g, unit(centres[who] + sigma * rng.standard_normal((queries, d), dtype=np.float32))


def lat_single(fn: Callable[[np.ndarray], Any], q: np.ndarray) -> float:
    fn(q[:1])
    ts = []
    for row in q:
        t = time.perf_counter()
        fn(row[None, :])
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def lat_batch(fn: Callable[[np.ndarray], Any], q: np.ndarray, b: int = 32) -> float:
    qb = np.resize(q, (b, q.shape[1])) if len(q) < b else q[:b]
    fn(qb)
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        fn(qb)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def recall(got: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b.tolist())) / len(b) for a, b in zip(got, exact)]))


def bench_local(g: np.ndarray, q: np.ndarray, spec: ModelSpec, work: Path, backend: str) -> dict[str, Any]:
    from runtime.index import IndexEntry, read_index, write_index

    n = g.shape[0]
    t = time.perf_counter()
    if backend == "numpy":
        entries = [IndexEntry(f"{i:08d}.jpg", 1, 0, "0" * 64) for i in range(n)]
        write_index(work / "bench.irx", spec, entries, g, work)
        gal = read_index(work / "bench.irx").as_float32()
    else:
        gal = g.copy()
        gal.setflags(write=False)
        topk(q[:1], gal, 10, backend="int8")  # builds and caches the searcher
    ins = time.perf_counter() - t

    def search(x: np.ndarray) -> Any:
        return topk(x, gal, 10, backend=backend)[0]

    res = {"insert_s": ins, "lat1_ms": lat_single(search, q), "lat32_ms": lat_batch(search, q),
           "got": search(q).tolist()}
    clear_int8_cache()
    return res


def bench_faiss(g: np.ndarray, q: np.ndarray) -> dict[str, Any]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    ins = time.perf_counter() - t

    def search(x: np.ndarray) -> Any:
        return index.search(np.ascontiguousarray(x), 10)[1]

    return {"insert_s": ins, "lat1_ms": lat_single(search, q), "lat32_ms": lat_batch(search, q),
            "got": search(q).tolist()}


def bench_milvus(g: np.ndarray, q: np.ndarray, spec: ModelSpec, work: Path, index: str) -> dict[str, Any]:
    from runtime.store.uri import open_store

    n = g.shape[0]
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    row_of = {h: i for i, h in enumerate(ids)}
    opts = {"flat": "", "hnsw": "?index=hnsw", "ivf_flat": "?index=ivf_flat"}[index]
    db = work / f"milvus_{index}.db"
    store = open_store(f"milvus-lite:{db}{opts}", spec, create=True)
    try:
        t = time.perf_counter()
        for s in range(0, n, 10_000):
            store.add(g[s:s + 10_000], [Entry(ids[i], f"{i:08d}.jpg") for i in range(s, min(n, s + 10_000))])
        ins_rows = time.perf_counter() - t
        _wait_indexed(store, n)
        ins = time.perf_counter() - t

        def search(x: np.ndarray) -> Any:
            return [[row_of[h.entry.id] for h in hits] for hits in store.search(x, 10)]

        def raw(x: np.ndarray) -> Any:  # the engine alone: top-10 ids, no vectors, no re-score
            return store.client.search(store.collection, data=list(x), limit=10,
                                       search_params={"metric_type": "IP", "params": store._search_params(10)})

        res = {"insert_s": ins, "insert_rows_s": ins_rows, "lat1_ms": lat_single(search, q),
               "lat32_ms": lat_batch(search, q), "raw_lat1_ms": lat_single(raw, q), "raw_lat32_ms": lat_batch(raw, q),
               "got": search(q), "count": len(store)}
    finally:
        store.close()  # the work folder with the .db is removed by the caller
    return res


def _wait_indexed(store: Any, n: int, timeout: float = 3600) -> None:
    """Flush, then wait until the vector index covers every row (HNSW/IVF build in the background)."""
    store.client.flush(store.collection)
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        info = store.client.describe_index(store.collection, "vec")
        if int(info.get("indexed_rows", n)) >= n and not int(info.get("pending_index_rows", 0)):
            return
        time.sleep(0.5)


def run_variant(name: str, g: np.ndarray, q: np.ndarray, spec: ModelSpec, work: Path) -> dict[str, Any]:
    if name == "local-numpy":
        return bench_local(g, q, spec, work, "numpy")
    if name == "local-int8":
        return bench_local(g, q, spec, work, "int8")
    if name == "faiss-flat":
        return bench_faiss(g, q)
    return bench_milvus(g, q, spec, work, {"milvus-flat": "flat", "milvus-hnsw": "hnsw", "milvus-ivf": "ivf_flat"}[name])


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0], allow_abbrev=False)
    ap.add_argument("--n", type=int, nargs="+", default=[100_000])
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--queries", type=int, default=32, help="single-query calls timed (at least 32 are made)")
    ap.add_argument("--data", choices=("clustered", "random"), default="clustered")
    ap.add_argument("--per-id", type=int, default=8, help="crops per identity (--data clustered)")
    ap.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--workdir", help="folder for the index file and the Milvus Lite .db (default: a temp dir)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    spec = ModelSpec(name="bench", modality="rgb", input_height=256, input_width=128, embedding_dim=args.dim)
    rows = []
    print(f"store_bench: dim {args.dim}, data {args.data}, {args.queries} single queries + 3 x 32, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    for n in args.n:
        g, q = make_data(n, args.dim, max(args.queries, 32), args.data, args.per_id)  # (N, D), (Q, D)
        from runtime.store.milvus import stored_rows

        g = stored_rows(g)  # what every store ranks (float16-rounded), so recall compares like with like
        exact = topk(q, g, 10, backend="numpy")[0]
        for name in args.only:
            work = Path(tempfile.mkdtemp(prefix="store_bench_", dir=args.workdir))
            try:
                r = run_variant(name, g, q, spec, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            got = r.pop("got")
            row = {"n": n, "dim": args.dim, "variant": name, "insert_rows_per_s": n / r["insert_s"],
                   "recall@10": recall(got, exact[:len(got)]), **r, "load": os.getloadavg()[0]}
            rows.append(row)
            print(_fmt(row), flush=True)
            gc.collect()
        del g
        gc.collect()
    print("\n" + table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _fmt(r: dict[str, Any]) -> str:
    raw = f", engine alone {r['raw_lat1_ms']:.1f} / {r['raw_lat32_ms']:.1f} ms" if "raw_lat1_ms" in r else ""
    return (f"  {r['n']:>8} x {r['dim']} {r['variant']:<12} insert {r['insert_rows_per_s']:>9.0f} rows/s "
            f"({r['insert_s']:.1f}s), top-10 1 query {r['lat1_ms']:.2f} ms, 32/call {r['lat32_ms']:.1f} ms, "
            f"recall@10 {r['recall@10']:.3f}{raw} (load {r['load']:.1f})")


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| N x D | store | insert rows/s | top-10, 1 query (ms) | top-10, 32 queries/call (ms per call) "
            "| recall@10 vs exact |\n|---|---|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        extra = (f" (engine alone {r['raw_lat1_ms']:.1f})" if "raw_lat1_ms" in r else "")
        extra32 = (f" (engine alone {r['raw_lat32_ms']:.1f})" if "raw_lat32_ms" in r else "")
        lines.append(f"| {r['n']:,} x {r['dim']} | {r['variant']} | {r['insert_rows_per_s']:,.0f} | "
                     f"{r['lat1_ms']:.2f}{extra} | {r['lat32_ms']:.1f}{extra32} | {r['recall@10']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
