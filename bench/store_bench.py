"""Gallery stores at scale: insert throughput and top-10 latency, Milvus Lite vs the local index vs FAISS.

    python bench/store_bench.py --n 100000 --dim 1536
    python bench/store_bench.py --n 1000000 --dim 256 --only local-numpy faiss-flat milvus-flat

Variants (all on the same N x D gallery, all kept in memory, then their searches timed in turns):
  local-numpy   the local index: runtime.gallery.index.write_index (float16 file, atomic), then
                runtime.search.rank.topk numpy on the float32 rows (what `match` does)
  local-int8    runtime.search.rank.topk backend="int8" (runtime/search/int8.py); insert = its build
  faiss-flat    faiss.IndexFlatIP: add, then search
  milvus-flat   runtime.gallery.store MilvusStore on Milvus Lite, FLAT index (exact, the default):
                insert = store.add in --add-rows calls (existence check, then the engine's writes:
                16 MB upserts on Milvus Lite 3.x, 1 MB inserts 8 at a time on 2.x), then flush,
                wait for the index, close and reopen; "add alone" is the store.add calls only,
                in wall time and per CPU-second of this process and its children (Milvus Lite
                3.x's engine runs in this process, 2.x's in a child process);
                search = store.search (top-10 + 8 candidates with their vectors, re-scored and
                sorted by (distance, id))
  milvus-hnsw   the same with ?index=hnsw (the store's M, efConstruction, ef, or --hnsw 'M=32&...')
  milvus-ivf    the same with ?index=ivf_flat (the store's nlist, nprobe, or --ivf 'nlist=256')
  --ef 256 1024 / --nprobe 64 256: also search the same HNSW / IVF collection with each of these
                (reopened with ?ef=... / ?nprobe=..., as `match --store` would be)

    python bench/store_bench.py --n 100000 --data random --only milvus-flat
    python bench/store_bench.py --n 100000 --data random --only milvus-hnsw milvus-ivf --ef 256 1024 --nprobe 256 1024
Latency, interleaved (the variants take turns query by query, so the load of a shared machine weighs
on all alike): "1 query" is the median of --queries (>= 32) single-query calls after a warm-up;
"32/call" the median of 3 calls of 32 queries (ms per call). recall@10 is against exact numpy search on the same
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
from runtime.gallery.store import Entry
from runtime.search.rank import clear_int8_cache, topk
from runtime.spec import ModelSpec

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


def recall(got: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b.tolist())) / len(b) for a, b in zip(got, exact)]))


Search = Callable[[np.ndarray], list[list[int]]]  # (Q, D) queries -> top-10 gallery rows per query


def build_local(g: np.ndarray, spec: ModelSpec, work: Path, backend: str) -> tuple[float, Search, Callable[[], None]]:
    from runtime.gallery.index import IndexEntry, read_index, write_index

    t = time.perf_counter()
    if backend == "numpy":
        entries = [IndexEntry(f"{i:08d}.jpg", 1, 0, "0" * 64) for i in range(g.shape[0])]
        write_index(work / "bench.irx", spec, entries, g, work)
        gal = read_index(work / "bench.irx").as_float32()
    else:
        gal = g.copy()
        gal.setflags(write=False)
        topk(g[:1], gal, 10, backend="int8")  # builds and caches the searcher
    ins = time.perf_counter() - t
    return ins, lambda x: topk(x, gal, 10, backend=backend)[0].tolist(), clear_int8_cache


def build_faiss(g: np.ndarray) -> tuple[float, Search, Callable[[], None]]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    return time.perf_counter() - t, lambda x: index.search(np.ascontiguousarray(x), 10)[1].tolist(), index.reset


def build_milvus(g: np.ndarray, spec: ModelSpec, work: Path, index: str, options: str = "",
                 info: dict[str, float] | None = None, add_rows: int = 10_000) -> tuple[float, Search, Callable[[], None]]:
    """Insert = store.add in --add-rows calls (each split by the store into requests of the size its
    engine takes best), then flush and wait until the vector index covers every row. ``info`` receives
    the add-only time (wall, and CPU of this process and its children: Milvus Lite 3.x's engine runs
    in this process, Milvus Lite 2.x's in a child) and the flush+index wait."""
    from runtime.gallery.store.uri import open_store

    n = g.shape[0]
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    opts = {"flat": "", "hnsw": "?index=hnsw", "ivf_flat": "?index=ivf_flat"}[index]
    if options and index != "flat":
        opts += "&" + options
    uri = f"milvus-lite:{work / f'milvus_{index}.db'}{opts}"
    store: Any = open_store(uri, spec, create=True)
    step = add_rows
    t, c = time.perf_counter(), cpu_seconds()
    for s in range(0, n, step):
        store.add(g[s:s + step], [Entry(ids[i], f"{i:08d}.jpg") for i in range(s, min(n, s + step))])
    add_s, add_cpu = time.perf_counter() - t, cpu_seconds() - c
    _wait_indexed(store, n)
    # Closing stops Milvus Lite's engine once its background index builds are done (Milvus Lite 3.x
    # reports every row indexed before they are); reopened, the collection is searched through them.
    store.close()
    store = open_store(uri, spec)
    ins = time.perf_counter() - t
    assert len(store) == n
    if info is not None:
        info.update(add_s=add_s, add_cpu_s=add_cpu, index_wait_s=ins - add_s)
    _OPEN[index] = store
    return ins, _milvus_search(store, ids), store.close


_OPEN: dict[str, Any] = {}  # index kind -> the MilvusStore build_milvus left open (for the --ef / --nprobe sweeps)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its live children (Milvus Lite 2.x runs its engine in a
    child process, which time.process_time does not see; Linux /proc, else this process alone)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for task in Path("/proc/self/task").glob("*/children"):
        for pid in task.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the child has exited
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (stat fields 14, 15)
    return total


