"""Ranking: exact top-k by cosine on L2-normalised embeddings, optional FAISS (re-ranking: runtime.search.rerank).

distance = 1 - cosine (shared/DESIGN.md "Embedding layout"). Exact search is a float32 matrix
product followed by a partial sort (argpartition, then a sort of the k survivors only). numpy's
float16 matmul is far slower than float32, so a float16 gallery is ranked through float32 chunks.

FAISS (``pip install faiss-cpu``, extra ``search``) is an optional backend, run only when asked
(``"faiss"``): numpy's float32 product was faster than ``faiss.IndexFlatIP`` for one-shot queries.

``backend="int8"`` is runtime/search/int8.py's exact searcher: an int8 first pass through ONNX
Runtime's MatMulInteger bounds every row's score, and the few rows that can be in the top-k are
re-scored in float64, so the result is exact. Its build (quantise + prepack) costs more than it
saves in one call unless the call brings many queries, so it pays off only when reused: it is
cached for READ-ONLY gallery arrays (an index memmap, or ``arr.setflags(write=False)``); a writable
array is re-quantised on every call (a cache cannot see in-place edits). ``auto`` uses it only
when a searcher is already cached for the array (a long-lived process that asked for it once);
otherwise numpy, so the one-shot CLI ``match`` stays on numpy unless ``--search int8`` is given.
The figures behind these choices, with the command that measured them (bench/search_bench.py),
are in docs/getting-started.md, "Search backends for large galleries".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.choices import SEARCH_BACKENDS
from .topk import topk_from_distances

if TYPE_CHECKING:
    from .int8 import Int8Searcher

__all__ = ["SEARCH_BACKENDS", "clear_int8_cache", "int8_searcher", "search_index", "topk", "topk_from_distances"]

_int8_cache: list[Int8Searcher] = []  # at most one: it holds an int8 copy of a gallery


def _row_norms(x: np.ndarray) -> np.ndarray:
    """(N,) L2 norms of float32 rows, at least 1e-12 (a row of zeros scores 0)."""
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)


def _numpy_topk(queries: np.ndarray, gallery: np.ndarray, k: int, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    if gallery.dtype == np.float32:
        sims = queries @ gallery.T  # (Q, N): one BLAS call; memory-bandwidth bound for small Q
        return topk_from_distances(1.0 - sims, k)
    # float16 (or other) gallery: convert chunk by chunk, keep the running best k per chunk
    best_i, best_d = [], []
    for s in range(0, gallery.shape[0], chunk_rows):
        block = np.asarray(gallery[s:s + chunk_rows], dtype=np.float32)
        sims = queries @ block.T
        if gallery.dtype == np.float16:  # stored rows: re-normalised (cosine), as every backend ranks them
            sims /= _row_norms(block)
        i, d = topk_from_distances(1.0 - sims, k)
        best_i.append(i + s)
        best_d.append(d)
    all_i, all_d = np.concatenate(best_i, axis=1), np.concatenate(best_d, axis=1)
    j, d = topk_from_distances(all_d, k)
    return np.take_along_axis(all_i, j, axis=1), d


def _faiss_topk(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss
    except ImportError:
        raise ValueError("the faiss backend needs faiss-cpu: `pip install faiss-cpu`, or use --search numpy") from None
    index = faiss.IndexFlatIP(gallery.shape[1])
    rows = np.array(gallery, dtype=np.float32)
    if gallery.dtype == np.float16:  # stored rows: re-normalised, as _numpy_topk does
        rows /= _row_norms(rows)[:, None]
    index.add(rows)
    sims, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, gallery.shape[0]))
    return idx.astype(np.int64), (1.0 - sims).astype(np.float32)


def topk(queries: np.ndarray, gallery: np.ndarray, k: int, backend: str = "auto",
         chunk_rows: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k. queries (Q, D) and gallery (N, D) L2-normalised -> (indices, distances), each (Q, k')."""
    if backend not in SEARCH_BACKENDS:
        raise ValueError(f"search backend {backend!r} is invalid; valid values: {', '.join(SEARCH_BACKENDS)}")
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if q.shape[1] != gallery.shape[1]:
        raise ValueError(f"probe embeddings have dim {q.shape[1]} but the gallery has {gallery.shape[1]}; "
                         "use the same model for both (rebuild the index with --rebuild)")
    if gallery.shape[0] == 0:
        return np.zeros((q.shape[0], 0), np.int64), np.zeros((q.shape[0], 0), np.float32)
    if backend == "faiss":
        return _faiss_topk(q, gallery, k)
    if backend == "int8" or (backend == "auto" and _cached_int8(gallery) is not None):
        return int8_searcher(gallery).search(q, k)
    return _numpy_topk(q, gallery, k, chunk_rows)


def search_index(index: Any, queries: np.ndarray, k: int, backend: str = "auto",
                 keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the live rows of a gallery index (runtime.gallery.index.GalleryIndex, or
    anything with ``segments`` and ``embeddings``) -> (logical row indices, distances), each (Q, k').

    ``auto`` and ``int8`` search the int8 codes the index stores (runtime.search.codes: nothing to
    build, exact); ``numpy`` and ``faiss`` score the float16 rows as stored (numpy in float32
    chunks). ``keep``: optional bool mask over the live rows (filters); rows outside it are never
    returned. Every backend scores the same stored rows, so all return the same rows.
    """
    if backend not in SEARCH_BACKENDS:
        raise ValueError(f"search backend {backend!r} is invalid; valid values: {', '.join(SEARCH_BACKENDS)}")
    segments = getattr(index, "segments", None)
    if backend in ("auto", "int8") and segments and all(getattr(s, "codes", None) is not None for s in segments):
        from .codes import search_codes

        return search_codes(segments, queries, k, keep=keep)
    gallery = index.embeddings
    if keep is None:
        return topk(queries, gallery, k, backend="numpy" if backend == "auto" else backend)
    rows = np.flatnonzero(np.asarray(keep, bool))
    q = np.atleast_2d(np.asarray(queries, np.float32))
    if rows.size == 0:
        return np.zeros((q.shape[0], 0), np.int64), np.zeros((q.shape[0], 0), np.float32)
    sub, dists = topk(q, gallery[rows], k, backend="numpy" if backend in ("auto", "int8") else backend)
    return rows[sub], dists


def _cached_int8(gallery: np.ndarray) -> Int8Searcher | None:
    return next((s for s in _int8_cache if s.gallery is gallery), None)


def int8_searcher(gallery: np.ndarray, threads: int | None = None) -> Int8Searcher:
    """The exact int8 searcher for ``gallery``: reused while the same read-only array is passed.

    A writable array gets a fresh searcher each call (in-place edits would make a cached one wrong).
    """
    from .int8 import Int8Searcher

    found = _cached_int8(gallery)
    if found is not None:
        return found
    searcher = Int8Searcher(gallery, threads)
    if not gallery.flags.writeable:
        _int8_cache[:] = [searcher]  # replaces the previous gallery's searcher (and frees its memory)
    return searcher


def clear_int8_cache() -> None:
    """Drop the cached int8 searcher (and its reference to the gallery array)."""
    _int8_cache.clear()
