"""Exact top-10 search over N random L2-normalised embeddings: runtime.rank vs FAISS, same run.

    python bench/search_bench.py --n 100000 1000000 --dim 1536

Variants timed, one query at a time (median over --queries queries, after one warm-up):
  numpy-f32       runtime.rank.topk on a float32 gallery (BLAS sgemv + argpartition): the match path
  numpy-f32-2thr  the same product split in two row halves over two threads (the CPU has 2 cores)
  numpy-f16-chunk runtime.rank.topk straight on the float16 memmap-style array (chunked f32 conversion)
  faiss-flat-ip   faiss.IndexFlatIP (exact inner product)
  faiss-sq-fp16   faiss.IndexScalarQuantizer fp16 (exact up to fp16 rounding; shared/DESIGN.md quotes it)
Memory is kept to one gallery copy at a time: the FAISS index is filled from regenerated chunks after
the numpy copy is dropped (1M x 1536 float32 = 6.1 GB).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runtime.rank import topk, topk_from_distances

CHUNK = 50_000


def chunks(n: int, d: int, seed: int = 0) -> Iterator[np.ndarray]:
    for i, s in enumerate(range(0, n, CHUNK)):
        x = np.random.default_rng(seed + i).standard_normal((min(CHUNK, n - s), d), dtype=np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def gallery(n: int, d: int) -> np.ndarray:
    g = np.empty((n, d), np.float32)
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


def bench(n: int, d: int, nq: int) -> dict[str, float]:
    queries = next(chunks(nq, d, seed=12345))
    res: dict[str, float] = {}
    held = {"g": gallery(n, d)}  # a dict, so the copy can be dropped while lambdas refer to it
    res["numpy-f32"] = timeit(lambda q: topk(q, held["g"], 10), queries)
    with ThreadPoolExecutor(2) as pool:
        res["numpy-f32-2thr"] = timeit(two_threads(held["g"], pool), queries)
    held["g"] = held["g"].astype(np.float16)
    gc.collect()
    res["numpy-f16-chunk"] = timeit(lambda q: topk(q, held["g"], 10), queries)
    held.clear()
    gc.collect()
    try:
        import faiss
    except ImportError:
        print("faiss-cpu not installed: pip install faiss-cpu", file=sys.stderr)
        return res
    for name, make in (("faiss-flat-ip", lambda: faiss.IndexFlatIP(d)),
                       ("faiss-sq-fp16", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16,
                                                                             faiss.METRIC_INNER_PRODUCT))):
        index = make()
        for c in chunks(n, d):
            index.add(c)
        res[name] = timeit(lambda q, index=index: index.search(q, 10), queries)
        del index
        gc.collect()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--queries", type=int, default=20)
    args = p.parse_args(argv)
    try:
        import faiss

        print(f"faiss {faiss.__version__}, threads {faiss.omp_get_max_threads()}; numpy {np.__version__}")
    except ImportError:
        pass
    for n in args.n:
        res = bench(n, args.dim, args.queries)
        base = res.get("faiss-flat-ip")
        print(f"\nN = {n:,} x {args.dim}, top-10, one query, median of {args.queries}")
        for name, ms in res.items():
            rel = f"  {ms / base:.2f}x faiss-flat-ip" if base else ""
            print(f"  {name:<16} {ms:9.2f} ms{rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