def _milvus_search(store: Any, ids: list[str]) -> Search:
    row_of = {h: i for i, h in enumerate(ids)}

    def search(x: np.ndarray) -> list[list[int]]:
        return [[row_of[h.entry.id] for h in hits] for hits in store.search(x, 10)]

    return search


def reopen_milvus(index: str, option: str, n: int) -> tuple[Search, Callable[[], None]]:
    """The collection build_milvus made, searched with a search option (``ef=512``, ``nprobe=64``) as
    `match --store milvus-lite:...?ef=512` would: a MilvusStore on the same client with that URI. (A
    second client failed once, after a 10-minute run, with "Fail connecting to server" right after
    gRPC's too_many_pings GOAWAY on Milvus Lite 3.2.2; not reproduced on a small store.)"""
    from runtime.gallery.store.milvus import MilvusStore
    from runtime.gallery.store.uri import parse_store_uri

    base = _OPEN[index]
    uri = parse_store_uri(base.uri.text + ("&" if "?" in base.uri.text else "?") + option)
    store = MilvusStore(base.client, uri, base.spec, base.collection, base.index, base.engine)
    return _milvus_search(store, [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]), lambda: None


def _wait_indexed(store: Any, n: int, timeout: float = 3600) -> None:
    """Flush, then wait until the engine reports the vector index covering every row."""
    store.flush()
    store.client.flush(store.collection)
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        info = store.client.describe_index(store.collection, "vec")
        if int(info.get("pending_index_rows", 0)):
            time.sleep(0.5)
            continue
        # Milvus Lite 2.x counts no rows here (total_rows 0) and builds on flush: its state is the word
        if int(info.get("indexed_rows", n)) >= n or (not int(info.get("total_rows", 0)) and info.get("state") == "Finished"):
            return
        time.sleep(0.5)


MILVUS_INDEX = {"milvus-flat": "flat", "milvus-hnsw": "hnsw", "milvus-ivf": "ivf_flat"}


def build(name: str, g: np.ndarray, spec: ModelSpec, work: Path, args: argparse.Namespace,
          info: dict[str, float]) -> tuple[float, Search, Callable[[], None]]:
    if name in ("local-numpy", "local-int8"):
        return build_local(g, spec, work, name.split("-")[1])
    if name == "faiss-flat":
        return build_faiss(g)
    options = {"milvus-hnsw": args.hnsw, "milvus-ivf": args.ivf}.get(name, "")
    return build_milvus(g, spec, work, MILVUS_INDEX[name], options, info, args.add_rows)


