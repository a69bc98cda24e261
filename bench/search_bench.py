"""Exact top-10 search over N random L2-normalised embeddings: runtime.search.rank vs FAISS, same run.

    python bench/search_bench.py --n 100000 1000000 --dim 1536
    python bench/search_bench.py --n 1000000 --only numpy-f32 int8 faiss-flat   # a shorter run

Variants timed, one query at a time (median over --queries queries, after one warm-up):
  numpy-f32       runtime.search.rank.topk on a float32 gallery (BLAS sgemv + argpartition): the match path
  numpy-f32-2thr  the same product split in two row halves over two threads (the CPU has 2 cores)
  numpy-f16-chunk runtime.search.rank.topk straight on the float16 memmap-style array (chunked f32 conversion)
  faiss-flat-ip   faiss.IndexFlatIP (exact inner product)
  faiss-sq-fp16   faiss.IndexScalarQuantizer fp16 (exact up to fp16 rounding; shared/DESIGN.md quotes it)
  int8-exact (ORT MatMulInteger)
                  runtime.search.int8.Int8Searcher over the float16 gallery (the index's on-disk
                  dtype): int8 first pass + bound + exact float64 re-rank; built once, outside the
                  timing (its build time and the rows re-ranked per query are printed)
  int8-exact x32  the same, 32 queries per call (2 x 32 rows in one MatMulInteger), per query
  numpy-f32 x32   runtime.search.rank.topk numpy, 32 queries per call (one sgemm), per query
Memory is kept to one gallery copy at a time: the FAISS index is filled from regenerated chunks after
the numpy copy is dropped (1M x 1536 float32 = 6.1 GB).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runtime.search.int8 import Int8Searcher
from runtime.search.rank import topk, topk_from_distances

CHUNK = 50_000


def chunks(n: int, d: int, seed: int = 0) -> Iterator[np.ndarray]:
    for i, s in enumerate(range(0, n, CHUNK)):
        x = np.random.default_rng(seed + i).standard_normal((min(CHUNK, n - s), d), dtype=np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def gallery(n: int, d: int, dtype: type = np.float32) -> np.ndarray:
    g = np.empty((n, d), dtype)
    s = 0
    for c in chunks(n, d):
        g[s:s + len(c)] = c
        s += len(c)
    return g


def timeit(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    fn(queries[:1])  # warm-up (page faults, BLAS thread start)
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None, :])
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000.0


def two_threads(g: np.ndarray, pool: ThreadPoolExecutor) -> Callable[[np.ndarray], object]:
    half = g.shape[0] // 2
    parts = (g[:half], g[half:])

    def run(q: np.ndarray) -> object:
        sims = list(pool.map(lambda p: p @ q[0], parts))  # BLAS releases the GIL
        return topk_from_distances(1.0 - np.concatenate(sims)[None, :], 10)
    return run


def batched(fn: Callable[[np.ndarray], object], queries: np.ndarray, b: int = 32) -> float:
    """Median ms per query when ``b`` queries go in one call (3 calls after a warm-up)."""
    fn(queries[:b])
    times = []
    for _ in range(3):
        t = time.perf_counter()
        fn(queries[:b])
        times.append((time.perf_counter() - t) / b)
    return statistics.median(times) * 1000.0


def bench_int8(g16: np.ndarray, queries: np.ndarray, res: dict[str, float], notes: list[str]) -> None:
    t = time.perf_counter()
    searcher = Int8Searcher(g16)
    build = time.perf_counter() - t
    res["int8-exact (ORT MatMulInteger)"] = timeit(lambda q: searcher.search(q, 10), queries)
    cands = []
    for q in queries:
        searcher.search(q[None, :], 10)
        cands += searcher.last_candidates
    want = topk(queries, g16, 10, backend="numpy")[0]
    same = bool((searcher.search(queries, 10)[0] == want).all())
    res["int8-exact x32"] = batched(lambda q: searcher.search(q, 10), queries)
    notes.append(f"int8-exact: build {build:.2f} s ({searcher.threads} threads); rows re-ranked per query "
                 f"median {int(np.median(cands))}, max {max(cands)}; same top-10 as numpy: {same}")


def bench(n: int, d: int, nq: int, only: list[str]) -> tuple[dict[str, float], list[str]]:
    def want(name: str) -> bool:
        return not only or any(name.startswith(o) for o in only)

    queries = next(chunks(max(nq, 32), d, seed=12345))
    res: dict[str, float] = {}
    notes: list[str] = []
    if want("numpy-f32"):
        held = {"g": gallery(n, d)}  # a dict, so the copy can be dropped while lambdas refer to it
        res["numpy-f32"] = timeit(lambda q: topk(q, held["g"], 10), queries[:nq])
        res["numpy-f32 x32"] = batched(lambda q: topk(q, held["g"], 10), queries)
        with ThreadPoolExecutor(2) as pool:
            res["numpy-f32-2thr"] = timeit(two_threads(held["g"], pool), queries[:nq])
        held.clear()
        gc.collect()
    if want("numpy-f16") or want("int8"):
        g16 = gallery(n, d, np.float16)  # the same values as the float16 index would hold
        if want("numpy-f16"):
            res["numpy-f16-chunk"] = timeit(lambda q: topk(q, g16, 10), queries[:nq])
        if want("int8"):
            bench_int8(g16, queries, res, notes)
        del g16
        gc.collect()
    try:
        import faiss
    except ImportError:
        print("faiss-cpu not installed: pip install faiss-cpu", file=sys.stderr)
        return res, notes
    for name, make in (("faiss-flat-ip", lambda: faiss.IndexFlatIP(d)),
                       ("faiss-sq-fp16", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16,
                                                                             faiss.METRIC_INNER_PRODUCT))):
        if not want(name):
            continue
        index = make()
        for c in chunks(n, d):
            index.add(c)
        res[name] = timeit(lambda q, index=index: index.search(q, 10), queries[:nq])
        del index
        gc.collect()
    return res, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--only", nargs="+", default=[], metavar="PREFIX",
                   help="run only the variants starting with these names, e.g. --only numpy-f32 int8 faiss-flat")
    args = p.parse_args(argv)
    try:
        import faiss

        print(f"faiss {faiss.__version__}, threads {faiss.omp_get_max_threads()}; numpy {np.__version__}")
    except ImportError:
        pass
    for n in args.n:
        res, notes = bench(n, args.dim, args.queries, args.only)
        base = res.get("faiss-flat-ip")
        print(f"\nN = {n:,} x {args.dim}, top-10, one query per call (median of {args.queries}) unless x32 "
              f"(32 per call, per query); load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for name, ms in res.items():
            rel = f"  {ms / base:.2f}x faiss-flat-ip" if base else ""
            print(f"  {name:<31} {ms:9.2f} ms{rel}")
        for line in notes:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