def interleaved(searches: dict[str, Search], q: np.ndarray, rounds: int = 3, b: int = 32) -> dict[str, tuple[float, float]]:
    """Median ms of one query per call, and of one call of ``b`` queries, for every variant, the
    variants taking turns query by query (the machine's load then weighs on all of them alike)."""
    names = list(searches)
    one: dict[str, list[float]] = {n: [] for n in names}
    many: dict[str, list[float]] = {n: [] for n in names}
    for n in names:
        searches[n](q[:1])  # warm-up
    for i, row in enumerate(q):
        for n in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            searches[n](row[None, :])
            one[n].append(time.perf_counter() - t)
    qb = np.resize(q, (b, q.shape[1]))
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            searches[n](qb)
            many[n].append(time.perf_counter() - t)
    return {n: (statistics.median(one[n]) * 1000, statistics.median(many[n]) * 1000) for n in names}


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
    ap.add_argument("--add-rows", type=int, default=10_000, help="rows per store.add call (Milvus)")
    ap.add_argument("--hnsw", default="", help="milvus-hnsw build options as in the store URI, e.g. 'M=16&efConstruction=200'"
                    " (default: the store's)")
    ap.add_argument("--ivf", default="", help="milvus-ivf build options, e.g. 'nlist=1024' (default: the store's)")
    ap.add_argument("--ef", type=int, nargs="*", default=[], help="also search milvus-hnsw with each of these ef")
    ap.add_argument("--nprobe", type=int, nargs="*", default=[], help="also search milvus-ivf with each of these nprobe")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    spec = ModelSpec(name="bench", modality="rgb", input_height=256, input_width=128, embedding_dim=args.dim)
    rows = []
    print(f"store_bench: dim {args.dim}, data {args.data}, {args.queries} single queries + 3 x 32, "
          f"{_versions('pymilvus', 'milvus-lite', 'faiss-cpu')}, load {os.getloadavg()[0]:.1f}", flush=True)
    for n in args.n:
        g, q = make_data(n, args.dim, max(args.queries, 32), args.data, args.per_id)  # (N, D), (Q, D)
        from runtime.gallery.store.milvus import stored_rows

        g = stored_rows(g)  # what every store ranks (float16-rounded), so recall compares like with like
        exact = np.asarray(topk(q, g, 10, backend="numpy")[0])
        work = Path(tempfile.mkdtemp(prefix="store_bench_", dir=args.workdir))
        searches: dict[str, Search] = {}
        closers: list[Callable[[], None]] = []
        inserts: dict[str, float] = {}
        infos: dict[str, dict[str, float]] = {}
        try:
            for name in args.only:
                infos[name] = {}
                inserts[name], searches[name], close = build(name, g, spec, work, args, infos[name])
                closers.append(close)
                extra = ""
                if "add_s" in infos[name]:
                    i = infos[name]
                    extra = (f"; add alone {n / i['add_s']:,.0f} rows/s wall ({i['add_s']:.1f}s), "
                             f"{n / i['add_cpu_s']:,.0f} rows per CPU-second; flush + index + reopen {i['index_wait_s']:.1f}s")
                print(f"  {n} x {args.dim} {name}: insert {n / inserts[name]:,.0f} rows/s "
                      f"({inserts[name]:.1f}s{extra}, load {os.getloadavg()[0]:.1f})", flush=True)
            sweeps = ([("milvus-hnsw", "hnsw", f"ef={v}") for v in args.ef if "milvus-hnsw" in searches]
                      + [("milvus-ivf", "ivf_flat", f"nprobe={v}") for v in args.nprobe if "milvus-ivf" in searches])
            for base, index, option in sweeps:
                searches[f"{base} {option}"], close = reopen_milvus(index, option, n)
                closers.append(close)
                inserts[f"{base} {option}"], infos[f"{base} {option}"] = inserts[base], infos[base]
            lat = interleaved(searches, q)
            for name in searches:
                row = {"n": n, "dim": args.dim, "variant": name, "insert_s": inserts[name],
                       "insert_rows_per_s": n / inserts[name], "lat1_ms": lat[name][0], "lat32_ms": lat[name][1],
                       "recall@10": recall(searches[name](q), exact), "load": os.getloadavg()[0]}
                if "add_s" in infos[name]:
                    row.update(add_rows_per_s=n / infos[name]["add_s"], add_rows_per_cpu_s=n / infos[name]["add_cpu_s"],
                               index_wait_s=infos[name]["index_wait_s"])
                rows.append(row)
                print(_fmt(row), flush=True)
        finally:
            for close in reversed(closers):
                close()
            shutil.rmtree(work, ignore_errors=True)
        del g, searches
        gc.collect()
    print("\n" + table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _versions(*dists: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for d in dists:
        try:
            out.append(f"{d} {version(d)}")
        except PackageNotFoundError:
            out.append(f"no {d}")
    return ", ".join(out)


def _fmt(r: dict[str, Any]) -> str:
    return (f"  {r['n']:>8} x {r['dim']} {r['variant']:<12} insert {r['insert_rows_per_s']:>9.0f} rows/s "
            f"({r['insert_s']:.1f}s), top-10 1 query {r['lat1_ms']:.2f} ms, 32/call {r['lat32_ms']:.1f} ms, "
            f"recall@10 {r['recall@10']:.3f} (load {r['load']:.1f})")


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| N x D | store | insert rows/s | add alone rows/s (per CPU-s) | top-10, 1 query (ms) "
            "| top-10, 32 queries/call (ms per call) | recall@10 vs exact |\n|---|---|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        add = f"{r['add_rows_per_s']:,.0f} ({r['add_rows_per_cpu_s']:,.0f})" if "add_rows_per_s" in r else ""
        lines.append(f"| {r['n']:,} x {r['dim']} | {r['variant']} | {r['insert_rows_per_s']:,.0f} | {add} | "
                     f"{r['lat1_ms']:.2f} | {r['lat32_ms']:.1f} | {r['recall@10']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
